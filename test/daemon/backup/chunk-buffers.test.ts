import { ChunkBuffers } from '../../../daemon/backup/chunk-buffers';

describe('chunk buffers', () => {
  it('hands out zeroed shared memory of the asked length and reuses what is given back', () => {
    const pool = new ChunkBuffers(1024);
    const a = pool.take(1024);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.length).toBe(1024);
    a.fill(7);
    pool.give(a);
    const b = pool.take(100);
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(100);
    expect(b.every((x) => x === 0)).toBe(true);
  });

  it('leaves the old bytes when the caller overwrites all of them anyway, and makes new memory when none is free', () => {
    const pool = new ChunkBuffers(64);
    const a = pool.take(64);
    a.fill(9);
    pool.give(a);
    expect(pool.take(64, false).buffer).toBe(a.buffer);
    expect(pool.take(64).buffer).not.toBe(a.buffer);
  });

  it('ignores memory that is not its own (ordinary, or shared of another size)', () => {
    const pool = new ChunkBuffers(64);
    pool.give(Buffer.alloc(64));
    pool.give(Buffer.from(new SharedArrayBuffer(128)));
    const b = pool.take(64);
    expect(b.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(b.buffer.byteLength).toBe(64);
  });
});
