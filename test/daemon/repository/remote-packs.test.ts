import { planRuns } from '../../../daemon/repository/remote-packs';

describe('runs of a pack fetched with one ranged GET', () => {
  it.each([
    ['adjacent blobs form one run', [[0, 10], [10, 5], [15, 20]], 100, 4, [[0, 35, 3]]],
    ['input order does not matter', [[15, 20], [0, 10], [10, 5]], 100, 4, [[0, 35, 3]]],
    ['a gap up to maxGap is spanned', [[0, 10], [14, 6]], 100, 4, [[0, 20, 2]]],
    ['a wider gap starts a new run', [[0, 10], [15, 5]], 100, 4, [[0, 10, 1], [15, 20, 1]]],
    ['a run stops at maxBytes', [[0, 60], [60, 60], [120, 10]], 100, 4, [[0, 60, 1], [60, 130, 2]]],
    ['one blob larger than maxBytes is its own run', [[0, 500]], 100, 4, [[0, 500, 1]]],
    ['nothing to fetch', [], 100, 4, []],
  ])('%s', (_what, items, maxBytes, maxGap, want) => {
    const runs = planRuns(items.map(([offset, length]) => ({ offset: offset!, length: length! })), maxBytes as number, maxGap as number);
    expect(runs.map((r) => [r.start, r.end, r.items.length])).toEqual(want);
  });
});
