/**
 * Lock files in `.locks/` (Node has no flock, and flock does not cross NFS anyway).
 *
 * A lock is a file created exclusively with its whole content (never seen empty: see
 * shared/fs/create-exclusive-file.ts; on S3 a conditional PUT) holding JSON: pid, the process start time from
 * /proc/<pid>/stat (so a recycled pid is not mistaken for the holder), host name, what it is for
 * and when it was taken. Taking a held lock fails fast with CBT_REPO_LOCKED unless the holder is
 * dead: same host and (no such pid, or a different start time). Stale locks are taken over by
 * renaming them to a unique name first and re-reading, so two processes cannot both remove the
 * same stale lock and then one another's fresh lock. Locks of another host are always live.
 *
 * Locks used by the repository:
 * - `vm-<vmid>.lock`: one backup writer per VM. It doubles as the writer's shared lock against
 *   GC: GC reads all live writer locks and never sweeps anything newer than the oldest writer's
 *   start; `bases` lists the backups the writer cloned indexes from, which removeBackup refuses to
 *   remove while the writer lives.
 * - `gc.lock`: one GC (or verify/prune pass that rewrites state) at a time.
 */
import fs from 'node:fs';
import os from 'node:os';
import crypto from 'node:crypto';
import type { RepositoryStorage } from './storage';
import { RepoLockedError } from './repository-errors';

export const LOCK_DIR = '.locks';

export interface LockInfo {
  pid: number;
  procStart: string | null;
  host: string;
  what: string;
  startedAtMs: number;
  vmid?: number;
  backupId?: string;
  bases?: string[];
}

export interface LockHandle {
  readonly key: string;
  info: LockInfo;
}

export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isLockLive(info: LockInfo): boolean {
  if (info.host !== os.hostname()) return true;
  if (!pidAlive(info.pid)) return false;
  return info.procStart === null || processStartTime(info.pid) === info.procStart;
}

function parseLock(data: Buffer | null): LockInfo | null {
  if (!data) return null;
  try {
    const info = JSON.parse(data.toString('utf8')) as LockInfo;
    return typeof info.pid === 'number' && typeof info.host === 'string' ? info : null;
  } catch {
    return null;
  }
}

export class RepositoryLocks {
  constructor(private readonly storage: RepositoryStorage) {}

  /** Takes lock `name` (e.g. 'vm-100') or fails fast with CBT_REPO_LOCKED. */
  async acquire(name: string, fields: Omit<LockInfo, 'pid' | 'procStart' | 'host' | 'startedAtMs'>): Promise<LockHandle> {
    const key = `${LOCK_DIR}/${name}.lock`;
    const info: LockInfo = {
      pid: process.pid,
      procStart: processStartTime(process.pid),
      host: os.hostname(),
      startedAtMs: Date.now(),
      ...fields,
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.storage.createExclusive(key, Buffer.from(JSON.stringify(info)))) return { key, info };
      const raw = await this.storage.read(key);
      const holder = parseLock(raw);
      if (raw && holder && isLockLive(holder)) {
        throw RepoLockedError({ lock: name, holderPid: holder.pid, holderHost: holder.host, what: holder.what });
      }
      if (raw) await this.takeOverStale(key, raw);
    }
    throw RepoLockedError({ lock: name, holderPid: -1, holderHost: 'unknown', what: 'contended' });
  }

  /** Rewrites the lock's content (e.g. to add a base backup) while holding it. */
  async update(handle: LockHandle, fields: Partial<LockInfo>): Promise<void> {
    handle.info = { ...handle.info, ...fields };
    await this.storage.writeAtomic(handle.key, Buffer.from(JSON.stringify(handle.info)));
  }

  async release(handle: LockHandle): Promise<void> {
    const current = parseLock(await this.storage.read(handle.key));
    if (current && current.pid === handle.info.pid && current.startedAtMs === handle.info.startedAtMs) {
      await this.storage.remove(handle.key);
    }
  }

  /** Live locks whose name starts with `prefix` (stale ones are ignored, not removed). */
  async listLive(prefix: string): Promise<{ name: string; info: LockInfo }[]> {
    const out: { name: string; info: LockInfo }[] = [];
    for (const file of await this.storage.list(LOCK_DIR)) {
      if (!file.startsWith(prefix) || !file.endsWith('.lock')) continue;
      const info = parseLock(await this.storage.read(`${LOCK_DIR}/${file}`));
      if (info && isLockLive(info)) out.push({ name: file.slice(0, -'.lock'.length), info });
    }
    return out;
  }

  private async takeOverStale(key: string, staleRaw: Buffer): Promise<void> {
    const aside = `${key}.stale-${crypto.randomBytes(4).toString('hex')}`;
    if (!(await this.storage.rename(key, aside))) return;
    const moved = await this.storage.read(aside);
    if (moved && !moved.equals(staleRaw)) {
      // Someone replaced the stale lock between our read and rename: put theirs back, unless a
      // third process has created one meanwhile (createExclusive never replaces a lock).
      await this.storage.createExclusive(key, moved);
    }
    await this.storage.remove(aside);
  }
}
