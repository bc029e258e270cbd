import { computePrune, isoWeek, type PruneOptions } from '../../../daemon/repository/prune';

const b = (iso: string): { id: string; time: Date } => ({ id: iso, time: new Date(iso) });

/** Keeps as "id:reason" for compact tables; removed backups are "id:remove". */
function marks(list: { id: string; time: Date }[], opts: PruneOptions): string[] {
  return computePrune(list, opts).map((m) => `${m.id.slice(0, 16)}:${m.keep ? m.reason : 'remove'}`);
}

describe('computePrune (PBS semantics, UTC periods)', () => {
  const daily = [
    b('2026-01-01T10:00:00Z'),
    b('2026-01-01T22:00:00Z'),
    b('2026-01-02T10:00:00Z'),
    b('2026-01-03T10:00:00Z'),
    b('2026-01-03T12:00:00Z'),
    b('2026-01-04T10:00:00Z'),
  ];

  it.each<[string, { id: string; time: Date }[], PruneOptions, string[]]>([
    ['no option keeps everything', daily.slice(0, 2), {}, ['2026-01-01T22:00:keep-all', '2026-01-01T10:00:keep-all']],
    ['zero counts are no option', daily.slice(0, 1), { keepLast: 0 }, ['2026-01-01T10:00:keep-all']],
    [
      'keep-last 2',
      daily,
      { keepLast: 2 },
      ['2026-01-04T10:00:keep-last', '2026-01-03T12:00:keep-last', '2026-01-03T10:00:remove', '2026-01-02T10:00:remove', '2026-01-01T22:00:remove', '2026-01-01T10:00:remove'],
    ],
    [
      'keep-daily 3 keeps the newest of each of the 3 newest days',
      daily,
      { keepDaily: 3 },
      ['2026-01-04T10:00:keep-daily', '2026-01-03T12:00:keep-daily', '2026-01-03T10:00:remove', '2026-01-02T10:00:keep-daily', '2026-01-01T22:00:remove', '2026-01-01T10:00:remove'],
    ],
    [
      'keep-last 1 + keep-daily 2: the day kept by keep-last counts, the next two days are kept',
      daily,
      { keepLast: 1, keepDaily: 2 },
      ['2026-01-04T10:00:keep-last', '2026-01-03T12:00:keep-daily', '2026-01-03T10:00:remove', '2026-01-02T10:00:keep-daily', '2026-01-01T22:00:remove', '2026-01-01T10:00:remove'],
    ],
    [
      'a period already covered by a kept backup is not filled again by a later option',
      daily,
      { keepDaily: 1, keepMonthly: 2 },
      ['2026-01-04T10:00:keep-daily', '2026-01-03T12:00:remove', '2026-01-03T10:00:remove', '2026-01-02T10:00:remove', '2026-01-01T22:00:remove', '2026-01-01T10:00:remove'],
    ],
    [
      'keep-hourly 2',
      [b('2026-03-01T10:05:00Z'), b('2026-03-01T10:45:00Z'), b('2026-03-01T11:15:00Z'), b('2026-03-01T12:00:00Z')],
      { keepHourly: 2 },
      ['2026-03-01T12:00:keep-hourly', '2026-03-01T11:15:keep-hourly', '2026-03-01T10:45:remove', '2026-03-01T10:05:remove'],
    ],
    [
      'keep-weekly uses ISO weeks (Sun 2026-01-04 and Mon 2026-01-05 are different weeks)',
      [b('2026-01-04T10:00:00Z'), b('2026-01-05T10:00:00Z'), b('2026-01-06T10:00:00Z'), b('2025-12-29T10:00:00Z')],
      { keepWeekly: 2 },
      ['2026-01-06T10:00:keep-weekly', '2026-01-05T10:00:remove', '2026-01-04T10:00:keep-weekly', '2025-12-29T10:00:remove'],
    ],
    [
      'keep-monthly and keep-yearly',
      [b('2024-06-01T00:00:00Z'), b('2025-02-01T00:00:00Z'), b('2025-03-10T00:00:00Z'), b('2025-03-20T00:00:00Z'), b('2026-01-01T00:00:00Z')],
      { keepMonthly: 2, keepYearly: 3 },
      ['2026-01-01T00:00:keep-monthly', '2025-03-20T00:00:keep-monthly', '2025-03-10T00:00:remove', '2025-02-01T00:00:remove', '2024-06-01T00:00:keep-yearly'],
    ],
    [
      'more periods asked than exist keeps one per period',
      daily.slice(0, 3),
      { keepDaily: 10 },
      ['2026-01-02T10:00:keep-daily', '2026-01-01T22:00:keep-daily', '2026-01-01T10:00:remove'],
    ],
    ['empty list', [], { keepLast: 3 }, []],
  ])('%s', (_name, list, opts, expected) => {
    expect(marks(list, opts)).toEqual(expected);
  });

  it('input order does not matter', () => {
    const shuffled = [daily[3], daily[0], daily[5], daily[1], daily[4], daily[2]];
    expect(computePrune(shuffled, { keepDaily: 2 })).toEqual(computePrune(daily, { keepDaily: 2 }));
  });

  it.each([
    ['2026-01-01T00:00:00Z', '2026/01'],
    ['2021-01-03T00:00:00Z', '2020/53'],
    ['2024-12-30T00:00:00Z', '2025/01'],
    ['2026-01-04T23:59:59Z', '2026/01'],
    ['2026-01-05T00:00:00Z', '2026/02'],
  ])('isoWeek(%s) = %s', (iso, week) => {
    expect(isoWeek(new Date(iso))).toBe(week);
  });
});
