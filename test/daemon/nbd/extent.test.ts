import { clipExtents, descriptorsToExtents, mergeExtents, selectExtents, splitRange } from '../../../daemon/nbd/extent';

describe('mergeExtents', () => {
  test.each([
    ['empty', [], []],
    ['single', [{ offset: 0, length: 5, flags: 1 }], [{ offset: 0, length: 5, flags: 1 }]],
    [
      'adjacent same flags join',
      [{ offset: 0, length: 5, flags: 3 }, { offset: 5, length: 7, flags: 3 }],
      [{ offset: 0, length: 12, flags: 3 }],
    ],
    [
      'adjacent different flags stay',
      [{ offset: 0, length: 5, flags: 0 }, { offset: 5, length: 7, flags: 3 }],
      [{ offset: 0, length: 5, flags: 0 }, { offset: 5, length: 7, flags: 3 }],
    ],
    [
      'gap keeps them apart',
      [{ offset: 0, length: 5, flags: 1 }, { offset: 6, length: 1, flags: 1 }],
      [{ offset: 0, length: 5, flags: 1 }, { offset: 6, length: 1, flags: 1 }],
    ],
    [
      'empty extents dropped, run of three joins',
      [{ offset: 0, length: 1, flags: 2 }, { offset: 1, length: 0, flags: 0 }, { offset: 1, length: 1, flags: 2 }, { offset: 2, length: 1, flags: 2 }],
      [{ offset: 0, length: 3, flags: 2 }],
    ],
  ])('%s', (_name, input, expected) => {
    const copy = JSON.parse(JSON.stringify(input));
    expect(mergeExtents(input)).toEqual(expected);
    expect(input).toEqual(copy);
  });
});

describe('clipExtents', () => {
  const map = [
    { offset: 0, length: 100, flags: 0 },
    { offset: 100, length: 100, flags: 3 },
    { offset: 200, length: 100, flags: 0 },
  ];
  test.each([
    ['inside one', 10, 20, [{ offset: 10, length: 20, flags: 0 }]],
    ['across two', 90, 20, [{ offset: 90, length: 10, flags: 0 }, { offset: 100, length: 10, flags: 3 }]],
    ['exact middle', 100, 100, [{ offset: 100, length: 100, flags: 3 }]],
    ['past the end', 250, 100, [{ offset: 250, length: 50, flags: 0 }]],
    ['empty range', 50, 0, []],
  ])('%s', (_n, offset, length, expected) => {
    expect(clipExtents(map, offset, length)).toEqual(expected);
  });
});

test('descriptorsToExtents lays descriptors end to end', () => {
  expect(descriptorsToExtents(4096, [[512, 0], [1024, 3], [1, 1]])).toEqual([
    { offset: 4096, length: 512, flags: 0 },
    { offset: 4608, length: 1024, flags: 3 },
    { offset: 5632, length: 1, flags: 1 },
  ]);
});

test('selectExtents filters by mask and value', () => {
  const map = [
    { offset: 0, length: 1, flags: 0 },
    { offset: 1, length: 1, flags: 2 },
    { offset: 2, length: 1, flags: 3 },
  ];
  expect(selectExtents(map, 3, 0)).toEqual([{ offset: 0, length: 1, flags: 0 }]);
  expect(selectExtents(map, 2, 2)).toHaveLength(2);
});

describe('splitRange', () => {
  test.each([
    ['fits', 0, 10, 16, 1, [[0, 10]]],
    ['exact multiple', 0, 32, 16, 1, [[0, 16], [16, 16]]],
    ['remainder', 0, 40, 16, 1, [[0, 16], [16, 16], [32, 8]]],
    ['unaligned start realigns', 5, 40, 16, 8, [[5, 11], [16, 16], [32, 13]]],
    ['max not a multiple of align', 0, 50, 20, 8, [[0, 16], [16, 16], [32, 16], [48, 2]]],
    ['align larger than max', 3, 10, 4, 8, [[3, 4], [7, 4], [11, 2]]],
    ['empty', 7, 0, 16, 1, []],
  ])('%s', (_n, offset, length, max, align, expected) => {
    const got = splitRange(offset, length, max, align).map((p) => [p.offset, p.length]);
    expect(got).toEqual(expected);
    expect(got.reduce((n, [, l]) => n + (l as number), 0)).toBe(length);
  });
  test('rejects a non-positive maximum', () => {
    expect(() => splitRange(0, 1, 0)).toThrow(RangeError);
  });
});
