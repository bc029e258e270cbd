/**
 * Chaining to the hook scripts pve-cbt replaced. `daemon/hook-admin` records them in
 * `<stateDir>/hook-chain.json` when it installs pve-cbt's hooks:
 *
 *   { "vzdump": { "path": "/usr/local/bin/old-vzdump-hook" },
 *     "guests": { "100": { "volid": "local:snippets/old.pl", "path": "/var/lib/vz/snippets/old.pl" } } }
 *
 * The hook runs the recorded script with its own arguments and environment (stdio passed through, so
 * its output lands in the PVE task log as before) and keeps its exit status.
 */
import type { spawnSync as SpawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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

/** A missing file is an empty chain; an unreadable one is reported to the caller. */
export function readHookChain(stateDir: string): HookChain {
  let text: string;
  try {
    text = fs.readFileSync(chainFilePath(stateDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { guests: {} };
    throw err;
  }
  const raw = JSON.parse(text) as Partial<HookChain>;
  return { ...(raw.vzdump ? { vzdump: raw.vzdump } : {}), guests: raw.guests ?? {} };
}

/**
 * Runs a chained script and returns its exit status. A script that cannot be run at all fails like
 * it would under Proxmox: 127 when missing, 126 when not executable, 128+n when killed by signal n.
 */
export function runChained(target: ChainTarget, argv: readonly string[], env: NodeJS.ProcessEnv): { status: number; error?: string } {
  // Loaded only when there is something to chain: every millisecond of hook start-up delays a VM start.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawnSync } = require('node:child_process') as { spawnSync: typeof SpawnSync };
  const r = spawnSync(target.path, argv, { env, stdio: 'inherit' });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { status: code === 'ENOENT' ? 127 : 126, error: `chained hook ${target.path} could not run: ${code ?? r.error.message}` };
  }
  if (r.status !== null) return { status: r.status };
  const signo = r.signal ? os.constants.signals[r.signal] : 0;
  return { status: 128 + signo, error: `chained hook ${target.path} was killed by ${r.signal}` };
}
