/**
 * Chaining to the hook scripts pve-cbt replaced. `daemon/hook-admin` records them in
 * `<stateDir>/hook-chain.json` when it installs pve-cbt's hooks:
 *
 *   { "vzdump": { "path": "/usr/local/bin/old-vzdump-hook" },
 *     "guests": { "100": { "volid": "local:snippets/old.pl", "path": "/var/lib/vz/snippets/old.pl" } } }
 *
 * The hook runs the recorded script with its own arguments and environment (stdio passed through, so
 * its output lands in the PVE task log as before) and keeps its exit status.
 *
 * Root runs that script, so both the file and the script must be trusted (trusted-file.ts: owned by
 * root, nobody else can write them or a directory above them); an untrusted one is ignored and
 * reported, never run. The script is run by its resolved path, the one that was checked.
 */
import type { spawnSync as SpawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isCbtError } from '../shared/errors/cbt-error';
import { HookNotRegularFileError } from './hook-errors';
import { assertTrustedPath, fileType, readTrustedFile } from './trusted-file';

const MAX_CHAIN_BYTES = 1024 * 1024;

export interface ChainTarget {
  path: string;
  /** For guest hookscripts: the volid to put back when pve-cbt's hook is detached. */
  volid?: string;
}

export interface HookChain {
  vzdump?: ChainTarget;
  guests: Record<string, ChainTarget>;
}

export function chainFilePath(stateDir: string): string {
  return path.join(stateDir, 'hook-chain.json');
}

/** For daemon/hook-admin (run by the admin): a missing file is an empty chain; an unreadable one throws. */
export function readHookChain(stateDir: string): HookChain {
  let text: string;
  try {
    text = fs.readFileSync(chainFilePath(stateDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { guests: {} };
    throw err;
  }
  return parseHookChain(text);
}

/** For the hooks: the same, but only from a trusted regular file, and never blocking. */
export async function readTrustedHookChain(stateDir: string): Promise<HookChain> {
  const text = await readTrustedFile(chainFilePath(stateDir), { follow: false, maxBytes: MAX_CHAIN_BYTES });
  return text === undefined ? { guests: {} } : parseHookChain(text);
}

function parseHookChain(text: string): HookChain {
  const raw = JSON.parse(text) as Partial<HookChain>;
  return { ...(raw.vzdump ? { vzdump: raw.vzdump } : {}), guests: raw.guests ?? {} };
}

export type ChainCheck = { run: string } | { status: number; error: string };

/**
 * Whether a chain target may run: `run` is the resolved path to execute. A script that is missing
 * or not a file fails like it would under Proxmox (127, 126); an untrusted one is not run and does
 * not fail the hook (status 0, fail-open).
 */
export async function checkChained(target: ChainTarget): Promise<ChainCheck> {
  if (typeof target.path !== 'string' || !path.isAbsolute(target.path)) {
    return { status: 0, error: `chained hook ${JSON.stringify(target.path)} is not an absolute path; not run` };
  }
  try {
    const real = await fsp.realpath(target.path);
    await assertTrustedPath(real);
    const st = await fsp.stat(real);
    if (!st.isFile()) throw HookNotRegularFileError({ path: real, type: fileType(st) });
    return { run: real };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 127, error: `chained hook ${target.path} could not run: ENOENT` };
    if (isCbtError(err) && err.code === HookNotRegularFileError.code) return { status: 126, error: `chained hook ${target.path} could not run: ${err.code}: ${err.message}` };
    if (isCbtError(err)) return { status: 0, error: `chained hook ${target.path} not run: ${err.code}: ${err.message}` };
    return { status: 126, error: `chained hook ${target.path} could not run: ${(err as Error).message}` };
  }
}

/**
 * Runs a chained script (the resolved path from checkChained) and returns its exit status. A script
 * that cannot be run at all fails like it would under Proxmox: 127 when missing, 126 when not
 * executable, 128+n when killed by signal n.
 */
export function runChained(target: ChainTarget, run: string, argv: readonly string[], env: NodeJS.ProcessEnv): { status: number; error?: string } {
  // Loaded only when there is something to chain: every millisecond of hook start-up delays a VM start.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawnSync } = require('node:child_process') as { spawnSync: typeof SpawnSync };
  const r = spawnSync(run, argv, { env, stdio: 'inherit' });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { status: code === 'ENOENT' ? 127 : 126, error: `chained hook ${target.path} could not run: ${code ?? r.error.message}` };
  }
  if (r.status !== null) return { status: r.status };
  const signo = r.signal ? os.constants.signals[r.signal] : 0;
  return { status: 128 + signo, error: `chained hook ${target.path} was killed by ${r.signal}` };
}
