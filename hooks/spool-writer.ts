/**
 * Appends one event to the durable spool (format and hand-over protocol in shared/ipc/spool-format.ts).
 * Durability: the line is fsync'd; when the spool file or its directory is created, the containing
 * directories are fsync'd too so that the new names survive a power loss.
 *
 * Root writes here, so the spool directory must be trusted (trusted-file.ts: owned by root, nobody
 * else can write it or a directory above it) and the spool file must be a regular file owned by root
 * (opened with O_NOFOLLOW | O_NONBLOCK, checked with fstat): otherwise nothing is written and the
 * caller reports the event as lost. Everything is asynchronous, so that the hook's watchdog still
 * fires when the file system hangs (run-hook.ts).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { LifecycleEvent } from '../shared/ipc/messages';
import { spoolPaths } from '../shared/ipc/spool-format';
import { assertTrustedOpenFile, assertTrustedPath } from './trusted-file';
import { HookSpoolTakenOverError } from './hook-errors';

/**
 * How often to chase a spool file that the daemon keeps renaming away. Each round is a few event
 * loop turns (less than a millisecond on an idle host); the hook's watchdog bounds the time anyway.
 */
const MAX_ATTEMPTS = 200;

const { O_RDWR, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_DIRECTORY } = fs.constants;

export async function appendToSpool(stateDir: string, ev: LifecycleEvent): Promise<string> {
  const { dir, live } = spoolPaths(stateDir);
  await ensureDir(dir);
  await assertTrustedPath(dir);
  const line = `${JSON.stringify(ev)}\n`;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let created = false;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(live, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, 0o600);
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        fh = await fsp.open(live, O_RDWR | O_APPEND | O_NOFOLLOW | O_NONBLOCK);
      } catch (err2) {
        // The daemon renamed the file between the two opens: start over with a new one.
        if ((err2 as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err2;
      }
    }
    let same: boolean;
    try {
      const mine = await assertTrustedOpenFile(fh, live);
      await fh.write((await afterTornLine(fh, mine.size)) ? `\n${line}` : line);
      await fh.sync();
      same = await sameFile(mine, live);
    } finally {
      await fh.close();
    }
    if (created) await fsyncDir(dir);
    if (same) return live;
  }
  // Each failed attempt means the daemon took the file over after the write, so its last copy may
  // have been missed: say so rather than claim the event is safe.
  throw HookSpoolTakenOverError({ spool: live, attempts: MAX_ATTEMPTS });
}

/** A hook killed mid-write can leave a line without its newline; never glue the next line onto it. */
async function afterTornLine(fh: fsp.FileHandle, size: number): Promise<boolean> {
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  await fh.read(last, 0, 1, size - 1);
  return last[0] !== 0x0a;
}

async function sameFile(st: fs.Stats, file: string): Promise<boolean> {
  try {
    const now = await fsp.lstat(file);
    return now.ino === st.ino && now.dev === st.dev;
  } catch {
    return false;
  }
}

async function ensureDir(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT') throw err;
    await ensureDir(path.dirname(dir));
    return ensureDir(dir);
  }
  await fsyncDir(path.dirname(dir));
}

/** shared/fs/fsync-dir, without blocking the event loop. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
