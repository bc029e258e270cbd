/**
 * Builds repository chunks from a ReadPlan while data arrives from NBD in ascending offset order.
 *
 * A chunk's buffer (from a pool of shared memory, chunk-buffers.ts) starts as its base copy
 * (incremental) or zeroes (full), read ranges are copied over it, and it is handed to `onChunk` as
 * soon as its last planned byte arrived, so memory stays at the chunks in flight (the one being
 * filled, the caller's insert and prefetch windows) plus the reader's. A chunk that lies whole inside one read
 * buffer is passed on as a view of it, without copying. Chunks without planned reads are reported
 * through `onUntouched` (a full writes them as zero chunks; an incremental inherits them).
 * Data that does not match the plan (gaps, overlaps, out of order) is a bug and throws.
 * A base copy that cannot be read (missing or damaged in the repository) is replaced by the whole
 * chunk read from the source (`readWholeChunk`), so a partly changed chunk never fails the backup
 * on a damaged base; the planned ranges then land on the same bytes.
 */
import { InternalError } from '../../shared/errors/internal-errors';
import type { ChunkBuffers } from './chunk-buffers';
import { chunkLength, type ChunkWork, type ReadPlan } from './read-plan';

export interface AssemblerHooks {
  /** The base backup's copy of a chunk (incremental only), in a buffer taken from the assembler's pool; null when it cannot be read. */
  readBaseChunk(index: number): Promise<Buffer | null>;
  /** Fills `into` with the whole chunk `index` as the source has it (used when its base copy cannot be read). */
  readWholeChunk(index: number, into: Buffer): Promise<void>;
  /** `pooled`: `data` came from the pool, and goes back to it (`buffers.give`) once nobody reads it. */
  onChunk(index: number, data: Buffer, pooled: boolean): Promise<void>;
  onUntouched(index: number): Promise<void>;
}

export class ChunkAssembler {
  private next = 0; // index into plan.chunks of the chunk being filled
  private nextIndex = 0; // next chunk index not yet emitted (touched or not)
  private buf: Buffer | undefined;
  private rangePos = 0; // index into current chunk's ranges
  private rangeDone = 0; // bytes of that range already received
  private bytesReceived = 0;

  constructor(
    private readonly plan: ReadPlan,
    private readonly hooks: AssemblerHooks,
    private readonly buffers: ChunkBuffers,
  ) {}

  get received(): number {
    return this.bytesReceived;
  }

  async push(offset: number, data: Buffer): Promise<void> {
    let pos = 0;
    while (pos < data.length) {
      const work = this.plan.chunks[this.next];
      if (!work) throw InternalError({ what: `read data at ${offset + pos} beyond the plan`, offset: offset + pos });
      const range = work.ranges[this.rangePos];
      const expectAt = range.offset + this.rangeDone;
      if (offset + pos !== expectAt) throw InternalError({ what: `read data at ${offset + pos}, expected ${expectAt}`, offset: offset + pos, expected: expectAt });
      if (!this.buf) {
        await this.emitUntouchedBefore(work.index);
        // A whole chunk inside one read buffer is handed on as a view: no copy on the full path.
        if (work.fill === 'none' && work.ranges.length === 1 && this.rangeDone === 0 && data.length - pos >= range.length) {
          pos += range.length;
          this.bytesReceived += range.length;
          this.buf = data.subarray(pos - range.length, pos);
          await this.finishChunk(work, false);
          continue;
        }
        this.buf = await this.startBuffer(work);
      }
      const take = Math.min(range.length - this.rangeDone, data.length - pos);
      const chunkStart = work.index * this.plan.chunkSize;
      data.copy(this.buf, expectAt - chunkStart, pos, pos + take);
      pos += take;
      this.rangeDone += take;
      this.bytesReceived += take;
      if (this.rangeDone === range.length) {
        this.rangePos++;
        this.rangeDone = 0;
        if (this.rangePos === work.ranges.length) await this.finishChunk(work, true);
      }
    }
  }

  /** Emits the trailing untouched chunks; throws when planned data never arrived. */
  async finish(): Promise<void> {
    if (this.next < this.plan.chunks.length) {
      throw InternalError({ what: `read ended before chunk ${this.plan.chunks[this.next].index} was complete`, chunk: this.plan.chunks[this.next].index });
    }
    await this.emitUntouchedBefore(this.plan.chunkCount);
  }

  private async startBuffer(work: ChunkWork): Promise<Buffer> {
    const len = chunkLength(work.index, this.plan.diskSize, this.plan.chunkSize);
    if (work.fill !== 'base') return this.buffers.take(len);
    const base = await this.hooks.readBaseChunk(work.index);
    if (base === null) {
      const whole = this.buffers.take(len, false);
      await this.hooks.readWholeChunk(work.index, whole);
      return whole;
    }
    if (base.length !== len) throw InternalError({ what: `base chunk ${work.index} has ${base.length} bytes, expected ${len}`, chunk: work.index, length: base.length, expected: len });
    return base;
  }

  private async finishChunk(work: ChunkWork, pooled: boolean): Promise<void> {
    const data = this.buf as Buffer;
    this.buf = undefined;
    this.next++;
    this.rangePos = 0;
    this.nextIndex = work.index + 1;
    await this.hooks.onChunk(work.index, data, pooled);
  }

  private async emitUntouchedBefore(index: number): Promise<void> {
    for (; this.nextIndex < index; this.nextIndex++) await this.hooks.onUntouched(this.nextIndex);
  }
}
