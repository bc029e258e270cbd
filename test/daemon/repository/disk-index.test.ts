import {
  decodePageList,
  defaultPageEntries,
  encodePageList,
  geometry,
  isValidChunkSize,
  pageContent,
} from '../../../daemon/repository/disk-index';
import { ZERO_DIGEST } from '../../../daemon/repository/digest';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

describe('disk index geometry and page lists', () => {
  it.each([
    [64 * 1024, true],
    [128 * 1024, true],
    [16 * 1024 * 1024, true],
    [32 * 1024, false],
    [192 * 1024, false],
    [32 * 1024 * 1024, false],
    [0, false],
    [131072.5, false],
  ])('isValidChunkSize(%d) = %s', (n, ok) => expect(isValidChunkSize(n)).toBe(ok));

  it.each([
    [1, 16],
    [64, 16],
    [65, 32], // 2·sqrt(65) > 16
    [8192, 256], // 2 GiB at 256 KiB: 32 pages
    [16384, 256], // 2 GiB at 128 KiB
    [524288, 1024], // 64 GiB at 128 KiB
    [8388608, 1024], // 1 TiB: capped at 32 KiB pages
    [1e9, 1024],
  ])('defaultPageEntries(%d) = %d', (chunks, entries) => expect(defaultPageEntries(chunks)).toBe(entries));

  it('geometry of a size that is not a multiple of the chunk size', () => {
    expect(geometry(10 * 131072 + 1, 131072, 4)).toEqual({ size: 10 * 131072 + 1, chunkSize: 131072, chunkCount: 11, pageEntries: 4, pageCount: 3 });
    expect(geometry(0, 131072, 4)).toMatchObject({ chunkCount: 0, pageCount: 0 });
  });

  it('the last page holds only the remaining entries', () => {
    const g = geometry(5 * 65536, 65536, 2);
    const table = Buffer.alloc(5 * 32, 1);
    expect(pageContent(g, table, 0).length).toBe(64);
    expect(pageContent(g, table, 2).length).toBe(32);
  });

  it.each<[string[], string[]]>([
    [[], []],
    [[A], [A]],
    [[A, A, A, B, ZERO_DIGEST, ZERO_DIGEST], [`${A}*3`, B, `${ZERO_DIGEST}*2`]],
    [[A, B, A], [A, B, A]],
  ])('run-length encodes %j', (list, encoded) => {
    expect(encodePageList(list)).toEqual(encoded);
    expect(decodePageList(encoded, list.length)).toEqual(list);
  });

  it.each<[unknown, number, string]>([
    ['x', 1, 'not an array'],
    [[A], 2, 'page list has 1 pages'],
    [[`${A}*3`], 2, 'longer than the 2 pages'],
    [[`${A}*0`], 0, 'bad page entry'],
    [[`${A}*x`], 1, 'bad page entry'],
    [['A'.repeat(64)], 1, 'bad page entry'],
    [[`${A}*1*1`], 1, 'bad page entry'],
    [[5], 1, 'not a string'],
  ])('rejects malformed page list %j (pageCount %d)', (entries, count, reason) => {
    expect(decodePageList(entries, count)).toEqual(expect.stringContaining(reason));
  });
});
