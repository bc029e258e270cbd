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
 * - A failed read is not kept: the next request for that chunk reads again and gets the error
 *   itself; a failed read-ahead is dropped silently for the same reason.
 */
export interface CachedSource {
  readonly size: number;
  readonly geometry: { chunkSize: number };
  isZeroChunk(i: number): boolean;
  readChunk(i: number): Promise<Buffer>;
}

export interface ChunkCacheOptions {
  capacityBytes: number;
  readAhead: number;
  aheadInFlight: number;
}

export const DEFAULT_CACHE_OPTIONS: ChunkCacheOptions = { capacityBytes: 64 * 1024 * 1024, readAhead: 8, aheadInFlight: 4 };

export class ChunkCache {
  private readonly map = new Map<number, Promise<Buffer>>();
  private readonly capacity: number;
  private readonly chunkCount: number;
  private aheadNow = 0;
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

  private load(i: number): Promise<Buffer> {
    const p = this.source.readChunk(i);
    p.catch(() => {
      if (this.map.get(i) === p) this.map.delete(i);
    });
    this.map.set(i, p);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as number);
    return p;
  }

  private readAheadAfter(i: number): void {
    const end = Math.min(this.chunkCount, i + 1 + this.opts.readAhead);
    for (let j = i + 1; j < end && this.aheadNow < this.opts.aheadInFlight; j++) {
      if (this.map.has(j) || this.source.isZeroChunk(j)) continue;
      this.aheadNow++;
      this.counts.readAhead++;
      const done = (): void => {
        this.aheadNow--;
      };
      this.load(j).then(done, done);
    }
  }
}
