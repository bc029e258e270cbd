/**
 * Removing a repository lock by hand (`pve-cbt repository unlock LOCK [--force]`), for the locks a
 * dead node leaves behind: repository-lock.ts takes over a stale lock of its own host by itself
 * (the holder's pid is gone or recycled), but never one of another host, whose processes it cannot
 * see, so a node that died mid-backup keeps its `vm-<vmid>.lock` (and that VM's backups from any
 * node fail with CBT_REPO_LOCKED) until an admin removes it.
 *
 * The rules (`decideUnlock`, pure, table-tested):
 * - a lock of this host whose holder still runs (same pid and process start time) is refused, with
 *   or without --force (CBT_REPO_LOCK_HOLDER_ALIVE): that backup or GC is working;
 * - a lock of this host whose holder is gone is removed: it is stale (the next taker would have
 *   taken it over anyway);
 * - a lock of another host is removed only with --force; without it the refusal names the host,
 *   pid, purpose and age (CBT_REPO_LOCK_OTHER_HOST), so the admin can check that node first;
 * - an unreadable lock (not JSON, no pid/host: only a crash of an old version makes one) and the
 *   `*.lock.stale-*` leftovers of an interrupted take-over are removed: no one can hold them.
 * The removal itself is a rename to a unique name, a re-read and a compare with what was judged
 * (the same way repository-lock.ts takes over a stale lock): a lock another process took between
 * the read and the rename is put back (CBT_REPO_LOCK_CHANGED), never removed unseen. Works on every
 * storage (local directory, S3) through the storage methods.
 */
import crypto from 'node:crypto';
import os from 'node:os';
import type { CbtError } from '../../shared/errors/cbt-error';
import { RepoLockChangedError, RepoLockHolderAliveError, RepoLockNotFoundError, RepoLockOtherHostError } from './lock-unlock-errors';
import { isLockLive, LOCK_DIR, type LockInfo } from './repository-lock';
import type { RepositoryStorage } from './storage';

/** What was found of one lock, judged by `decideUnlock`. */
export interface UnlockFacts {
  readonly lock: string;
  /** The lock file's parsed content; null when unreadable (not JSON, no pid/host). */
  readonly info: LockInfo | null;
  /** A `*.lock.stale-*` leftover of an interrupted take-over. */
  readonly leftover: boolean;
  readonly thisHost: string;
  /** For a lock of this host: whether its holder (pid and start time) still runs. */
  readonly holderRuns: boolean;
  readonly force: boolean;
  readonly nowMs: number;
}

export type UnlockWhy = 'stale' | 'unreadable' | 'leftover' | 'forced';
export type UnlockVerdict = { readonly remove: true; readonly why: UnlockWhy } | { readonly remove: false; readonly error: CbtError };

/** `1h02m`, `3m05s`, `12s`: how long ago the lock was taken (negative clocks skew reads as 0s). */
export function lockAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

export function decideUnlock(f: UnlockFacts): UnlockVerdict {
  if (f.leftover) return { remove: true, why: 'leftover' };
  if (!f.info) return { remove: true, why: 'unreadable' };
  const ageMs = typeof f.info.startedAtMs === 'number' ? f.nowMs - f.info.startedAtMs : NaN;
  const holder = { lock: f.lock, holderPid: f.info.pid, holderHost: f.info.host, what: f.info.what ?? 'unknown', ageMs, age: Number.isFinite(ageMs) ? lockAge(ageMs) : 'an unknown time' };
  if (f.info.host === f.thisHost) return f.holderRuns ? { remove: false, error: RepoLockHolderAliveError(holder) } : { remove: true, why: 'stale' };
  return f.force ? { remove: true, why: 'forced' } : { remove: false, error: RepoLockOtherHostError(holder) };
}

/** One lock as `repository unlock` lists it. */
export interface LockEntry {
  readonly lock: string;
  readonly info: LockInfo | null;
  /** live: a running holder of this host; stale: a dead one of this host; other-host: cannot tell. */
  readonly state: 'live' | 'stale' | 'other-host' | 'unreadable' | 'leftover';
}

function parse(data: Buffer): LockInfo | null {
  try {
    const info = JSON.parse(data.toString('utf8')) as LockInfo;
    // as repository-lock.ts reads it: pid and host make a holder
    return typeof info.pid === 'number' && typeof info.host === 'string' ? info : null;
  } catch {
    return null;
  }
}

/** `vm-101`, `vm-101.lock` or `.locks/vm-101.lock` → the name as listed (`vm-101`, or a leftover's file name). */
export function lockName(arg: string): string {
  const base = arg.startsWith(`${LOCK_DIR}/`) ? arg.slice(LOCK_DIR.length + 1) : arg;
  return base.endsWith('.lock') ? base.slice(0, -'.lock'.length) : base;
}

const LEFTOVER = /\.lock\.stale-[0-9a-f]+$/;
const fileOf = (name: string) => (LEFTOVER.test(name) ? name : `${name}.lock`);

function stateOf(name: string, info: LockInfo | null, thisHost: string): LockEntry['state'] {
  if (LEFTOVER.test(name)) return 'leftover';
  if (!info) return 'unreadable';
  if (info.host !== thisHost) return 'other-host';
  return isLockLive(info) ? 'live' : 'stale';
}

export async function listLocks(storage: RepositoryStorage, thisHost = os.hostname()): Promise<LockEntry[]> {
  const out: LockEntry[] = [];
  for (const file of (await storage.list(LOCK_DIR)).sort()) {
    const name = file.endsWith('.lock') ? file.slice(0, -'.lock'.length) : file;
    if (!file.endsWith('.lock') && !LEFTOVER.test(file)) continue;
    const raw = await storage.read(`${LOCK_DIR}/${file}`);
    if (!raw) continue;
    const info = parse(raw);
    out.push({ lock: name, info, state: stateOf(name, info, thisHost) });
  }
  return out;
}

export interface UnlockResult {
  readonly lock: string;
  readonly why: UnlockWhy;
  readonly info: LockInfo | null;
}

/** Judges lock `name` and removes it when the rules allow; throws the refusal otherwise. */
export async function unlockLock(storage: RepositoryStorage, arg: string, opts: { force: boolean; nowMs?: number; thisHost?: string }): Promise<UnlockResult> {
  const name = lockName(arg);
  const key = `${LOCK_DIR}/${fileOf(name)}`;
  const thisHost = opts.thisHost ?? os.hostname();
  const raw = await storage.read(key);
  if (!raw) throw RepoLockNotFoundError({ lock: name, present: (await listLocks(storage, thisHost)).map((l) => l.lock) });
  const info = parse(raw);
  const leftover = LEFTOVER.test(name);
  const verdict = decideUnlock({ lock: name, info, leftover, thisHost, holderRuns: info !== null && info.host === thisHost && isLockLive(info), force: opts.force, nowMs: opts.nowMs ?? Date.now() });
  if (!verdict.remove) throw verdict.error;
  if (leftover) {
    await storage.remove(key);
    return { lock: name, why: verdict.why, info };
  }
  const aside = `${key}.stale-${crypto.randomBytes(4).toString('hex')}`;
  if (!(await storage.rename(key, aside))) throw RepoLockChangedError({ lock: name });
  const moved = await storage.read(aside);
  if (moved && !moved.equals(raw)) {
    // Taken (and rewritten) by another process since it was judged: put it back, unless a third
    // one holds the name meanwhile (createExclusive never replaces a lock).
    await storage.createExclusive(key, moved);
    await storage.remove(aside);
    throw RepoLockChangedError({ lock: name });
  }
  await storage.remove(aside);
  return { lock: name, why: verdict.why, info };
}
