import { writeStretches } from '../../../daemon/repository/remote-restore';

const K = 64 * 1024;

describe('writeStretches: the writes of a run fetched from object storage (remote-restore.ts)', () => {
  test.each<[string, [number, number][], boolean[], { at: number; offset: number; length: number }[]]>([
    ['disk-adjacent chunks: one write', [[0, K], [K, K], [2 * K, K]], [true, true, true], [{ at: 0, offset: 0, length: 3 * K }]],
    ['a bad chunk in the middle splits the write and is skipped', [[0, K], [K, K], [2 * K, K]], [true, false, true], [{ at: 0, offset: 0, length: K }, { at: 2 * K, offset: 2 * K, length: K }]],
    ['not adjacent on the disk: one write each', [[5 * K, K], [K, K], [9 * K, K]], [true, true, true], [{ at: 0, offset: 5 * K, length: K }, { at: K, offset: K, length: K }, { at: 2 * K, offset: 9 * K, length: K }]],
    ['a short last chunk joins its stretch', [[0, K], [K, 4321]], [true, true], [{ at: 0, offset: 0, length: K + 4321 }]],
    ['all bad: nothing to write', [[0, K], [K, K]], [false, false], []],
    ['a bad first chunk moves the buffer position on', [[0, K], [K, K], [2 * K, K]], [false, true, true], [{ at: K, offset: K, length: 2 * K }]],
    ['adjacent on the disk but in reverse order: two writes', [[K, K], [0, K]], [true, true], [{ at: 0, offset: K, length: K }, { at: K, offset: 0, length: K }]],
  ])('%s', (_name, items, ok, want) => {
    expect(writeStretches(items.map(([offset, length]) => ({ offset, length })), ok)).toEqual(want);
  });
});
