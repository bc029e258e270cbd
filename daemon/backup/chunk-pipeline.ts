/**
 * The read path of one disk: NBD reads (nbd-reader.ts) in the order of the read plan, assembled into
 * chunks (chunk-assembler.ts, with the base chunks of an incremental read ahead by base-prefetch.ts),
 * inserted into the disk writer while reading goes on (insert-window.ts).
 *
 * Batches: the chunks of one NBD read buffer go to the disk writer together, up to BATCH_BYTES,
 * as one `putChunks` and so one blob-worker trip (hash, base compare, dedup probe, encode, append
 * for each; pack-worker.ts). A trip per 64 KiB chunk cost more in messages, wake-ups and small
 * writes than the hashing itself. A batch never waits for a read that has not arrived: it goes
 * once the read buffers that arrived in one event-loop turn are assembled, so an incremental's
 * scattered chunks are neither held back nor sent one per trip. The insert window
 * counts bytes (INSERT_WINDOW_BYTES), so it means the same for every chunk size.
 *
 * Buffers: NBD read buffers are pooled shared memory of the reader (no page faults, no GC, worked on
 * by the blob workers without a copy). A chunk that lies whole in one of them is inserted as a view
 * of it, so the read buffer goes back to the reader only when its lease is dropped (piece-lease.ts):
 * after the assembler is done with it and every insert started from it settled. Chunks built in a
 * buffer of their own (partial chunks, an incremental's base + dirty bytes) come from a second pool
 * (chunk-buffers.ts) and go back to it when their insert settled.
 *
 * Reuse (PBS's "reused N %"): each chunk whose insert settled counts its length in `chunkBytes`, and
 * in `reusedBytes` too when the repository already had it (unchanged base copy, a known digest, a zero
 * chunk). Progress is reported after every batch and once more when every insert has settled, so
 * the last report has the final figures.
 */
import type { NbdClient } from '../nbd/nbd-client';
import { readRanges } from '../nbd/nbd-reader';
import type { DiskWriter } from '../repository/repository';
import { BasePrefetch } from './base-prefetch';
import { ChunkAssembler } from './chunk-assembler';
import { ChunkBuffers } from './chunk-buffers';
import { InsertWindow } from './insert-window';
import { PieceLease } from './piece-lease';
import { readWholeChunk } from './read-whole-chunk';
import { chunkLength, type ByteRange, type ReadPlan } from './read-plan';

/** Largest batch of chunks handed to the disk writer in one call (one blob-worker trip). */
export const BATCH_BYTES = 1024 * 1024;
/** Bytes of chunk inserts running at once while reading goes on (a few batches per blob worker). */
export const INSERT_WINDOW_BYTES = 8 * 1024 * 1024;

export interface ChunkPipelineInput {
  readonly plan: ReadPlan;
  readonly dw: DiskWriter;
  readonly diskSize: number;
  /** An incremental inherits the chunks it does not read; a full writes them as zero chunks. */
  readonly incremental: boolean;
  readonly connect: () => Promise<NbdClient>;
  readonly reader: { readonly connections?: number; readonly inFlight?: number; readonly requestSize?: number };
  readonly signal?: AbortSignal;
  /** After every chunk, with the bytes read so far; reading pauses while it runs. */
  readonly onProgress: (bytesDone: number, reuse: ChunkReuse) => Promise<void>;
}

/** Of the chunk bytes the repository has taken so far, those it already had. */
export interface ChunkReuse {
  readonly chunkBytes: number;
  readonly reusedBytes: number;
}

/**
 * Reads the plan into the disk writer; returns the bytes read. On failure no insert is running any
 * more when this throws.
 */
export async function runChunkPipeline(input: ChunkPipelineInput): Promise<number> {
  const { plan, dw } = input;
  const window = new InsertWindow(INSERT_WINDOW_BYTES);
  let lease: PieceLease | undefined;
  const buffers = new ChunkBuffers(dw.chunkSize);
  const reuse = { chunkBytes: 0, reusedBytes: 0 };
  /** Chunks not yet handed to the disk writer, each with what gives its memory back. */
  let batch: { index: number; data: Buffer; drop: (() => void) | undefined }[] = [];
  let batchBytes = 0;
  const put = async (items: { index: number; data: Buffer }[]): Promise<unknown> => {
    const lengths = items.map((b) => b.data.length); // a pooled buffer may be handed on once its insert settled
    const rs = await dw.putChunks(items);
    rs.forEach((r, k) => {
      reuse.chunkBytes += lengths[k];
      if (!r.stored) reuse.reusedBytes += lengths[k];
    });
    return rs;
  };
  const flush = async (): Promise<void> => {
    if (!batch.length) return;
    window.check();
    const items = batch;
    const bytes = batchBytes;
    batch = [];
    batchBytes = 0;
    await window.track(
      put(items.map(({ index, data }) => ({ index, data }))),
      () => {
        for (const b of items) b.drop?.();
      },
      bytes,
    );
    await input.onProgress(assembler.received, { ...reuse });
  };
  /**
   * The batch goes once the pieces that arrived in this event-loop turn are in: an incremental's
   * scattered chunks (one small read each) share a worker trip instead of taking one each, and a
   * batch still never waits for a read that has not arrived.
   */
  let scheduled = false;
  /** The scheduled batch's flush once it started, until it returned (a full window holds it). */
  let flushing: Promise<void> | undefined;
  let flushFailure: { error: unknown } | undefined;
  const flushSoon = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushing = flush()
        .catch((error: unknown) => {
          flushFailure ??= { error };
        })
        .finally(() => {
          flushing = undefined;
        });
    });
  };
  /** Waits for a started flush; throws what a scheduled flush failed with. */
  const settleFlush = async (): Promise<void> => {
    if (flushing) await flushing;
    if (flushFailure) throw flushFailure.error;
  };
  /** Lets a scheduled flush run and settle (before the last batch, or before cleaning up). */
  const drainFlushes = async (): Promise<void> => {
    while (scheduled || flushing) {
      if (flushing) await flushing;
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  const prefetch = new BasePrefetch(
    plan.chunks.filter((c) => c.fill === 'base').map((c) => c.index),
    (i) => dw.readBaseChunk(i, buffers.take(chunkLength(i, input.diskSize, dw.chunkSize), false)),
  );
  const assembler = new ChunkAssembler(
    plan,
    {
      readBaseChunk: (i) => prefetch.get(i),
      // A base chunk found damaged under a partly changed chunk is read whole from the VM instead.
      readWholeChunk: (i, into) => readWholeChunk(input.connect, i * dw.chunkSize, into),
      onChunk: async (i, data, pooled) => {
        window.check();
        batch.push({ index: i, data, drop: pooled ? () => buffers.give(data) : lease?.hold() });
        batchBytes += data.length;
        if (batchBytes >= BATCH_BYTES) await flush();
      },
      onUntouched: async (i) => {
        if (!input.incremental) dw.putZero(i);
      },
    },
    buffers,
  );
  try {
    const onData = async (off: number, data: Buffer, release: () => void): Promise<void> => {
      // A batch held up by a full insert window holds reading up too.
      await settleFlush();
      const piece = new PieceLease(release);
      lease = piece;
      try {
        await assembler.push(off, data);
        flushSoon();
      } finally {
        lease = undefined;
        piece.drop();
      }
    };
    const r = input.reader;
    await readRanges(plan.requests as ByteRange[], onData, {
      connect: input.connect,
      reuseBuffers: true,
      ...(r.connections !== undefined ? { connections: r.connections } : {}),
      ...(r.inFlight !== undefined ? { inFlight: r.inFlight } : {}),
      ...(r.requestSize !== undefined ? { requestSize: r.requestSize } : {}),
      ...(input.signal ? { signal: input.signal } : {}),
    });
    await drainFlushes();
    if (flushFailure) throw flushFailure.error;
    // An abort during a flush that ran after the last read (its progress report) stops the disk too.
    input.signal?.throwIfAborted();
    await assembler.finish();
    await flush();
    await window.finish();
    await input.onProgress(assembler.received, { ...reuse });
    input.signal?.throwIfAborted();
  } catch (err) {
    await drainFlushes();
    // Chunks never handed on: nobody else gives their memory back.
    for (const b of batch.splice(0)) b.drop?.();
    await window.stop();
    throw err;
  }
  return assembler.received;
}
