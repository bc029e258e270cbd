/**
 * Creates a file with its whole content, or fails if the name exists: the primitive of the lock
 * files (the daemon lock, the repository's `.locks/`).
 *
 * `open(O_EXCL)` and then `write` is not enough: between the two, another process that lost the
 * race reads an empty file, cannot tell a half-written lock from one cut short by a crash, and takes
 * it for stale. So the content is written and fsynced in a private temporary file first and then
 * published with link(2), which fails with EEXIST like O_EXCL does (and works on NFS, where O_EXCL
 * may not): a lock file is never seen without its content.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir } from './fsync-dir';

function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.new-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

/** true when `file` was created holding `data`; false when it already existed. */
export function createExclusiveFileSync(file: string, data: Buffer | string, mode: number): boolean {
  const tmp = tempName(file);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    try {
      fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  fsyncDir(path.dirname(file));
  return true;
}

/** The same, asynchronous. */
export async function createExclusiveFile(file: string, data: Buffer, mode: number): Promise<boolean> {
  const tmp = tempName(file);
  const fh = await fsp.open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fsp.link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  const dir = await fsp.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return true;
}
