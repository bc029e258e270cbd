/**
 * The repository benches' shared setup (repository-incremental.ts, repository-encryption.ts,
 * s3-repository.ts, restore-read.ts's full): a generated disk image (sparse, data in every other 1 MiB extent), scattered
 * 64 KiB blocks rewritten with a fixed seed, and a backup of chosen chunks of the image driven
 * through the DiskWriter API the way the backup engine feeds it (chunk-pipeline.ts): batches of up
 * to BATCH_BYTES in one `putChunks` (one blob-worker trip), INSERT_WINDOW_BYTES of batches in flight.
 * Lives in bench/support/, not bench/: run-all.ts runs every bench/<name>.js as a bench.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { BATCH_BYTES, INSERT_WINDOW_BYTES } from '../../daemon/backup/chunk-pipeline';
import type { DiskWriter } from '../../daemon/repository/disk-writer';
import type { Manifest } from '../../daemon/repository/manifest';
import type { Repository } from '../../daemon/repository/repository';
import { mulberry32 } from './prng';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
/** The bitmap granule: what the rewrites change at a time. */
export const BLOCK = 64 * KiB;

/** Pseudo-random bytes from a seed (AES-256-CTR of zeros): incompressible, reproducible. */
export function randomStream(seed: string): (n: number) => Buffer {
  const cipher = crypto.createCipheriv('aes-256-ctr', crypto.createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

/**
 * Sparse image of `size` with data in every other 1 MiB extent up to `dataBytes`: random data, or
 * with `text` random and compressible text by turns (the first extent random).
 */
export async function makeImage(file: string, size: number, dataBytes: number, opts: { text?: boolean } = {}): Promise<void> {
  const fh = await fsp.open(file, 'w');
  const rnd = randomStream(file);
  const text = opts.text
    ? Buffer.from('pve-cbt encryption bench: a line of compressible guest text 0123456789\n'.repeat(Math.ceil(MiB / 70))).subarray(0, MiB)
    : null;
  try {
    await fh.truncate(size);
    for (let n = 0, off = 0; n * MiB < dataBytes && off < size; off += 2 * MiB, n++) {
      await fh.write(text && n % 2 ? text : rnd(MiB), 0, MiB, off);
    }
  } finally {
    await fh.close();
  }
}

/** Rewrites `count` distinct random 64 KiB blocks of an image of `size`; returns their offsets, sorted. */
export async function rewriteBlocks(file: string, size: number, count: number, seed: number): Promise<number[]> {
  const rand = mulberry32(seed);
  const blocks = new Set<number>();
  while (blocks.size < count) blocks.add(Math.floor(rand() * (size / BLOCK)) * BLOCK);
  const rnd = randomStream(`rewrite-${seed}`);
  const fh = await fsp.open(file, 'r+');
  try {
    for (const off of blocks) await fh.write(rnd(BLOCK), 0, BLOCK, off);
  } finally {
    await fh.close();
  }
  return [...blocks].sort((a, b) => a - b);
}

/** The chunks that `len` bytes at each of `offsets` touch, sorted. */
export function touchedChunks(offsets: number[], chunkSize: number, len: number): number[] {
  const set = new Set<number>();
  for (const o of offsets) for (let c = Math.floor(o / chunkSize); c <= Math.floor((o + len - 1) / chunkSize); c++) set.add(c);
  return [...set].sort((a, b) => a - b);
}

/**
 * Reads the given chunks of `file` and puts them as the engine does: batches of up to BATCH_BYTES
 * in one `putChunks`, INSERT_WINDOW_BYTES of batches in flight.
 */
export async function feed(d: DiskWriter, file: string, indexes: number[]): Promise<void> {
  const fh = await fsp.open(file, 'r');
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / d.chunkSize));
  let next = 0;
  try {
    const worker = async (): Promise<void> => {
      while (next < indexes.length) {
        const batch = indexes.slice(next, next + perBatch);
        next += batch.length;
        const items = [];
        for (const i of batch) {
          const len = Math.min(d.chunkSize, d.size - i * d.chunkSize);
          const buf = Buffer.allocUnsafe(len);
          await fh.read(buf, 0, len, i * d.chunkSize);
          items.push({ index: i, data: buf });
        }
        await d.putChunks(items);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, INSERT_WINDOW_BYTES / BATCH_BYTES) }, worker));
  } finally {
    await fh.close();
  }
}

export interface BenchBackup {
  vmid: number;
  file: string;
  size: number;
  /** Unset: the repository's own chunk size. */
  chunkSize?: number;
  /** The chunks to put: all of them, a list, or a list made from the disk's chunk size. */
  indexes: number[] | 'all' | ((chunkSize: number) => number[]);
  /** An incremental of this backup's scsi0 (else a full). */
  base?: Manifest;
}

/** One backup of disk scsi0 from an image, timed from startBackup to commit. */
export async function backupImage(repo: Repository, b: BenchBackup): Promise<{ m: Manifest; ms: number }> {
  const t0 = process.hrtime.bigint();
  const w = await repo.startBackup({ vmid: b.vmid, parent: b.base?.id });
  const d = await w.openDisk({
    name: 'scsi0',
    format: 'raw',
    size: b.size,
    ...(b.chunkSize ? { chunkSize: b.chunkSize } : {}),
    base: b.base ? { backupId: b.base.id, disk: 'scsi0' } : undefined,
  });
  const indexes = b.indexes === 'all' ? Array.from({ length: d.chunkCount }, (_, i) => i) : typeof b.indexes === 'function' ? b.indexes(d.chunkSize) : b.indexes;
  await feed(d, b.file, indexes);
  await d.finish({ mode: b.base ? 'incremental' : 'full', reason: 'bench', bytesRead: 0, durationMs: 0 });
  const m = await w.commit();
  return { m, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}
