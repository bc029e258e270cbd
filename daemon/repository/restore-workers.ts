/**
 * Restores chunks into a file on the repository's blob workers (blob-workers.ts): each worker
 * reads a chunk file, decodes it and checks its SHA-256 and length the way every blob read is
 * checked (load-blob.ts), and writes it with pwrite at its offset into the shared file descriptor.
 * One Node thread doing this is bound by the CPU cost of hashing and of the thread-pool round
 * trips of async file calls; a few workers with plain synchronous calls keep up with
 * `qemu-img convert`.
 *
 * The blob store names the chunks' files (`BlobStore.restoreBatch`, blob-store.ts) and their order
 * (format 2: by pack and offset, `restoreOrder`); this module schedules the
 * batches: a few lanes (one per core, up to 4), each with one batch of BATCH_BYTES of chunks (at
 * most MAX_BATCH of them: 16 chunks of 256 KiB, 64 of 64 KiB) in flight, so
 * that each lane keeps one worker busy and its read buffer warm. The file is flushed in the
 * background as it fills (background-flush.ts). The descriptor stays open until every batch sent
 * has settled, also when one fails: a worker still writing must never see it closed (and its
 * number reused by another file).
 */
import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import type { BlobStore } from './blob-store';
import { BackgroundFlush } from './background-flush';
import { noSpaceOr } from './repository-errors';

export interface ChunkJob {
  digest: string;
  offset: number;
  length: number;
}

const fdatasync = promisify(fs.fdatasync);

const BATCH_BYTES = 4 * 1024 * 1024;
const MAX_BATCH = 256;
/** The file is flushed in the background after each this much written (background-flush.ts). */
const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;
/** One per core (up to 4): the work is hashing and copying, so more threads only contend. */
const LANES = Math.max(1, Math.min(4, os.availableParallelism()));

/**
 * Restores `jobs` into the open file `fd`; returns the offsets of chunks that were missing or
 * corrupt (those are not written). Other I/O errors are thrown (ENOSPC as CBT_REPO_NO_SPACE
 * naming `file`). `onBytes` gets the disk bytes each finished batch covered.
 */
export async function restoreChunksWithWorkers(
  chunks: BlobStore,
  fd: number,
  jobs: ChunkJob[],
  onBytes: (n: number) => void,
  file: string,
): Promise<number[]> {
  // Format 2 hands them out by pack and offset, so a batch reads runs of adjacent blobs.
  jobs = await chunks.restoreOrder(jobs);
  const batchOf = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_BYTES / Math.max(1, jobs[0]?.length ?? 1))));
  const lanes = Math.max(1, Math.min(LANES, Math.ceil(jobs.length / batchOf)));
  const bad: number[] = [];
  const flush = new BackgroundFlush(() => fdatasync(fd), FLUSH_EVERY_BYTES);
  let failure: { err: unknown } | undefined;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (!failure && next < jobs.length) {
      const batch = jobs.slice(next, next + batchOf);
      next += batch.length;
      try {
        const r = await chunks.restoreBatch(fd, batch);
        bad.push(...r.bad);
        flush.wrote(r.bytes);
        onBytes(batch.reduce((n, j) => n + j.length, 0));
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: lanes }, lane));
  } finally {
    const flushError = await flush.settle();
    failure ??= flushError ? { err: flushError } : undefined;
  }
  if (failure) throw noSpaceOr(failure.err, file);
  return bad.sort((a, b) => a - b);
}
