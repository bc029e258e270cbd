import { OVERFLOW_KEY, RepeatLimiter } from '../../../daemon/log/repeat-limiter';

describe('repeat limiter', () => {
  test.each<[string, Array<[string, number]>, number[], Array<[string, number]>]>([
    // name, entries (key, time), which pass (indices), summaries at t=1000 (key, suppressed)
    ['under the burst everything passes', [['a', 0], ['a', 1], ['b', 2]], [0, 1, 2], []],
    ['over the burst the rest is counted', [['a', 0], ['a', 1], ['a', 2], ['a', 3], ['b', 4]], [0, 1, 4], [['a', 2]]],
    ['a new interval passes again', [['a', 0], ['a', 1], ['a', 2], ['a', 1500], ['a', 1501]], [0, 1, 3, 4], [['a', 1]]],
  ])('%s', (_name, entries, passing, summaries) => {
    const l = new RepeatLimiter({ burst: 2, intervalMs: 1000 });
    const passed: number[] = [];
    let flushed: Array<[string, number]> = [];
    entries.forEach(([key, t], i) => {
      if (t >= 1000 && flushed.length === 0) flushed = l.flush(1000).map((s) => [s.key, s.suppressed]);
      if (l.admit(key, { key }, t)) passed.push(i);
    });
    if (entries.every(([, t]) => t < 1000)) flushed = l.flush(1000).map((s) => [s.key, s.suppressed]);
    expect(passed).toEqual(passing);
    expect(flushed).toEqual(summaries);
  });

  test('keys are forgotten after a quiet interval; too many keys share one overflow key', () => {
    const l = new RepeatLimiter({ burst: 1, intervalMs: 10, maxKeys: 3 });
    for (const k of ['a', 'b', 'c', 'd', 'e']) l.admit(k, {}, 0);
    expect(l.trackedKeys).toBe(4);
    expect(l.flush(10)).toEqual([{ key: OVERFLOW_KEY, sample: {}, suppressed: 2 }]);
    l.flush(20);
    expect(l.trackedKeys).toBe(0);
  });
});
