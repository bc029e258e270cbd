/**
 * Appends one event to the durable spool (format and hand-over protocol in shared/ipc/spool-format.ts).
 * Durability: the line is fsync'd; when the spool file or its directory is created, the containing
 * directories are fsync'd too so that the new names survive a power loss.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { LifecycleEvent } from '../shared/ipc/messages';
import { spoolPaths } from '../shared/ipc/spool-format';
import { fsyncDir } from '../shared/fs/fsync-dir';

/** How often to chase a spool file that the daemon keeps renaming away; each round is microseconds. */
const MAX_ATTEMPTS = 20;

export function appendToSpool(stateDir: string, ev: LifecycleEvent): string {
  const { dir, live } = spoolPaths(stateDir);
  ensureDir(dir);
  const line = `${JSON.stringify(ev)}\n`;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let created = false;
    let fd: number;
    try {
      fd = fs.openSync(live, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        fd = fs.openSync(live, fs.constants.O_RDWR | fs.constants.O_APPEND);
      } catch (err2) {
        // The daemon renamed the file between the two opens: start over with a new one.
        if ((err2 as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err2;
      }
    }
    let same: boolean;
    try {
      fs.writeSync(fd, afterTornLine(fd) ? `\n${line}` : line);
      fs.fsyncSync(fd);
      const mine = fs.fstatSync(fd);
      same = sameFile(mine, live);
    } finally {
      fs.closeSync(fd);
    }
    if (created) fsyncDir(dir);
    if (same) return live;
  }
  // Each failed attempt means the daemon took the file over after the write, so its last copy may
  // have been missed: say so rather than claim the event is safe.
  throw new Error(`spool ${live} was taken over ${MAX_ATTEMPTS} times while writing; event may be lost`);
}

/** A hook killed mid-write can leave a line without its newline; never glue the next line onto it. */
function afterTornLine(fd: number): boolean {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  fs.readSync(fd, last, 0, 1, size - 1);
  return last[0] !== 0x0a;
}

function sameFile(st: fs.Stats, file: string): boolean {
  try {
    const now = fs.statSync(file);
    return now.ino === st.ino && now.dev === st.dev;
  } catch {
    return false;
  }
}

function ensureDir(dir: string): void {
  if (fs.existsSync(dir)) return;
  const parent = path.dirname(dir);
  ensureDir(parent);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return;
  }
  fsyncDir(parent);
}
