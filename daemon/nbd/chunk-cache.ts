/**
 * Decoded chunks of one export, shared by all its connections (nbd-server.ts), with read-ahead.
 *
 * - A chunk asked for is read once however many requests want it at the same time: the cache
 *   holds the read's promise from the moment it starts.
 * - Up to `capacityBytes` of chunks are kept, least recently asked for leaving first (a read in
 *   flight that leaves is still answered to those waiting for it).
 * - Read-ahead: when chunk i is asked for right after chunk i-1 (a sequential reader: qemu-img
 *   convert, QEMU booting through an overlay, nbdfuse, one nbdcopy connection), the next
 *   `readAhead` chunks that are neither zero nor cached are read too, at most `aheadInFlight` of
 *   them at a time, so that the repository's reader (every chunk read, decoded and SHA-256-checked
 *   on the blob workers) works while the client waits for the network instead of after it. A client
 *   with many requests in flight (nbdcopy's default 64 per connection) has asked for those chunks
 *   already; then read-ahead adds nothing.
 * - A source that can read several adjacent chunks in one go (`readRun`, the serving source of
 *   daemon/repository/serve-source.ts) gets the chunks missing in one turn of the event loop (the
 *   requests one socket read delivered, their read-ahead) as runs of consecutive indexes, one
 *   call per run of up to MAX_RUN_BYTES.
 * - A failed read is not kept: the next request for that chunk reads again and gets the error
 *   itself; a failed read-ahead is dropped silently for the same reason.
 */
export interface CachedSource {
  readonly size: number;
  readonly geometry: { chunkSize: number };
  isZeroChunk(i: number): boolean;
  readChunk(i: number): Promise<Buffer>;
  /** Chunks `first` .. `first + count - 1` (all non-zero) read together; one promise per chunk. */
  readRun?(first: number, count: number): Promise<Buffer>[];
}

export interface ChunkCacheOptions {
  capacityBytes: number;
  readAhead: number;
  aheadInFlight: number;
}

export const DEFAULT_CACHE_OPTIONS: ChunkCacheOptions = { capacityBytes: 64 * 1024 * 1024, readAhead: 8, aheadInFlight: 4 };

/** Largest run of chunks handed to a source's `readRun` at once. */
export const MAX_RUN_BYTES = 2 * 1024 * 1024;

export class ChunkCache {
  private readonly map = new Map<number, Promise<Buffer>>();
  private readonly capacity: number;
  private readonly chunkCount: number;
  private aheadNow = 0;
  private pending: { i: number; resolve(b: Buffer): void; reject(err: unknown): void }[] = [];
  private flushing = false;
  /** Reads started for requests and for read-ahead (tests, the bench). */
  readonly counts = { reads: 0, readAhead: 0 };

  constructor(
    private readonly source: CachedSource,
    private readonly opts: ChunkCacheOptions = DEFAULT_CACHE_OPTIONS,
  ) {
    this.capacity = Math.max(1, Math.floor(opts.capacityBytes / source.geometry.chunkSize));
    this.chunkCount = Math.ceil(source.size / source.geometry.chunkSize);
  }

  /** Plain content of non-zero chunk `i`. */
  get(i: number): Promise<Buffer> {
    let p = this.map.get(i);
    if (p) {
      this.map.delete(i);
      this.map.set(i, p);
    } else {
      this.counts.reads++;
      p = this.load(i);
    }
    if (i === 0 || this.map.has(i - 1) || this.source.isZeroChunk(i - 1)) this.readAheadAfter(i);
    return p;
  }

  /** Plain contents of the non-zero chunks `chunks` (ascending, as one request covers them). */
  getMany(chunks: number[]): Promise<Buffer>[] {
    if (chunks.length === 1) return [this.get(chunks[0])];
    const out = chunks.map((i) => {
      const p = this.map.get(i);
      if (!p) {
        this.counts.reads++;
        return this.load(i);
      }
      this.map.delete(i);
      this.map.set(i, p);
      return p;
    });
    const first = chunks[0];
    if (first === 0 || this.map.has(first - 1) || this.source.isZeroChunk(first - 1)) this.readAheadAfter(chunks[chunks.length - 1]);
    return out;
  }

  /**
   * Starts the read of chunk `i`. A source with `readRun` gets it in the next batch: the requests
   * a socket delivered at once are decoded in one turn of the event loop, and their chunks go out
   * together as runs of consecutive indexes, up to MAX_RUN_BYTES each.
   */
  private load(i: number): Promise<Buffer> {
    if (!this.source.readRun) return this.keep(i, this.source.readChunk(i));
    const p = new Promise<Buffer>((resolve, reject) => this.pending.push({ i, resolve, reject }));
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush());
    }
    return this.keep(i, p);
  }

  private flush(): void {
    this.flushing = false;
    const all = this.pending.sort((a, b) => a.i - b.i);
    this.pending = [];
    const maxRun = Math.max(1, Math.floor(MAX_RUN_BYTES / this.source.geometry.chunkSize));
    for (let k = 0; k < all.length; ) {
      let n = 1;
      while (k + n < all.length && n < maxRun && all[k + n].i === all[k].i + n) n++;
      const group = all.slice(k, k + n);
      try {
        const ps = n === 1 || !this.source.readRun ? [this.source.readChunk(group[0].i)] : this.source.readRun(group[0].i, n);
        ps.forEach((p, m) => p.then(group[m].resolve, group[m].reject));
      } catch (err) {
        for (const g of group) g.reject(err);
      }
      k += n;
    }
  }

  private keep(i: number, p: Promise<Buffer>): Promise<Buffer> {
    p.catch(() => {
      if (this.map.get(i) === p) this.map.delete(i);
    });
    this.map.set(i, p);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as number);
    return p;
  }

  private readAheadAfter(i: number): void {
    const end = Math.min(this.chunkCount, i + 1 + this.opts.readAhead);
    const ahead: number[] = [];
    for (let j = i + 1; j < end && this.aheadNow + ahead.length < this.opts.aheadInFlight; j++) {
      if (this.map.has(j) || this.source.isZeroChunk(j)) continue;
      ahead.push(j);
    }
    if (!ahead.length) return;
    this.aheadNow += ahead.length;
    this.counts.readAhead += ahead.length;
    const done = (): void => {
      this.aheadNow--;
    };
    for (const j of ahead) this.load(j).then(done, done);
  }
}
