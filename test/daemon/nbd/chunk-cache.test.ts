/**
 * The NBD server's chunk cache (daemon/nbd/chunk-cache.ts) over an in-memory source: one read per
 * chunk however many ask at once, read-ahead for sequential readers only (zero and cached chunks
 * skipped, bounded in flight), the byte budget, and failed reads not kept.
 */
import { ChunkCache, type CachedSource } from '../../../daemon/nbd/chunk-cache';

const CHUNK = 4;

/** A source of `n` chunks whose reads wait until released; chunk i holds bytes i. */
function source(n: number, zero: number[] = [], failing: number[] = []) {
  const reads: number[] = [];
  const waiting: (() => void)[] = [];
  const failed = new Set(failing);
  const src: CachedSource = {
    size: n * CHUNK,
    geometry: { chunkSize: CHUNK },
    isZeroChunk: (i) => zero.includes(i),
    readChunk: (i) => {
      reads.push(i);
      return new Promise((resolve, reject) => waiting.push(() => (failed.has(i) ? reject(new Error(`chunk ${i} is bad`)) : resolve(Buffer.alloc(CHUNK, i)))));
    },
  };
  const release = async () => {
    while (waiting.length) waiting.shift()?.();
    await new Promise((r) => setImmediate(r));
  };
  return { src, reads, release, failed };
}

const opts = (o: Partial<{ capacityBytes: number; readAhead: number; aheadInFlight: number }> = {}) => ({ capacityBytes: 64 * CHUNK, readAhead: 3, aheadInFlight: 2, ...o });

test.each([
  { what: 'first chunk: reads ahead', asks: [0], reads: [0, 1, 2] },
  { what: 'sequential: each next chunk reads further ahead', asks: [0, 1, 2], reads: [0, 1, 2, 3, 4, 5] },
  { what: 'a jump (random reader): no read-ahead', asks: [5], reads: [5] },
  { what: 'after a jump, the next chunk is sequential again', asks: [5, 6], reads: [5, 6, 7, 8] },
  { what: 'zero chunks are skipped, and count as read before the next', zero: [1, 2], asks: [0, 3], reads: [0, 3, 4, 5] },
  { what: 'not past the end', asks: [8, 9], reads: [8, 9] },
])('$what', async ({ asks, reads, zero }) => {
  const s = source(10, zero);
  const cache = new ChunkCache(s.src, opts());
  for (const i of asks) {
    const p = cache.get(i);
    await s.release();
    expect(await p).toEqual(Buffer.alloc(CHUNK, i));
  }
  expect(s.reads).toEqual(reads);
});

test('requests at once share one read; read-ahead in flight is bounded and what it read is served without a read', async () => {
  const s = source(20);
  const cache = new ChunkCache(s.src, opts({ readAhead: 8, aheadInFlight: 2 }));
  const a = [cache.get(0), cache.get(0), cache.get(0)];
  expect(s.reads).toEqual([0, 1, 2]); // one read of chunk 0, two ahead (the bound)
  await s.release();
  for (const p of a) expect(await p).toEqual(Buffer.alloc(CHUNK, 0));
  expect(await cache.get(1)).toEqual(Buffer.alloc(CHUNK, 1)); // from the read-ahead, no read
  expect(s.reads.filter((i) => i === 1)).toHaveLength(1);
  expect(cache.counts).toEqual({ reads: 1, readAhead: 4 });
});

test('the byte budget evicts the least recently asked for; an evicted chunk is read again', async () => {
  const s = source(10);
  const cache = new ChunkCache(s.src, opts({ capacityBytes: 2 * CHUNK, readAhead: 0 }));
  for (const i of [0, 5, 0, 7]) {
    const p = cache.get(i);
    await s.release();
    await p;
  }
  // 0 and 5 cached, 0 asked again (hit), 7 evicts 5; 0 is still there, 5 is read again.
  const p0 = cache.get(0);
  const p5 = cache.get(5);
  await s.release();
  expect([await p0, await p5]).toEqual([Buffer.alloc(CHUNK, 0), Buffer.alloc(CHUNK, 5)]);
  expect(s.reads).toEqual([0, 5, 7, 5]);
});

test('a failed read is not kept: the next request reads again and gets the result itself', async () => {
  const s = source(10, [], [1]);
  const cache = new ChunkCache(s.src, opts());
  const p = cache.get(0); // reads 1 ahead, which fails silently
  await s.release();
  await p;
  const again = cache.get(1);
  await s.release();
  await expect(again).rejects.toThrow('chunk 1 is bad');
  s.failed.delete(1);
  const third = cache.get(1);
  await s.release();
  expect(await third).toEqual(Buffer.alloc(CHUNK, 1));
  expect(s.reads.filter((i) => i === 1)).toHaveLength(3);
});
