/**
 * What a hook may believe. Proxmox runs the hooks as root, and the files they read decide what root
 * does next (which chained script it runs, where it connects, where it writes the spool), so a file
 * counts only if nobody but root can have written it:
 *
 * - the file is owned by root (or by the hook's own euid, which is root on a node) and is not
 *   writable by group or others;
 * - so is every directory above it, on the path as given and on its resolved path (a directory with
 *   the sticky bit, like /tmp, may be world-writable: nobody can rename or replace an entry in it
 *   that they do not own), and a symlink on the way is owned by root or the euid.
 *
 * Nothing here blocks: files are opened with O_NONBLOCK (a FIFO in place of a file must not hang a
 * VM start) and, where a symlink is not expected, O_NOFOLLOW; only a regular file is read, after
 * fstat on the open descriptor said so. `trustProblem` is the pure rule, table-tested.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { HookNotRegularFileError, HookTooLargeError, HookUntrustedError } from './hook-errors';

const euid = (): number => process.geteuid?.() ?? 0;

/** Why an lstat result may not be trusted, or undefined. */
export function trustProblem(st: { uid: number; mode: number }, myEuid: number): string | undefined {
  if (st.uid !== 0 && st.uid !== myEuid) return `owned by uid ${st.uid}, not root`;
  const type = st.mode & fs.constants.S_IFMT;
  if (type === fs.constants.S_IFLNK) return undefined;
  const writable = st.mode & 0o022;
  if (writable === 0) return undefined;
  if (type === fs.constants.S_IFDIR && (st.mode & 0o1000) !== 0) return undefined;
  return `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')} lets ${writable & 0o002 ? 'everyone' : 'its group'} write it`;
}

/** Checks `p` itself and every directory above it, on the path as given and on the resolved one. */
export async function assertTrustedPath(p: string): Promise<void> {
  const abs = path.resolve(p);
  await assertChain(abs);
  const real = await fsp.realpath(abs);
  if (real !== abs) await assertChain(real);
}

async function assertChain(p: string): Promise<void> {
  for (let cur = p; ; cur = path.dirname(cur)) {
    const problem = trustProblem(await fsp.lstat(cur), euid());
    if (problem) throw HookUntrustedError({ path: cur, reason: problem });
    if (cur === path.dirname(cur)) return;
  }
}

/** Rejects anything but a trusted regular file open on `fd`. */
export async function assertTrustedOpenFile(fh: fsp.FileHandle, file: string): Promise<fs.Stats> {
  const st = await fh.stat();
  if (!st.isFile()) throw HookNotRegularFileError({ path: file, type: fileType(st) });
  const problem = trustProblem(st, euid());
  if (problem) throw HookUntrustedError({ path: file, reason: problem });
  return st;
}

/**
 * Reads a trusted regular file, or returns undefined if it does not exist. `follow`: a symlink is
 * allowed (and resolved, the real path checked); without it a symlink is refused.
 */
export async function readTrustedFile(file: string, opts: { follow: boolean; maxBytes: number }): Promise<string | undefined> {
  let real: string;
  try {
    real = opts.follow ? await fsp.realpath(file) : path.resolve(file);
    await assertTrustedPath(path.dirname(real));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(real, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw HookUntrustedError({ path: file, reason: 'it is a symlink' });
    throw err;
  }
  try {
    const st = await assertTrustedOpenFile(fh, file);
    if (st.size > opts.maxBytes) throw HookTooLargeError({ path: file, maxBytes: opts.maxBytes });
    return await readAll(fh, opts.maxBytes, file);
  } finally {
    await fh.close();
  }
}

/** A regular file's content without blocking on anything else (no trust check), or undefined. */
export async function readRegularFile(file: string, maxBytes: number): Promise<string | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > maxBytes) return undefined;
    return await readAll(fh, maxBytes, file);
  } finally {
    await fh.close();
  }
}

/** After fstat said regular: a file whose size is 0 (as /proc files say) is read to its end. */
async function readAll(fh: fsp.FileHandle, maxBytes: number, file: string): Promise<string> {
  const buf = await fh.readFile();
  if (buf.length > maxBytes) throw HookTooLargeError({ path: file, maxBytes });
  return buf.toString('utf8');
}

export function fileType(st: fs.Stats): string {
  if (st.isFIFO()) return 'FIFO';
  if (st.isDirectory()) return 'directory';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device';
  if (st.isSymbolicLink()) return 'symlink';
  return 'special file';
}
