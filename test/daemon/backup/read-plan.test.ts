import crypto from 'node:crypto';
import { ChunkAssembler } from '../../../daemon/backup/chunk-assembler';
import { ChunkBuffers } from '../../../daemon/backup/chunk-buffers';
import { normalizeRanges, planFull, planIncremental, splitRanges, type ByteRange, type ReadPlan } from '../../../daemon/backup/read-plan';

const K = 1024;
const r = (offset: number, length: number): ByteRange => ({ offset, length });

describe('normalizeRanges / splitRanges', () => {
  test.each<[string, ByteRange[], number, ByteRange[]]>([
    ['empty', [], 100, []],
    ['unsorted, touching merged', [r(50, 10), r(0, 10), r(10, 5)], 100, [r(0, 15), r(50, 10)]],
    ['overlap merged', [r(0, 30), r(20, 30)], 100, [r(0, 50)]],
    ['gap kept', [r(0, 10), r(11, 10)], 100, [r(0, 10), r(11, 10)]],
    ['clipped to disk', [r(90, 50), r(200, 10)], 100, [r(90, 10)]],
    ['zero-length dropped', [r(5, 0)], 100, []],
  ])('%s', (_n, input, size, out) => expect(normalizeRanges(input, size)).toEqual(out));

  test('split to max request', () => {
    expect(splitRanges([r(0, 10), r(20, 25)], 10)).toEqual([r(0, 10), r(20, 10), r(30, 10), r(40, 5)]);
  });
});

describe('planFull', () => {
  test('size not a multiple of the chunk size; extent crossing chunks', () => {
    const p = planFull([r(48 * K, 40 * K), r(200 * K, 50 * K)], { diskSize: 250 * K, chunkSize: 64 * K, maxRequest: 32 * K });
    expect(p.chunkCount).toBe(4);
    expect(p.bytesToRead).toBe(90 * K);
    expect(p.requests).toEqual([r(48 * K, 32 * K), r(80 * K, 8 * K), r(200 * K, 32 * K), r(232 * K, 18 * K)]);
    expect(p.chunks).toEqual([
      { index: 0, ranges: [r(48 * K, 16 * K)], fill: 'zero' },
      { index: 1, ranges: [r(64 * K, 24 * K)], fill: 'zero' },
      { index: 3, ranges: [r(200 * K, 50 * K)], fill: 'zero' },
    ]);
  });

  test('nothing allocated: no reads', () => {
    const p = planFull([], { diskSize: 1 << 20, chunkSize: 64 * K, maxRequest: 1 << 20 });
    expect(p).toMatchObject({ requests: [], chunks: [], bytesToRead: 0, chunkCount: 16 });
  });
});

describe('planIncremental', () => {
  test('reads only dirty bytes; bad base chunks read whole', () => {
    const p = planIncremental([r(0, 4 * K), r(130 * K, 2 * K)], [2], { diskSize: 250 * K, chunkSize: 64 * K, maxRequest: 1 << 20 });
    expect(p.bytesToRead).toBe(4 * K + 64 * K);
    expect(p.chunks).toEqual([
      { index: 0, ranges: [r(0, 4 * K)], fill: 'base' },
      { index: 2, ranges: [r(128 * K, 64 * K)], fill: 'none' },
    ]);
  });

  test('bad tail chunk is clipped to the disk size', () => {
    const p = planIncremental([], [3, 99], { diskSize: 250 * K, chunkSize: 64 * K, maxRequest: 1 << 20 });
    expect(p.chunks).toEqual([{ index: 3, ranges: [r(192 * K, 58 * K)], fill: 'none' }]);
  });
});

/** Feeds the plan's requests (in random pieces) from `disk` and collects the chunks produced. */
async function assemble(plan: ReadPlan, disk: Buffer, base: Buffer | undefined): Promise<Map<number, Buffer | 'untouched'>> {
  const out = new Map<number, Buffer | 'untouched'>();
  const a = new ChunkAssembler(plan, {
    readBaseChunk: async (i) => Buffer.from((base as Buffer).subarray(i * plan.chunkSize, Math.min(plan.diskSize, (i + 1) * plan.chunkSize))),
    onChunk: async (i, d) => void out.set(i, d),
    onUntouched: async (i) => void out.set(i, 'untouched'),
    readWholeChunk: async () => {
      throw new Error('not expected');
    },
  }, new ChunkBuffers(plan.chunkSize));
  for (const q of plan.requests) {
    let off = q.offset;
    while (off < q.offset + q.length) {
      const n = Math.min(q.offset + q.length - off, 1 + crypto.randomInt(20 * K));
      await a.push(off, disk.subarray(off, off + n));
      off += n;
    }
  }
  await a.finish();
  expect(a.received).toBe(plan.bytesToRead);
  return out;
}

describe('ChunkAssembler', () => {
  const size = 250 * K + 123;
  const cs = 64 * K;

  test('incremental: base chunk with dirty ranges overlaid equals the new disk', async () => {
    const oldDisk = crypto.randomBytes(size);
    const newDisk = Buffer.from(oldDisk);
    const dirty = [r(10, 100), r(60 * K, 10 * K), r(200 * K, 4 * K), r(size - 50, 50)];
    for (const d of dirty) crypto.randomBytes(d.length).copy(newDisk, d.offset);
    const plan = planIncremental(dirty, [], { diskSize: size, chunkSize: cs, maxRequest: 8 * K });
    const out = await assemble(plan, newDisk, oldDisk);
    expect(out.size).toBe(plan.chunkCount);
    for (let i = 0; i < plan.chunkCount; i++) {
      const got = out.get(i);
      if (i === 2) expect(got).toBe('untouched');
      else expect((got as Buffer).equals(newDisk.subarray(i * cs, Math.min(size, (i + 1) * cs)))).toBe(true);
    }
  });

  test('full: unread bytes are zero, untouched chunks reported', async () => {
    const disk = Buffer.alloc(size);
    const data = [r(cs - 10, 20), r(3 * cs + 5, 1000)];
    for (const d of data) crypto.randomBytes(d.length).copy(disk, d.offset);
    const plan = planFull(data, { diskSize: size, chunkSize: cs, maxRequest: 1 << 20 });
    const out = await assemble(plan, disk, undefined);
    expect(out.get(2)).toBe('untouched');
    for (const i of [0, 1, 3]) expect((out.get(i) as Buffer).equals(disk.subarray(i * cs, Math.min(size, (i + 1) * cs)))).toBe(true);
  });

  test('whole chunks inside one read buffer are passed as views, mixed with copied partial chunks', async () => {
    const disk = crypto.randomBytes(size);
    const plan = planFull([r(0, 2 * cs + 100)], { diskSize: size, chunkSize: cs, maxRequest: 1 << 20 });
    const got = new Map<number, Buffer>();
    const pooled = new Map<number, boolean>();
    const a = new ChunkAssembler(plan, {
      readBaseChunk: async () => Buffer.alloc(0),
      onChunk: async (i, d, p) => {
        got.set(i, d);
        pooled.set(i, p);
      },
      onUntouched: async () => undefined,
      readWholeChunk: async () => undefined,
    }, new ChunkBuffers(cs));
    const one = disk.subarray(0, 2 * cs + 100);
    await a.push(0, one);
    await a.finish();
    expect(got.get(0)?.buffer).toBe(one.buffer);
    expect([...pooled]).toEqual([[0, false], [1, false], [2, true]]);
    expect(got.get(2)?.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(got.get(1)?.equals(disk.subarray(cs, 2 * cs))).toBe(true);
    expect(got.get(2)?.subarray(0, 100).equals(disk.subarray(2 * cs, 2 * cs + 100))).toBe(true);
    expect(got.get(2)?.subarray(100).every((b) => b === 0)).toBe(true);
  });

  test('a base copy that cannot be read (null) is replaced by the whole chunk from the source, dirty bytes laid over it', async () => {
    const disk = crypto.randomBytes(size);
    const plan = planIncremental([r(cs + 10, 20)], [], { diskSize: size, chunkSize: cs, maxRequest: 1 << 20 });
    const got = new Map<number, Buffer>();
    const whole: number[] = [];
    const a = new ChunkAssembler(plan, {
      readBaseChunk: async () => null,
      readWholeChunk: async (i, into) => {
        whole.push(i);
        disk.copy(into, 0, i * cs, i * cs + into.length);
      },
      onChunk: async (i, d) => void got.set(i, Buffer.from(d)),
      onUntouched: async () => undefined,
    }, new ChunkBuffers(cs));
    await a.push(cs + 10, disk.subarray(cs + 10, cs + 30));
    await a.finish();
    expect(whole).toEqual([1]);
    expect(got.get(1)?.equals(disk.subarray(cs, 2 * cs))).toBe(true);
  });

  test('out-of-plan data and early end throw', async () => {
    const plan = planFull([r(0, 100)], { diskSize: size, chunkSize: cs, maxRequest: 1 << 20 });
    const hooks = { readBaseChunk: async () => Buffer.alloc(0), onChunk: async () => undefined, onUntouched: async () => undefined, readWholeChunk: async () => undefined };
    await expect(new ChunkAssembler(plan, hooks, new ChunkBuffers(cs)).push(50, Buffer.alloc(10))).rejects.toThrow(/expected 0/);
    const a = new ChunkAssembler(plan, hooks, new ChunkBuffers(cs));
    await a.push(0, Buffer.alloc(50));
    await expect(a.finish()).rejects.toThrow(/before chunk 0/);
  });
});
