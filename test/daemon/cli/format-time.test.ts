/** The one time format of the CLI: ISO 8601 UTC, whole seconds unless asked; never a locale's. */
import { formatTime, formatTimeOr } from '../../../daemon/cli/format-time';

describe('formatTime', () => {
  const t = Date.UTC(2026, 11, 5, 3, 0, 0, 123);
  test.each<[Date | number | string, string, string]>([
    [new Date(t), '2026-12-05T03:00:00Z', '2026-12-05T03:00:00.123Z'],
    [t, '2026-12-05T03:00:00Z', '2026-12-05T03:00:00.123Z'],
    ['2026-12-05T03:00:00.123Z', '2026-12-05T03:00:00Z', '2026-12-05T03:00:00.123Z'],
    ['2026-12-05T04:00:00+01:00', '2026-12-05T03:00:00Z', '2026-12-05T03:00:00.000Z'], // any offset shown in UTC
    ['2026-11-25T02:00:03Z', '2026-11-25T02:00:03Z', '2026-11-25T02:00:03.000Z'],
  ])('%j -> %s (ms: %s)', (input, plain, ms) => {
    expect(formatTime(input)).toBe(plain);
    expect(formatTime(input, { ms: true })).toBe(ms);
  });

  test('a value that is not a time is shown as given, never "Invalid Date"; absent values as -', () => {
    expect(formatTime('garbage')).toBe('garbage');
    expect(formatTimeOr(null)).toBe('-');
    expect(formatTimeOr(undefined, 'never')).toBe('never');
    expect(formatTimeOr(t)).toBe('2026-12-05T03:00:00Z');
  });

  test('independent of the process time zone and locale', () => {
    const { TZ } = process.env;
    process.env.TZ = 'America/New_York';
    try {
      expect(formatTime(new Date(t))).toBe('2026-12-05T03:00:00Z');
    } finally {
      process.env.TZ = TZ;
    }
  });
});
