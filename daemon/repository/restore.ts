/**
 * Restore of one disk of a committed backup, byte-exact, to a raw or qcow2 file or to a stream.
 *
 * All index pages are read and checked before anything is written. File restores go to a temporary
 * name beside the target: the file is sized with ftruncate, zero chunks are skipped (they stay
 * holes), the other chunks are read, checked (SHA-256 against their name, and length) and
 * written at their offset by a few worker threads (restore-workers.ts). Streams and block devices
 * read chunk by chunk through the reader the NBD server shares (disk-chunk-reader.ts). Only when every chunk was good is the
 * file fsynced and renamed to the target; otherwise it is deleted and CBT_REPO_RESTORE_FAILED
 * lists the disk offsets of the bad chunks. qcow2 is made from the verified raw file with
 * `qemu-img convert -O qcow2` (correctness first; qemu-img keeps the holes unallocated; qcow2
 * sizes are whole 512-byte sectors, so a disk whose size is not is padded with zeros there).
 * An existing block device is written in place, after a first pass has checked every chunk.
 * Files are created 0600 whatever the umask (the temporary ones too: they hold the VM's data).
 * An existing target is replaced only with `overwrite` (the default here; `pve-cbt restore` passes
 * its --force): otherwise the result is hard-linked to the name, which fails if the name exists.
 * `beforeCommit` runs just before the target is replaced or the device written (the CLI re-checks
 * the target there: a VM may have started meanwhile). Whether a target is safe to write at all
 * is decided by daemon/restore/, not here.
 * A stream gets the disk in order, zeroes included; on a bad chunk it stops short (so the output
 * is visibly incomplete) and the error names the offset. The stream is not ended here.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import type { Logger } from 'winston';
import type { BlobStore } from './blob-store';
import { DiskChunkReader } from './disk-chunk-reader';
import { restoreChunksWithWorkers } from './restore-workers';
import type { Manifest } from './manifest';
import { RepoQemuImgFailedError, RepoRestoreFailedError } from './repository-errors';
import { RestoreTargetDirMissingError, RestoreTargetExistsError } from '../restore/restore-errors';

export type RestoreTarget = { path: string; format: 'raw' | 'qcow2'; overwrite?: boolean } | { stream: NodeJS.WritableStream };

export interface RestoreOptions {
  onProgress?: (done: number, total: number) => void;
  /** Runs once all data is checked, before the target is replaced or written; may throw to refuse. */
  beforeCommit?: () => Promise<void>;
}

/** Mode of restored files: a VM's disk is for root only. */
export const RESTORE_FILE_MODE = 0o600;

export interface RestoreDeps {
  chunks: BlobStore;
  pages: BlobStore;
  qemuImg: string;
  logger?: Logger;
}

const READ_WINDOW = 8;

export async function restoreDisk(
  deps: RestoreDeps,
  manifest: Manifest,
  diskName: string,
  target: RestoreTarget,
  opts: RestoreOptions = {},
): Promise<{ bytes: number }> {
  const fail = (offsets: number[], reason: string): never => {
    throw RepoRestoreFailedError({ backupId: manifest.id, disk: diskName, offsets, reason });
  };
  const { reader, badPages } = await DiskChunkReader.open(deps, manifest, diskName);
  if (badPages.length) {
    const offsets = badPages.map((b) => reader.pageOffset(b));
    fail(offsets, `index pages ${badPages.map((b) => `${b.digest} (${b.problem})`).join(', ')} unreadable; offsets are where each page's range starts`);
  }
  const g = reader.geometry;
  if ('stream' in target) return restoreToStream(reader, target.stream, fail, opts);

  const finalPath = path.resolve(target.path);
  const overwrite = target.overwrite ?? true;
  const existing = await fsp.stat(finalPath).catch(() => null);
  if (existing?.isBlockDevice()) {
    if (!overwrite) throw RestoreTargetExistsError({ target: finalPath, kind: 'block device', hint: 'pass --force to replace it' });
    return restoreToBlockDevice(reader, finalPath, target.format, fail, opts);
  }
  if (!overwrite && (await fsp.lstat(finalPath).catch(() => null))) {
    throw RestoreTargetExistsError({ target: finalPath, kind: 'file', hint: 'pass --force to replace it' });
  }
  const tag = `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const tmpRaw = path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.restore-${tag}`);
  const tmpQcow = `${tmpRaw}.qcow2`;
  try {
    const fh = await createPrivateFile(tmpRaw, finalPath);
    const badOffsets: number[] = [];
    try {
      await fh.truncate(g.size);
      const { jobs, zeroBytes } = reader.restoreJobs();
      let done = zeroBytes;
      opts.onProgress?.(done, g.size);
      const onBytes = (n: number): void => {
        done += n;
        opts.onProgress?.(done, g.size);
      };
      const bad = await restoreChunksWithWorkers(deps.chunks, fh.fd, jobs, onBytes, tmpRaw);
      badOffsets.push(...bad);
      if (!badOffsets.length) await fh.sync();
    } finally {
      await fh.close();
    }
    if (badOffsets.length) fail(badOffsets.sort((a, b) => a - b), 'chunks missing or corrupt');
    let result = tmpRaw;
    if (target.format === 'qcow2') {
      // qemu-img reuses the existing (0600) file rather than creating one with its own mode.
      await (await createPrivateFile(tmpQcow, finalPath)).close();
      await runQemuImg(deps.qemuImg, ['convert', '-f', 'raw', '-O', 'qcow2', tmpRaw, tmpQcow]);
      const q = await fsp.open(tmpQcow, 'r+');
      try {
        await q.chmod(RESTORE_FILE_MODE);
        await q.sync();
      } finally {
        await q.close();
      }
      result = tmpQcow;
    }
    await opts.beforeCommit?.();
    await commitFile(result, finalPath, overwrite);
    deps.logger?.info('disk restored', { backupId: manifest.id, disk: diskName, path: finalPath, format: target.format });
    return { bytes: g.size };
  } finally {
    await fsp.rm(tmpRaw, { force: true });
    await fsp.rm(tmpQcow, { force: true });
  }
}

/**
 * A block device (LVM, ZFS volume) cannot be written under a temporary name: every chunk is read
 * and checked first, and only then is the device written, zero chunks included (it is not empty).
 */
async function restoreToBlockDevice(
  reader: DiskChunkReader,
  device: string,
  format: 'raw' | 'qcow2',
  fail: (offsets: number[], reason: string) => never,
  opts: RestoreOptions,
): Promise<{ bytes: number }> {
  const g = reader.geometry;
  if (format !== 'raw') fail([], `${device} is a block device: only raw restores can target it`);
  const bad: number[] = [];
  for (let i = 0; i < g.chunkCount; i++) {
    if (!reader.isZeroChunk(i) && !(await reader.readOrNull(i))) bad.push(i * g.chunkSize);
  }
  if (bad.length) fail(bad, 'chunks missing or corrupt (nothing was written to the device)');
  await opts.beforeCommit?.();
  const fh = await fsp.open(device, 'r+');
  try {
    const zero = Buffer.alloc(g.chunkSize);
    let done = 0;
    for (let i = 0; i < g.chunkCount; i++) {
      const data = reader.isZeroChunk(i) ? zero.subarray(0, reader.chunkLength(i)) : await reader.readOrNull(i);
      if (!data) fail([i * g.chunkSize], 'chunk became unreadable during the restore');
      for (let o = 0; o < data.length; ) o += (await fh.write(data, o, data.length - o, i * g.chunkSize + o)).bytesWritten;
      done += data.length;
      opts.onProgress?.(done, g.size);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { bytes: g.size };
}

async function restoreToStream(
  reader: DiskChunkReader,
  stream: NodeJS.WritableStream,
  fail: (offsets: number[], reason: string) => never,
  opts: RestoreOptions,
): Promise<{ bytes: number }> {
  const g = reader.geometry;
  const zero = Buffer.alloc(g.chunkSize);
  const pending: Promise<Buffer | null>[] = [];
  const start = (i: number): Promise<Buffer | null> =>
    reader.isZeroChunk(i) ? Promise.resolve(zero.subarray(0, reader.chunkLength(i))) : reader.readOrNull(i);
  let ahead = 0;
  let done = 0;
  for (let i = 0; i < g.chunkCount; i++) {
    while (ahead < g.chunkCount && ahead < i + READ_WINDOW) pending.push(start(ahead++));
    const data = await pending.shift();
    if (!data) fail([i * g.chunkSize], 'chunk missing or corrupt');
    if (!stream.write(data)) await new Promise<void>((resolve) => stream.once('drain', resolve));
    done += data.length;
    opts.onProgress?.(done, g.size);
  }
  return { bytes: done };
}

/** Creates `file` (which must not exist) with mode 0600 whatever the umask. */
async function createPrivateFile(file: string, target: string): Promise<fsp.FileHandle> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'wx', RESTORE_FILE_MODE);
  } catch (err) {
    const dir = path.dirname(file);
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(await fsp.stat(dir).catch(() => null))?.isDirectory()) {
      throw RestoreTargetDirMissingError({ target, dir, hint: 'create the directory first, or choose another path' }, err);
    }
    throw err;
  }
  try {
    await fh.chmod(RESTORE_FILE_MODE); // the umask may have taken bits away
  } catch (err) {
    await fh.close();
    throw err;
  }
  return fh;
}

/**
 * Puts the finished file under the target name: rename replaces, a hard link never does (EEXIST
 * if the name appeared meanwhile). File systems without hard links fall back to check-and-rename.
 */
async function commitFile(file: string, target: string, overwrite: boolean): Promise<void> {
  if (overwrite) return fsp.rename(file, target);
  const exists = (): Error => RestoreTargetExistsError({ target, kind: 'file', hint: 'pass --force to replace it' });
  try {
    await fsp.link(file, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw exists();
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw err;
    if (await fsp.lstat(target).catch(() => null)) throw exists();
    return fsp.rename(file, target);
  }
  await fsp.unlink(file);
}

function runQemuImg(qemuImg: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(qemuImg, args, { maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const code = typeof err.code === 'number' ? err.code : null;
      reject(RepoQemuImgFailedError({ command: `${qemuImg} ${args.join(' ')}`, exitCode: code, stderr: String(stderr || err.message) }, err));
    });
  });
}
