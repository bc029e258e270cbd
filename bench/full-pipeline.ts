/**
 * The full backup's data path against its floor, in the same run (issue 15: full <= 1.0x
 * qmpbackup's full). A sparse 2 GiB raw image with 1 GiB of random data in alternating 1 MiB
 * extents (the peers bench's shape) is served by `qemu-nbd -r -t -e 4 --cache=none` (as
 * image-export.ts serves a stopped VM's image); rounds alternate:
 *
 *   floor     mapExtents(base:allocation) + readRanges of the data extents, as the engine reads
 *             them (4 connections, 4 MiB pieces, pooled shared buffers), and SHA-256 of every
 *             64 KiB chunk on the repository's blob workers, one job per piece: what any backup
 *             into a content-addressed store must do at least
 *   pipeline  the engine's read path (read-plan.ts, chunk-pipeline.ts) into a new format-2
 *             repository: digest, dedup probe, encode, append to packs, seal, page list, manifest
 *
 * The best of three rounds counts for each (this machine is shared). `node dist/bench/full-pipeline.js`
 * runs it alone; `PVE_CBT_BENCH_ROUNDS` changes the rounds; `PVE_CBT_BENCH_OTHER=DIR` (another
 * build's dist folder, e.g. of the commit before a change) adds its pipeline to every round, for
 * an old-vs-new ratio in one run.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mapExtents } from '../daemon/nbd/map-extents';
import { isListening } from '../daemon/nbd/is-listening';
import { NbdClient } from '../daemon/nbd/nbd-client';
import { readRanges } from '../daemon/nbd/nbd-reader';
import { BlobWorkers } from '../daemon/repository/blob-workers';
import { Repository } from '../daemon/repository/repository';
import { planFull } from '../daemon/backup/read-plan';
import { runChunkPipeline } from '../daemon/backup/chunk-pipeline';
import type { BenchResult } from './support/bench-result';
import { settle } from './support/settle';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIZE = 2 * GiB;
const CHUNK = 64 * 1024;
const ROUNDS = Number(process.env.PVE_CBT_BENCH_ROUNDS ?? 3);

async function makeImage(file: string): Promise<void> {
  const fh = await fsp.open(file, 'w');
  const cipher = crypto.createCipheriv('aes-256-ctr', crypto.createHash('sha256').update(file).digest(), Buffer.alloc(16));
  try {
    await fh.truncate(SIZE);
    for (let off = 0; off < SIZE; off += 2 * MiB) await fh.write(cipher.update(Buffer.alloc(MiB)), 0, MiB, off);
  } finally {
    await fh.close();
  }
}

async function startQemuNbd(image: string, socket: string): Promise<() => Promise<void>> {
  const child = spawn('qemu-nbd', ['-k', socket, '-r', '-t', '-e', '4', '--cache=none', '-f', 'raw', image], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
  for (let i = 0; i < 500; i++) {
    if (await isListening({ path: socket })) return stop;
    await new Promise((r) => setTimeout(r, 20));
  }
  await stop();
  throw new Error('qemu-nbd did not start');
}

async function dataExtents(connect: () => Promise<NbdClient>): Promise<{ offset: number; length: number }[]> {
  const probe = await connect();
  try {
    return (await mapExtents(probe, 'base:allocation')).filter((e) => (e.flags & 2) === 0).map((e) => ({ offset: e.offset, length: e.length }));
  } finally {
    await probe.close();
  }
}

async function floor(connect: () => Promise<NbdClient>, pool: BlobWorkers): Promise<number> {
  const t0 = performance.now();
  const ranges = await dataExtents(connect);
  const outstanding = new Set<Promise<void>>();
  await readRanges(
    ranges,
    async (_off, data, release) => {
      const jobs: Promise<string>[] = [];
      for (let o = 0; o < data.length; o += CHUNK) jobs.push(pool.digestHex(data.subarray(o, Math.min(data.length, o + CHUNK))));
      const p: Promise<void> = Promise.all(jobs).then(() => {
        outstanding.delete(p);
        release();
      });
      outstanding.add(p);
      if (outstanding.size >= 8) await Promise.race(outstanding);
    },
    { connect, reuseBuffers: true },
  );
  await Promise.all(outstanding);
  return performance.now() - t0;
}

interface Engine {
  Repository: typeof Repository;
  planFull: typeof planFull;
  runChunkPipeline: typeof runChunkPipeline;
}

const THIS: Engine = { Repository, planFull, runChunkPipeline };

/** The same modules of another build (PVE_CBT_BENCH_OTHER). */
function engineOf(dist: string): Engine {
  /* eslint-disable @typescript-eslint/no-require-imports */
  return {
    Repository: (require(path.join(dist, 'daemon/repository/repository.js')) as { Repository: typeof Repository }).Repository,
    planFull: (require(path.join(dist, 'daemon/backup/read-plan.js')) as { planFull: typeof planFull }).planFull,
    runChunkPipeline: (require(path.join(dist, 'daemon/backup/chunk-pipeline.js')) as { runChunkPipeline: typeof runChunkPipeline }).runChunkPipeline,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
}

async function pipeline(e: Engine, connect: () => Promise<NbdClient>, repoDir: string): Promise<{ ms: number; stored: number }> {
  fs.rmSync(repoDir, { recursive: true, force: true });
  const { planFull, runChunkPipeline } = e;
  const repo = await e.Repository.open(repoDir, { create: true });
  settle();
  try {
    const t0 = performance.now();
    const w = await repo.startBackup({ vmid: 100 });
    const dw = await w.openDisk({ name: 'scsi0', format: 'raw', size: SIZE, chunkSize: undefined });
    const plan = planFull(await dataExtents(connect), { diskSize: SIZE, chunkSize: dw.chunkSize, maxRequest: 4 * MiB });
    const bytesRead = await runChunkPipeline({ plan, dw, diskSize: SIZE, incremental: false, connect, reader: {}, onProgress: async () => {} });
    const entry = await dw.finish({ mode: 'full', reason: 'bench', bytesRead, durationMs: 0 });
    await w.commit();
    settle();
    return { ms: performance.now() - t0, stored: entry.bytesStored };
  } finally {
    await (repo as unknown as { close?: () => Promise<void> }).close?.();
  }
}

export async function run(): Promise<BenchResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-full-'));
  const img = path.join(dir, 'disk.raw');
  const sock = path.join(dir, 'nbd.sock');
  await makeImage(img);
  settle();
  const stop = await startQemuNbd(img, sock);
  const pool = new BlobWorkers();
  const connect = (): Promise<NbdClient> => NbdClient.connect({ socketPath: sock, metaContexts: ['base:allocation'] });
  const other = process.env.PVE_CBT_BENCH_OTHER ? engineOf(path.resolve(process.env.PVE_CBT_BENCH_OTHER)) : null;
  let bestFloor = Infinity;
  let best = Infinity;
  let bestOther = Infinity;
  let stored = 0;
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const f = await floor(connect, pool);
      bestFloor = Math.min(bestFloor, f);
      const o = other ? (await pipeline(other, connect, path.join(dir, 'repo'))).ms : NaN;
      if (other) bestOther = Math.min(bestOther, o);
      const p = await pipeline(THIS, connect, path.join(dir, 'repo'));
      best = Math.min(best, p.ms);
      stored = p.stored;
      if (process.env.PVE_CBT_BENCH_VERBOSE) console.error(`round ${r}: floor ${f.toFixed(0)} ms, other ${o.toFixed(0)} ms, pipeline ${p.ms.toFixed(0)} ms`);
    }
  } finally {
    await pool.close();
    await stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return [
    { name: 'full 2 GiB (1 GiB data): read + SHA-256 per 64 KiB (floor)', value: +(bestFloor / 1000).toFixed(2), unit: 's' },
    {
      name: `full 2 GiB (1 GiB data) into format 2 (stored ${stored} B)`,
      value: +(best / 1000).toFixed(2),
      unit: 's',
      baseline: `floor ${(bestFloor / 1000).toFixed(2)} s`,
      ratio: +(best / bestFloor).toFixed(2),
    },
    ...(other
      ? [{ name: `full 2 GiB into format 2: this build vs ${process.env.PVE_CBT_BENCH_OTHER}`, value: +(best / 1000).toFixed(2), unit: 's', baseline: `other ${(bestOther / 1000).toFixed(2)} s`, ratio: +(best / bestOther).toFixed(2) }]
      : []),
  ];
}

if (require.main === module) {
  run().then(
    (rows) => console.log(JSON.stringify(rows, null, 1)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
