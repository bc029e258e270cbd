/**
 * Read planning: which bytes of a disk to read over NBD and how they land on repository chunks.
 * Pure extent arithmetic, table-tested.
 *
 * - full / full-compare: only ranges that hold data (NBD `base:allocation` without the zero flag)
 *   are read; the rest of a chunk is zero, and a chunk with nothing to read is a zero chunk.
 * - incremental: only the dirty ranges of the bitmap are read; a chunk's remaining bytes come
 *   from the same chunk of the base backup. Chunks whose base copy is known bad (verify found them
 *   missing or corrupt) are read whole so the new backup does not reference them.
 * Read requests merge only ranges that touch (never across a gap: that would read clean bytes)
 * and are split to `maxRequest`; they may cross chunk boundaries.
 */

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

export interface ChunkWork {
  readonly index: number;
  /** Absolute disk ranges inside this chunk to read, ascending and disjoint. */
  readonly ranges: readonly ByteRange[];
  /** Where the bytes not read come from: base chunk, zeroes, or nowhere (ranges cover it all). */
  readonly fill: 'base' | 'zero' | 'none';
}

export interface ReadPlan {
  readonly diskSize: number;
  readonly chunkSize: number;
  readonly chunkCount: number;
  /** Requests in ascending order, each at most maxRequest bytes. */
  readonly requests: readonly ByteRange[];
  /** Only chunks with something to read, ascending. */
  readonly chunks: readonly ChunkWork[];
  readonly bytesToRead: number;
}

export interface PlanOptions {
  readonly diskSize: number;
  readonly chunkSize: number;
  readonly maxRequest: number;
}

export function chunkCountOf(diskSize: number, chunkSize: number): number {
  return Math.ceil(diskSize / chunkSize);
}

export function chunkLength(index: number, diskSize: number, chunkSize: number): number {
  return Math.min(chunkSize, diskSize - index * chunkSize);
}

/** Sorts, clips to the disk and merges overlapping or touching ranges; drops empty ones. */
export function normalizeRanges(ranges: readonly ByteRange[], diskSize: number): ByteRange[] {
  const sorted = ranges
    .map((r) => ({ offset: Math.max(0, r.offset), end: Math.min(diskSize, r.offset + r.length) }))
    .filter((r) => r.end > r.offset)
    .sort((a, b) => a.offset - b.offset);
  const out: { offset: number; end: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out.map((r) => ({ offset: r.offset, length: r.end - r.offset }));
}

export function splitRanges(ranges: readonly ByteRange[], maxRequest: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const r of ranges) {
    for (let off = r.offset; off < r.offset + r.length; off += maxRequest) {
      out.push({ offset: off, length: Math.min(maxRequest, r.offset + r.length - off) });
    }
  }
  return out;
}

function chunkWorks(ranges: readonly ByteRange[], opts: PlanOptions, fill: 'base' | 'zero'): ChunkWork[] {
  const byChunk = new Map<number, ByteRange[]>();
  for (const r of ranges) {
    const end = r.offset + r.length;
    for (let i = Math.floor(r.offset / opts.chunkSize); i * opts.chunkSize < end; i++) {
      const cs = i * opts.chunkSize;
      const ce = cs + chunkLength(i, opts.diskSize, opts.chunkSize);
      const part = { offset: Math.max(cs, r.offset), length: Math.min(ce, end) - Math.max(cs, r.offset) };
      const list = byChunk.get(i) ?? [];
      list.push(part);
      byChunk.set(i, list);
    }
  }
  return [...byChunk.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([index, list]) => {
      const covered = list.reduce((s, r) => s + r.length, 0) === chunkLength(index, opts.diskSize, opts.chunkSize);
      return { index, ranges: list, fill: covered ? 'none' : fill };
    });
}

function plan(ranges: ByteRange[], opts: PlanOptions, fill: 'base' | 'zero'): ReadPlan {
  if (!(opts.chunkSize > 0) || !(opts.maxRequest > 0)) throw new RangeError('chunkSize and maxRequest must be positive');
  return {
    diskSize: opts.diskSize,
    chunkSize: opts.chunkSize,
    chunkCount: chunkCountOf(opts.diskSize, opts.chunkSize),
    requests: splitRanges(ranges, opts.maxRequest),
    chunks: chunkWorks(ranges, opts, fill),
    bytesToRead: ranges.reduce((s, r) => s + r.length, 0),
  };
}

/** full / full-compare: `data` are the ranges that hold data (allocated and not known zero). */
export function planFull(data: readonly ByteRange[], opts: PlanOptions): ReadPlan {
  return plan(normalizeRanges(data, opts.diskSize), opts, 'zero');
}

/** incremental: dirty ranges from the bitmap, plus whole chunks whose base copy is bad. */
export function planIncremental(dirty: readonly ByteRange[], badBaseChunks: readonly number[], opts: PlanOptions): ReadPlan {
  const whole = badBaseChunks
    .filter((i) => i >= 0 && i * opts.chunkSize < opts.diskSize)
    .map((i) => ({ offset: i * opts.chunkSize, length: chunkLength(i, opts.diskSize, opts.chunkSize) }));
  return plan(normalizeRanges([...dirty, ...whole], opts.diskSize), opts, 'base');
}
