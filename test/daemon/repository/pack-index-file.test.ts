import crypto from 'node:crypto';
import {
  PACK_INDEX_ENTRY_SIZE,
  PACK_INDEX_HEADER_SIZE,
  decodePackIndex,
  encodePackIndex,
  entryAt,
  findEntry,
  type PackIndexEntry,
} from '../../../daemon/repository/pack-index-file';
import { PACK_HEADER_SIZE, PACK_MAGIC_V2, isPackHeader, packHeader, packIndexKeyOf, packKeyOf } from '../../../daemon/repository/pack-format';

function entry(seed: string, offset: number, kind: 'chunk' | 'page' = 'chunk'): PackIndexEntry {
  return { digest: crypto.createHash('sha256').update(seed).digest(), offset, storedLength: 100 + (offset % 1000), plainLength: 65536, kind };
}

describe('pack index file', () => {
  test.each<[string, PackIndexEntry[]]>([
    ['no entries', []],
    ['one chunk', [entry('a', 16)]],
    ['chunks and a page, given out of order', [entry('c', 5000), entry('a', 16, 'page'), entry('b', 2000)]],
    ['an offset beyond 4 GiB', [entry('big', 5 * 2 ** 30)]],
  ])('%s: round trip, sorted by digest, found by digest', (_name, entries) => {
    const data = encodePackIndex(entries);
    expect(data.length).toBe(PACK_INDEX_HEADER_SIZE + entries.length * PACK_INDEX_ENTRY_SIZE + 32);
    const decoded = decodePackIndex(data);
    if ('corrupt' in decoded) throw new Error(decoded.corrupt);
    expect(decoded.count).toBe(entries.length);
    const sorted = [...entries].sort((a, b) => Buffer.compare(a.digest, b.digest));
    sorted.forEach((e, i) => {
      expect(entryAt(decoded.entries, i)).toEqual({ ...e, digest: expect.any(Buffer) });
      expect(entryAt(decoded.entries, i).digest.equals(e.digest)).toBe(true);
      expect(findEntry(decoded.entries, decoded.count, e.digest)).toBe(i);
    });
    expect(findEntry(decoded.entries, decoded.count, crypto.createHash('sha256').update('absent').digest())).toBe(-1);
  });

  const good = encodePackIndex([entry('a', 16), entry('b', 200)]);
  const flip = (at: number): Buffer => {
    const b = Buffer.from(good);
    b[at] ^= 0x01;
    return b;
  };
  test.each<[string, string, Buffer]>([
    ['empty file', 'truncated: 0 bytes', Buffer.alloc(0)],
    ['cut short', `length ${good.length - 1} for 2 entries`, good.subarray(0, good.length - 1)],
    ['bad magic', 'bad magic', flip(0)],
    ['another version', 'unknown version 3', flip(8)],
    ['a flipped bit in an entry', 'checksum mismatch', flip(PACK_INDEX_HEADER_SIZE + 40)],
    ['a flipped bit in the trailer', 'checksum mismatch', flip(good.length - 1)],
  ])('%s is corrupt: %s', (_name, reason, data) => {
    expect(decodePackIndex(data)).toEqual({ corrupt: reason });
  });

  it('refuses the same digest twice (a bug in the writer)', () => {
    expect(() => encodePackIndex([entry('a', 16), entry('a', 300)])).toThrow(RangeError);
  });

  it('frozen magic numbers and layout', () => {
    expect([...PACK_MAGIC_V2]).toEqual([...crypto.createHash('sha256').update('pve-cbt pack v2').digest().subarray(0, 8)]);
    expect([...good.subarray(0, 8)]).toEqual([...crypto.createHash('sha256').update('pve-cbt pack index v2').digest().subarray(0, 8)]);
    expect(packHeader().length).toBe(PACK_HEADER_SIZE);
    expect(isPackHeader(packHeader())).toBe(true);
    expect(packKeyOf('ab'.repeat(16))).toBe(`.packs/ab/${'ab'.repeat(16)}.pack`);
    expect(packIndexKeyOf('ab'.repeat(16))).toBe(`.packs/ab/${'ab'.repeat(16)}.idx`);
  });
});
