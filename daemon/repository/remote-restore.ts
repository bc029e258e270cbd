/**
 * A restore batch from packs on object storage (remote-packs.ts, s3-storage.ts), as the pack store
 * hands it over (pack-store.ts `restoreBatch`, scheduled by restore-workers.ts): each job's first
 * location; per pack, runs of adjacent blobs (`planRuns`, at most GET_BYTES each) fetched with one
 * ranged GET each, every blob decoded and checked on a blob worker (SHA-256, length: load-blob.ts)
 * straight into the run's output buffer, and the disk-adjacent chunks of a run written with one
 * pwrite. A chunk bad or absent at its first location (a short or missing range, a bad blob, the
 * wrong length, no location) goes through `read` afterwards, which tries every location and
 * refreshes the lookup once, exactly as before; what that cannot restore is answered `bad`.
 *
 * Pipelined, bounded: up to GETS_IN_FLIGHT runs of the batch at once (a batch spanning packs; the
 * lanes of restore-workers.ts run batches side by side), each GET → decode (its blobs on all
 * workers at once) → write, so one run downloads while another decodes or is written. Memory per
 * call: GETS_IN_FLIGHT × (GET_BYTES stored + the run's plain bytes). Every GET keeps the S3
 * client's inactivity bound (s3-client.ts). On an error the runs already started settle (their
 * writes into `fd` end) before it is thrown: the caller closes `fd` only after that.
 */
import fs from 'node:fs';
import type { BlobWorkers, RestoreBatchResult } from './blob-workers';
import type { ChunkJob } from './restore-workers';
import type { BlobLocation } from './pack-lookup';
import { planRuns, type RemotePacks } from './remote-packs';
import { packKeyOf } from './pack-format';
import { RepoChunkCorruptError, RepoChunkMissingError, RepoPageCorruptError, RepoPageMissingError } from './repository-errors';

/**
 * Largest ranged GET of a restore. radosgw here (memstore, 2 loaded cores) serves 4 MiB ranges at
 * ~90-118 MiB/s, 2 MiB at 70-84, 1 MiB at 41-64 whatever the number in flight: per-request cost,
 * not latency, bounds it, so a run is not cut smaller than restore-workers.ts's 4 MiB batch.
 */
export const GET_BYTES = 4 * 1024 * 1024;
/** Runs of one batch in flight at once (GET, decode or write). */
export const GETS_IN_FLIGHT = 4;

export interface RemoteRestoreSource {
  remote: RemotePacks;
  workers: BlobWorkers;
  magic: Buffer;
  /** The first location of a digest in the lookup (loaded), or undefined. */
  first(digest: string): BlobLocation | undefined;
  /** The chunk store's `read` (every location, a refresh): the retry of a chunk bad at its first. */
  read(digest: string): Promise<Buffer>;
}

type Placed = ChunkJob & { at: number; storedLength: number };

export async function restoreRemote(src: RemoteRestoreSource, fd: number, jobs: ChunkJob[]): Promise<RestoreBatchResult> {
  const byPack = new Map<string, Placed[]>();
  const retry: ChunkJob[] = [];
  for (const j of jobs) {
    const loc = src.first(j.digest);
    if (!loc) retry.push(j);
    else {
      const list = byPack.get(loc.packId) ?? [];
      list.push({ ...j, at: loc.offset, storedLength: loc.storedLength });
      byPack.set(loc.packId, list);
    }
  }
  const runs: { packId: string; start: number; end: number; items: { job: Placed }[] }[] = [];
  for (const [packId, list] of byPack) {
    for (const r of planRuns(list.map((j) => ({ offset: j.at, length: j.storedLength, job: j })), GET_BYTES)) runs.push({ packId, ...r });
  }
  let bytes = 0;
  const runOne = async (run: (typeof runs)[number]): Promise<void> => {
    const key = packKeyOf(run.packId);
    const buf = await src.remote.readRange(key, run.start, run.end - run.start);
    // The run's plain bytes, in the order of its items: disk-adjacent items are adjacent here too.
    const places: number[] = [];
    let plainBytes = 0;
    for (const { job } of run.items) {
      places.push(plainBytes);
      plainBytes += job.length;
    }
    const out = Buffer.from(new SharedArrayBuffer(plainBytes));
    const ok = await Promise.all(
      run.items.map(async ({ job }, k) => {
        const from = buf?.subarray(job.at - run.start, job.at - run.start + job.storedLength);
        if (!from || from.length !== job.storedLength) return false;
        const into = out.subarray(places[k], places[k] + job.length);
        const r = await src.workers.load({ file: key, digest: job.digest, magic: src.magic, checkCrc: false, maxPlain: job.length, into, from });
        return r.state === 'ok' && r.plain.length === job.length;
      }),
    );
    for (let k = 0; k < run.items.length; k++) if (!ok[k]) retry.push(run.items[k].job);
    for (const w of writeStretches(run.items.map(({ job }) => job), ok)) {
      await writeAt(fd, out.subarray(w.at, w.at + w.length), w.offset);
      bytes += w.length;
    }
  };
  await settledThenThrow(runs, GETS_IN_FLIGHT, runOne);
  const bad: number[] = [];
  for (const j of retry) {
    try {
      const plain = await src.read(j.digest);
      if (plain.length !== j.length) {
        bad.push(j.offset);
        continue;
      }
      await writeAt(fd, plain, j.offset);
      bytes += plain.length;
    } catch (err) {
      if (!RepoChunkMissingError.is(err) && !RepoChunkCorruptError.is(err) && !RepoPageMissingError.is(err) && !RepoPageCorruptError.is(err)) throw err;
      bad.push(j.offset);
    }
  }
  return { bad: bad.sort((a, b) => a - b), bytes };
}

/**
 * The writes of a run (pure): its chunks' plain bytes lie back to back in the run's buffer, in
 * item order; each stretch of good chunks that are adjacent on the disk too is one write of
 * `length` bytes from `at` in the buffer to `offset` on the disk. Bad chunks are skipped.
 */
export function writeStretches(items: readonly { offset: number; length: number }[], ok: readonly boolean[]): { at: number; offset: number; length: number }[] {
  const out: { at: number; offset: number; length: number }[] = [];
  let at = 0;
  for (let i = 0; i < items.length; ) {
    if (!ok[i]) {
      at += items[i].length;
      i++;
      continue;
    }
    let length = items[i].length;
    let j = i + 1;
    while (j < items.length && ok[j] && items[j].offset === items[i].offset + length) length += items[j++].length;
    out.push({ at, offset: items[i].offset, length });
    at += length;
    i = j;
  }
  return out;
}

/** `fn` over `items`, at most `width` at once; after a failure none is started, and the first error is thrown once all started have settled. */
async function settledThenThrow<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (!failure && next < items.length) {
      try {
        await fn(items[next++]);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
  if (failure) throw failure.err;
}

async function writeAt(fd: number, data: Buffer, offset: number): Promise<void> {
  for (let o = 0; o < data.length; ) {
    const n = await new Promise<number>((resolve, reject) => fs.write(fd, data, o, data.length - o, offset + o, (err, w) => (err ? reject(err) : resolve(w))));
    if (n === 0) throw Object.assign(new Error('write to the restore target returned 0 bytes'), { code: 'EIO', syscall: 'write' });
    o += n;
  }
}
