/**
 * Worker threads that restore chunks into a file: each reads a chunk file, decodes it, checks its
 * SHA-256 against its name and length, and writes it with pwrite at its offset into the shared
 * file descriptor. One Node thread doing this is bound by the CPU cost of hashing and of the
 * thread-pool round trips of async file calls; a few workers with plain synchronous calls keep up
 * with `qemu-img convert`. Workers run the source text of `workerMain` and `decodeBlobSync`
 * (file-formats.ts) with `eval: true`, so this works from compiled JS and under ts-jest alike.
 */
import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { SHARD_HEX_DIGITS } from './chunk-store';
import { CHUNK_MAGIC_V1, decodeBlobSync } from './file-formats';
import { BackgroundFlush } from './background-flush';
import { noSpaceOr } from './repository-errors';

export interface ChunkJob {
  digest: string;
  offset: number;
  length: number;
}

interface WorkerReply {
  bad: number[];
  bytes: number;
  error?: { message: string; code?: string };
}

/** Runs inside the worker thread; self-contained (see the module header). */
function workerMain(decode: typeof decodeBlobSync): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const { fd, chunkDir, shardDigits, magic, lz4Path } = workerData as { fd: number; chunkDir: string; shardDigits: number; magic: Uint8Array; lz4Path: string };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lz4 = require(lz4Path) as { uncompressSync(data: Buffer): Buffer };
  const magicBuf = Buffer.from(magic);
  // One read buffer reused for every chunk: fresh 128 KiB buffers cost page faults and GC.
  let readBuf = Buffer.allocUnsafe(0);
  parentPort?.on('message', (jobs: { digest: string; offset: number; length: number }[]) => {
    const bad: number[] = [];
    let bytes = 0;
    try {
      for (const job of jobs) {
        let stored: Buffer | null = null;
        try {
          const cfd = fs.openSync(`${chunkDir}/${job.digest.slice(0, shardDigits)}/${job.digest}`, 'r');
          try {
            if (readBuf.length < job.length + 21) readBuf = Buffer.allocUnsafe(job.length + 21);
            stored = readBuf.subarray(0, fs.readSync(cfd, readBuf, 0, job.length + 21, 0));
          } finally {
            fs.closeSync(cfd);
          }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        const plain = stored ? decode(stored, magicBuf, false, lz4) : null;
        if (
          !plain ||
          typeof plain === 'string' ||
          plain.length !== job.length ||
          crypto.createHash('sha256').update(plain).digest('hex') !== job.digest
        ) {
          bad.push(job.offset);
          continue;
        }
        for (let o = 0; o < plain.length; ) o += fs.writeSync(fd, plain, o, plain.length - o, job.offset + o);
        bytes += plain.length;
      }
      parentPort?.postMessage({ bad, bytes });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      parentPort?.postMessage({ bad, bytes, error: { message: e.message, code: e.code } });
    }
  });
}

const fdatasync = promisify(fs.fdatasync);

const WORKER_SOURCE = `(${workerMain.toString()})(${decodeBlobSync.toString()});`;
/** Resolved here: an eval worker would resolve 'lz4-napi' from the working directory (the daemon's is /). */
const LZ4_PATH = require.resolve('lz4-napi');
const BATCH = 16;
/** The file is flushed in the background after each this much written (background-flush.ts). */
const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;
/** One per core (up to 4): the work is hashing and copying, so more threads only contend. */
const WORKERS = Math.max(1, Math.min(4, os.availableParallelism()));

/**
 * Restores `jobs` into the open file `fd` with a few worker threads; returns the offsets of chunks
 * that were missing or corrupt (those are not written). Other I/O errors are thrown. `onBytes`
 * gets the disk bytes each finished batch covered.
 */
export async function restoreChunksWithWorkers(
  fd: number,
  chunkDir: string,
  jobs: ChunkJob[],
  onBytes: (n: number) => void,
  file: string,
): Promise<number[]> {
  const count = Math.max(1, Math.min(WORKERS, Math.ceil(jobs.length / BATCH)));
  const workers = Array.from(
    { length: count },
    () => new Worker(WORKER_SOURCE, { eval: true, workerData: { fd, chunkDir, shardDigits: SHARD_HEX_DIGITS, magic: new Uint8Array(CHUNK_MAGIC_V1), lz4Path: LZ4_PATH } }),
  );
  const bad: number[] = [];
  const flush = new BackgroundFlush(() => fdatasync(fd), FLUSH_EVERY_BYTES);
  let flushError: NodeJS.ErrnoException | undefined;
  let next = 0;
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            let inFlight = 0;
            const send = (): void => {
              if (next >= jobs.length) return resolve();
              const batch = jobs.slice(next, next + BATCH);
              next += batch.length;
              inFlight = batch.reduce((n, j) => n + j.length, 0);
              w.postMessage(batch);
            };
            w.on('message', (reply: WorkerReply) => {
              bad.push(...reply.bad);
              flush.wrote(reply.bytes);
              onBytes(inFlight);
              if (reply.error) {
                const err = Object.assign(new Error(reply.error.message), { code: reply.error.code });
                return reject(noSpaceOr(err, file));
              }
              send();
            });
            w.on('error', reject);
            w.on('exit', (code) => (next >= jobs.length ? resolve() : reject(new Error(`restore worker exited with ${code}`))));
            send();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
    flushError = await flush.settle();
  }
  if (flushError) throw noSpaceOr(flushError, file);
  return bad.sort((a, b) => a - b);
}
