/**
 * Restore of one disk of a committed backup, byte-exact, to a raw or qcow2 file or to a stream.
 *
 * All index pages are read and checked before anything is written. File restores go to a temporary
 * name beside the target: the file is sized with ftruncate, zero chunks are skipped (they stay
 * holes), the other chunks are read, checked (SHA-256 against their name) and written at their
 * offset by a few worker threads (restore-workers.ts). Only when every chunk was good is the
 * file fsynced and renamed to the target; otherwise it is deleted and CBT_REPO_RESTORE_FAILED
 * lists the disk offsets of the bad chunks. qcow2 is made from the verified raw file with
 * `qemu-img convert -O qcow2` (correctness first; qemu-img keeps the holes unallocated; qcow2
 * sizes are whole 512-byte sectors, so a disk whose size is not is padded with zeros there).
 * An existing block device is written in place, after a first pass has checked every chunk.
 * A stream gets the disk in order, zeroes included; on a bad chunk it stops short (so the output
 * is visibly incomplete) and the error names the offset. The stream is not ended here.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import type { Logger } from 'winston';
import type { ChunkStore } from './chunk-store';
import { loadDigestTable } from './digest-table';
import { restoreChunksWithWorkers } from './restore-workers';
import { DIGEST_BYTES } from './digest';
import { chunkLength, geometry, isZeroDigest, type IndexGeometry } from './disk-index';
import { diskPages, type Manifest } from './manifest';
import {
  RepoChunkCorruptError,
  RepoChunkMissingError,
  RepoDiskNotFoundError,
  RepoPageCorruptError,
  RepoPageMissingError,
  RepoQemuImgFailedError,
  RepoRestoreFailedError,
} from './repository-errors';

export type RestoreTarget = { path: string; format: 'raw' | 'qcow2' } | { stream: NodeJS.WritableStream };

export interface RestoreOptions {
  onProgress?: (done: number, total: number) => void;
}

export interface RestoreDeps {
  chunks: ChunkStore;
  /** Local folder of the chunk store, read directly by the restore worker threads. */
  chunkDir: string;
  pages: ChunkStore;
  qemuImg: string;
  logger?: Logger;
}

const READ_WINDOW = 8;

function isBlobProblem(err: unknown): boolean {
  return (
    RepoChunkCorruptError.is(err) ||
    RepoChunkMissingError.is(err) ||
    RepoPageCorruptError.is(err) ||
    RepoPageMissingError.is(err)
  );
}

function digestAt(table: Buffer, i: number): string {
  return table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
}

export async function restoreDisk(
  deps: RestoreDeps,
  manifest: Manifest,
  diskName: string,
  target: RestoreTarget,
  opts: RestoreOptions = {},
): Promise<{ bytes: number }> {
  const entry = manifest.disks.find((d) => d.name === diskName);
  if (!entry) throw RepoDiskNotFoundError({ backupId: manifest.id, disk: diskName });
  const g = geometry(entry.size, entry.chunkSize, entry.pageEntries);
  const fail = (offsets: number[], reason: string): never => {
    throw RepoRestoreFailedError({ backupId: manifest.id, disk: diskName, offsets, reason });
  };
  const { table, badPages } = await loadDigestTable(deps.pages, g, diskPages(entry));
  if (badPages.length) {
    const offsets = badPages.map((b) => b.page * g.pageEntries * g.chunkSize);
    fail(offsets, `index pages ${badPages.map((b) => `${b.digest} (${b.problem})`).join(', ')} unreadable; offsets are where each page's range starts`);
  }
  const readChunk = async (i: number): Promise<Buffer | null> => {
    try {
      const data = await deps.chunks.read(digestAt(table, i), { maxPlain: chunkLength(g, i), fast: true });
      return data.length === chunkLength(g, i) ? data : null;
    } catch (err) {
      if (!isBlobProblem(err)) throw err;
      return null;
    }
  };
  if ('stream' in target) return restoreToStream(g, table, target.stream, readChunk, fail, opts);

  const finalPath = path.resolve(target.path);
  const existing = await fsp.stat(finalPath).catch(() => null);
  if (existing?.isBlockDevice()) return restoreToBlockDevice(g, table, finalPath, target.format, readChunk, fail, opts);
  const tag = `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const tmpRaw = path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.restore-${tag}`);
  const tmpQcow = `${tmpRaw}.qcow2`;
  try {
    const fh = await fsp.open(tmpRaw, 'wx');
    const badOffsets: number[] = [];
    try {
      await fh.truncate(g.size);
      let done = 0;
      const work: number[] = [];
      for (let i = 0; i < g.chunkCount; i++) {
        if (isZeroDigest(digestAt(table, i))) done += chunkLength(g, i);
        else work.push(i);
      }
      opts.onProgress?.(done, g.size);
      const jobs = work.map((i) => ({ digest: digestAt(table, i), offset: i * g.chunkSize, length: chunkLength(g, i) }));
      const onBytes = (n: number): void => {
        done += n;
        opts.onProgress?.(done, g.size);
      };
      const bad = await restoreChunksWithWorkers(fh.fd, deps.chunkDir, jobs, onBytes, tmpRaw);
      badOffsets.push(...bad);
      if (!badOffsets.length) await fh.sync();
    } finally {
      await fh.close();
    }
    if (badOffsets.length) fail(badOffsets.sort((a, b) => a - b), 'chunks missing or corrupt');
    if (target.format === 'qcow2') {
      await runQemuImg(deps.qemuImg, ['convert', '-f', 'raw', '-O', 'qcow2', tmpRaw, tmpQcow]);
      const q = await fsp.open(tmpQcow, 'r+');
      await q.sync();
      await q.close();
      await fsp.rename(tmpQcow, finalPath);
    } else {
      await fsp.rename(tmpRaw, finalPath);
    }
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
  g: IndexGeometry,
  table: Buffer,
  device: string,
  format: 'raw' | 'qcow2',
  readChunk: (i: number) => Promise<Buffer | null>,
  fail: (offsets: number[], reason: string) => never,
  opts: RestoreOptions,
): Promise<{ bytes: number }> {
  if (format !== 'raw') fail([], `${device} is a block device: only raw restores can target it`);
  const bad: number[] = [];
  for (let i = 0; i < g.chunkCount; i++) {
    if (!isZeroDigest(digestAt(table, i)) && !(await readChunk(i))) bad.push(i * g.chunkSize);
  }
  if (bad.length) fail(bad, 'chunks missing or corrupt (nothing was written to the device)');
  const fh = await fsp.open(device, 'r+');
  try {
    const zero = Buffer.alloc(g.chunkSize);
    let done = 0;
    for (let i = 0; i < g.chunkCount; i++) {
      const data = isZeroDigest(digestAt(table, i)) ? zero.subarray(0, chunkLength(g, i)) : await readChunk(i);
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
  g: IndexGeometry,
  table: Buffer,
  stream: NodeJS.WritableStream,
  readChunk: (i: number) => Promise<Buffer | null>,
  fail: (offsets: number[], reason: string) => never,
  opts: RestoreOptions,
): Promise<{ bytes: number }> {
  const zero = Buffer.alloc(g.chunkSize);
  const pending: Promise<Buffer | null>[] = [];
  const start = (i: number): Promise<Buffer | null> =>
    isZeroDigest(digestAt(table, i)) ? Promise.resolve(zero.subarray(0, chunkLength(g, i))) : readChunk(i);
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

function runQemuImg(qemuImg: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(qemuImg, args, { maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const code = typeof err.code === 'number' ? err.code : null;
      reject(RepoQemuImgFailedError({ command: `${qemuImg} ${args.join(' ')}`, exitCode: code, stderr: String(stderr || err.message) }, err));
    });
  });
}
