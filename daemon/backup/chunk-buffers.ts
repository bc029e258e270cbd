/**
 * Chunk-sized buffers in shared memory, reused. An incremental builds every chunk it changes in a
 * buffer of its own (the base copy with the dirty bytes laid over it), as does a full for a chunk
 * that spans NBD pieces; the blob workers then hash and store it without a copy because the memory
 * is shared. A new SharedArrayBuffer per chunk would do the same, but Node frees those only at a
 * major GC, so a long incremental grew by hundreds of MiB; the pool holds only what is in flight
 * (the put window, the base prefetch window and the chunk being filled).
 */
export class ChunkBuffers {
  private readonly free: SharedArrayBuffer[] = [];

  constructor(private readonly chunkSize: number) {}

  /** A buffer of `length` (at most the chunk size), zeroed unless the caller overwrites all of it. */
  take(length: number, zeroed = true): Buffer {
    const b = Buffer.from(this.free.pop() ?? new SharedArrayBuffer(this.chunkSize), 0, length);
    if (zeroed) b.fill(0);
    return b;
  }

  /** Gives back a buffer from `take` once nobody reads it any more; other memory is left alone. */
  give(buf: Buffer): void {
    if (buf.buffer instanceof SharedArrayBuffer && buf.buffer.byteLength === this.chunkSize) this.free.push(buf.buffer);
  }
}
