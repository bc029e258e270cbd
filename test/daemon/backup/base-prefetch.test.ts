import { BasePrefetch } from '../../../daemon/backup/base-prefetch';

describe('BasePrefetch', () => {
  test('reads ahead within the window, each chunk once, in consumption order', async () => {
    const reads: number[] = [];
    const p = new BasePrefetch([2, 5, 7, 9, 11], async (i) => {
      reads.push(i);
      return Buffer.from([i]);
    }, 2);
    expect((await p.get(2))[0]).toBe(2);
    expect(reads).toEqual([2, 5]);
    expect((await p.get(5))[0]).toBe(5);
    expect(reads).toEqual([2, 5, 7]);
    for (const i of [7, 9, 11]) expect((await p.get(i))[0]).toBe(i);
    expect(reads).toEqual([2, 5, 7, 9, 11]);
  });

  test('a failed read surfaces when that chunk is asked for, not before', async () => {
    const p = new BasePrefetch([1, 2], async (i) => {
      if (i === 2) throw new Error('chunk 2 missing');
      return Buffer.alloc(1);
    });
    await expect(p.get(1)).resolves.toHaveLength(1);
    await expect(p.get(2)).rejects.toThrow(/chunk 2 missing/);
  });

  test('an index outside the plan is read directly', async () => {
    const p = new BasePrefetch([], async (i) => Buffer.from([i]));
    expect((await p.get(4))[0]).toBe(4);
  });
});
