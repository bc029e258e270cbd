import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { nextRun, parseCalendarEvent } from '../../../daemon/schedule/calendar-event';
import { ScheduleInvalidError } from '../../../daemon/schedule/schedule-errors';
import type { CbtError } from '../../../shared/errors/cbt-error';

// Wednesday 25 Nov 2026, 14:00:00 local time.
const WED = new Date(2026, 10, 25, 14, 0, 0);
const at = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0) => new Date(y, mo - 1, d, h, mi, s);

describe('nextRun', () => {
  test.each<[string, Date, Date]>([
    ['daily', WED, at(2026, 11, 26)],
    ['hourly', WED, at(2026, 11, 25, 15)],
    ['minutely', WED, at(2026, 11, 25, 14, 1)],
    ['weekly', WED, at(2026, 11, 30)],
    ['monthly', WED, at(2026, 12, 1)],
    ['yearly', WED, at(2027, 1, 1)],
    ['quarterly', WED, at(2027, 1, 1)],
    ['semiannually', at(2027, 2, 1), at(2027, 7, 1)],
    ['daily 02:00', WED, at(2026, 11, 26, 2)],
    ['weekly 03:30', WED, at(2026, 11, 30, 3, 30)],
    ['mon..fri 22:30', WED, at(2026, 11, 25, 22, 30)],
    ['mon..fri 22:30', at(2026, 11, 27, 23), at(2026, 11, 30, 22, 30)],
    ['sat 03:00', WED, at(2026, 11, 28, 3)],
    ['sat', WED, at(2026, 11, 28)],
    ['fri..sun 01:00', at(2026, 11, 29, 2), at(2026, 12, 4, 1)],
    ['*/4:00', WED, at(2026, 11, 25, 16)],
    ['*/4:00', at(2026, 11, 25, 20, 0, 1), at(2026, 11, 26, 0)],
    ['02:00', WED, at(2026, 11, 26, 2)],
    ['mon,wed,fri 01:15', WED, at(2026, 11, 27, 1, 15)],
    ['*/15', WED, at(2026, 11, 25, 14, 15)],
    ['*/15', at(2026, 11, 25, 14, 50), at(2026, 11, 25, 15, 0)],
    ['0/20', at(2026, 11, 25, 14, 41), at(2026, 11, 25, 15, 0)],
    ['12,14,16:00', WED, at(2026, 11, 25, 16)],
    ['8..17/3:30', WED, at(2026, 11, 25, 14, 30)],
    ['14:00:30', WED, at(2026, 11, 25, 14, 0, 30)],
    ['*:*:*', WED, at(2026, 11, 25, 14, 0, 1)],
    ['*-*-01 06:00', WED, at(2026, 12, 1, 6)],
    ['12-24 18:00', WED, at(2026, 12, 24, 18)],
    ['2027-01-01', WED, at(2027, 1, 1)],
    ['*-02-29 12:00', WED, at(2028, 2, 29, 12)],
    ['sun *-*-01..07 04:00', WED, at(2026, 12, 6, 4)],
    ['MON..FRI 22:30', WED, at(2026, 11, 25, 22, 30)],
    ['monday 05:00', WED, at(2026, 11, 30, 5)],
  ])('%s after %s', (schedule, after, expected) => {
    expect(nextRun(parseCalendarEvent(schedule), after)).toEqual(expected);
  });

  test('is strictly after the given time, even exactly on a run', () => {
    expect(nextRun(parseCalendarEvent('14:00'), WED)).toEqual(at(2026, 11, 26, 14));
    expect(nextRun(parseCalendarEvent('14:00'), new Date(WED.getTime() - 1))).toEqual(WED);
  });

  test.each(['*-02-30', '2020-01-01', '2026-11-25 13:00'])('%s never fires again: null', (schedule) => {
    expect(nextRun(parseCalendarEvent(schedule), WED)).toBeNull();
  });

  // jest cannot switch the zone of its own process, so these run the same source in a child node
  // with TZ set, transpiled on the fly by the TypeScript compiler the tests already use.
  describe('in a zone with DST (Europe/Berlin)', () => {
    let dir: string;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
      const root = path.join(__dirname, '..', '..', '..');
      for (const rel of ['daemon/schedule/calendar-event.ts', 'daemon/schedule/schedule-errors.ts', 'daemon/config/did-you-mean.ts', 'shared/errors/cbt-error.ts']) {
        const js = ts.transpileModule(fs.readFileSync(path.join(root, rel), 'utf8'), {
          compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
        }).outputText;
        fs.mkdirSync(path.join(dir, path.dirname(rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel.replace(/\.ts$/, '.js')), js);
      }
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    const nextRunIn = (tz: string, schedule: string, afterIso: string): string =>
      execFileSync(
        process.execPath,
        ['-e', `const c = require('./daemon/schedule/calendar-event'); process.stdout.write(c.nextRun(c.parseCalendarEvent(${JSON.stringify(schedule)}), new Date(${JSON.stringify(afterIso)})).toISOString())`],
        { cwd: dir, env: { ...process.env, TZ: tz }, encoding: 'utf8' },
      );

    test('a time inside the spring-forward gap is skipped that day', () => {
      // 2027-03-28 02:00..03:00 does not exist in Berlin.
      expect(nextRunIn('Europe/Berlin', '02:30', '2027-03-27T12:00:00+01:00')).toBe('2027-03-29T00:30:00.000Z');
    });

    test('a time repeated in the fall-back hour runs once, at its first occurrence', () => {
      expect(nextRunIn('Europe/Berlin', '02:30', '2026-10-25T00:00:00+02:00')).toBe('2026-10-25T00:30:00.000Z');
      expect(nextRunIn('Europe/Berlin', '02:30', '2026-10-25T00:30:00Z')).toBe('2026-10-26T01:30:00.000Z');
    });

    test('runs at local time, not UTC', () => {
      expect(nextRunIn('Europe/Berlin', 'daily 02:00', '2026-07-01T12:00:00Z')).toBe('2026-07-02T00:00:00.000Z');
    });
  });
});

describe('parseCalendarEvent refusals', () => {
  test.each<[string, number, RegExp, RegExp]>([
    ['', 0, /empty/, /examples/],
    ['   ', 0, /empty/, /examples/],
    ['dayly', 0, /unknown weekday 'dayly'/, /did you mean 'daily'/],
    ['mon-fri 22:30', 0, /unknown weekday 'mon-fri'/, /mon\.\.fri/],
    ['sun..mon', 0, /runs backwards/, /fri\.\.sun/],
    ['mon..fri..sat', 0, /bad weekday range/, /mon\.\.fri/],
    ['25:00', 0, /hour 25 out of range/, /0\.\.23/],
    ['mon 12:60', 7, /minute 60 out of range/, /0\.\.59/],
    ['12:00:61', 6, /second 61 out of range/, /0\.\.59/],
    ['*/0', 0, /bad repetition step '0'/, /positive/],
    ['1/2/3', 0, /bad repetition/, /START\/STEP/],
    ['17..8:00', 0, /runs backwards/, /examples/],
    ['1..2..3', 0, /bad range/, /FROM\.\.TO/],
    ['*,5', 0, /cannot be combined/, /examples/],
    ['1:2:3:4', 0, /bad time/, /HOURS:MINUTES/],
    ['*-13-01', 2, /month 13 out of range/, /1\.\.12/],
    ['1-2-3-4', 0, /bad date/, /YEAR-/],
    ['daily 02:00 x', 12, /unexpected 'x' after 'daily'/, /daily 02:00/],
    ['hourly 02:00', 7, /unexpected '02:00' after 'hourly'/, /day keyword/],
    ['daily mon', 6, /unexpected 'mon' after 'daily'/, /day keyword/],
    ['02:00 mon', 6, /unexpected 'mon'/, /weekdays/],
    ['mon 02:00 03:00', 10, /unexpected '03:00'/, /examples/],
    ['1a', 0, /unexpected '1a'/, /examples/],
    ['1..:00', 3, /'' is not a number \(hour\)/, /examples/],
  ])('%j at %i', (schedule, position, problem, hint) => {
    let caught: unknown;
    try {
      parseCalendarEvent(schedule);
    } catch (err) {
      caught = err;
    }
    expect(ScheduleInvalidError.is(caught)).toBe(true);
    const d = (caught as CbtError).details as { schedule: string; position: number; problem: string; hint: string };
    expect(d.schedule).toBe(schedule);
    expect(d.problem).toMatch(problem);
    expect(d.hint).toMatch(hint);
    expect(d.position).toBe(position);
  });
});
