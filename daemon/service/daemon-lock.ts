/**
 * One daemon per state directory: `<stateDir>/daemon.lock`, taken before the daemon touches
 * anything (catalog, spool, repository partials, QEMU), so a second `pve-cbt daemon` started while
 * one runs leaves the live one's backups alone and exits with CBT_DAEMON_ALREADY_RUNNING.
 *
 * Node has no flock, so the lock is a file created exclusively, content first (create-exclusive-file.ts), holding JSON: pid and process start
 * time (/proc/<pid>/stat, so a recycled pid is not taken for the holder). A lock whose holder is dead
 * (a SIGKILLed daemon) is stale and taken over by renaming it aside first and re-reading it, the
 * same way as the repository's locks (repository-lock.ts), so two starting daemons cannot both win.
 * The lock is removed at a clean stop; after a crash it stays and is taken over at the next start.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isLockLive, processStartTime, type LockInfo } from '../repository/repository-lock';
import { DaemonAlreadyRunningError } from './service-errors';
import { PRIVATE_FILE_MODE } from './state-dir';
import { createExclusiveFileSync } from '../../shared/fs/create-exclusive-file';

export interface DaemonLock {
  readonly file: string;
  release(): void;
}

export function daemonLockFile(stateDir: string): string {
  return path.join(stateDir, 'daemon.lock');
}

function readLock(file: string): { raw: Buffer; info: LockInfo | null } | null {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const info = JSON.parse(raw.toString('utf8')) as LockInfo;
    return { raw, info: typeof info.pid === 'number' && typeof info.host === 'string' ? info : null };
  } catch {
    // A lock file cut short by a crash while it was written: nobody holds it.
    return { raw, info: null };
  }
}

function takeOverStale(file: string, staleRaw: Buffer): void {
  const aside = `${file}.stale-${crypto.randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = fs.readFileSync(aside);
  // Someone replaced the stale lock between our read and rename: put theirs back, unless a third
  // process has created one meanwhile (a link never replaces a lock).
  if (!moved.equals(staleRaw)) createExclusiveFileSync(file, moved, PRIVATE_FILE_MODE);
  fs.rmSync(aside, { force: true });
}

/** Takes the daemon lock of `stateDir` (which must exist) or throws CBT_DAEMON_ALREADY_RUNNING. */
export function acquireDaemonLock(stateDir: string): DaemonLock {
  const file = daemonLockFile(stateDir);
  const info: LockInfo = { pid: process.pid, procStart: processStartTime(process.pid), host: os.hostname(), what: 'daemon', startedAtMs: Date.now() };
  const data = JSON.stringify(info);
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createExclusiveFileSync(file, data, PRIVATE_FILE_MODE)) {
      return {
        file,
        release() {
          const current = readLock(file);
          if (current?.info && current.info.pid === info.pid && current.info.startedAtMs === info.startedAtMs) fs.rmSync(file, { force: true });
        },
      };
    }
    const held = readLock(file);
    if (held?.info && isLockLive(held.info)) throw DaemonAlreadyRunningError({ lockFile: file, holderPid: held.info.pid });
    if (held) takeOverStale(file, held.raw);
  }
  throw DaemonAlreadyRunningError({ lockFile: file, holderPid: -1 });
}
