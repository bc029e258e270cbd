/**
 * Proxmox calendar events (the schedule syntax of PVE backup jobs and PBS, itself a subset of
 * systemd.time): `[WEEKDAY] [[YEARS-]MONTHS-DAYS] [HOURS:MINUTES[:SECONDS]]`.
 *
 * - weekdays: `mon`, `mon..fri`, `sat,sun` (full names accepted too)
 * - every numeric field: `*`, `5`, `1,3`, `8..17`, `0/15` (from 0 every 15), `*\/4`, `8..17/2`, combined by `,`
 * - a time without `:` is minutes only, every hour (`*\/15` = every quarter hour, as in PVE)
 * - an omitted time means `00:00:00`; omitted weekday/date fields mean "any"
 * - keywords: minutely, hourly, daily, weekly, monthly, yearly/annually, quarterly, semiannually.
 *   pve-cbt also accepts a time after a day-level keyword (`daily 02:00`, `weekly 03:30`), which
 *   replaces the keyword's midnight.
 *
 * Everything is evaluated in local time, like PVE's own scheduler. `nextRun` is pure: it walks
 * forward year → month → day and then picks the first matching time of that day, skipping times
 * that do not exist because of a DST gap.
 */
import { didYouMean } from '../config/did-you-mean';
import { ScheduleInvalidError } from './schedule-errors';

/** Allowed values of one field, ascending; `null` means every value. */
export type FieldValues = readonly number[] | null;

export interface CalendarEvent {
  readonly source: string;
  /** 0 = Sunday … 6 = Saturday. */
  readonly weekdays: FieldValues;
  readonly years: FieldValues;
  readonly months: FieldValues;
  readonly days: FieldValues;
  readonly hours: FieldValues;
  readonly minutes: FieldValues;
  readonly seconds: FieldValues;
}

const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const WEEKDAY_NAMES = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
/** Years are enumerated, so repetitions like `2025/2` need an end. */
const MAX_YEAR = 2199;
const MIN_YEAR = 1970;

const KEYWORDS: Record<string, string> = {
  minutely: '*:*:00',
  hourly: '*:00:00',
  daily: '*-*-* 00:00:00',
  weekly: 'mon *-*-* 00:00:00',
  monthly: '*-*-01 00:00:00',
  yearly: '*-01-01 00:00:00',
  annually: '*-01-01 00:00:00',
  quarterly: '*-01,04,07,10-01 00:00:00',
  semiannually: '*-01,07-01 00:00:00',
  'semi-annually': '*-01,07-01 00:00:00',
};
/** Keywords that name a day, so a following time makes sense. */
const DAY_KEYWORDS = new Set(['daily', 'weekly', 'monthly', 'yearly', 'annually', 'quarterly', 'semiannually', 'semi-annually']);

const EXAMPLES = "examples: 'daily', 'mon..fri 22:30', 'sat 03:00', '*/4:00', '02:00', 'mon,wed,fri 01:15', '*/15'";

interface Token {
  text: string;
  pos: number;
}

interface Field {
  name: string;
  min: number;
  max: number;
}

const F_YEAR: Field = { name: 'year', min: MIN_YEAR, max: MAX_YEAR };
const F_MONTH: Field = { name: 'month', min: 1, max: 12 };
const F_DAY: Field = { name: 'day', min: 1, max: 31 };
const F_HOUR: Field = { name: 'hour', min: 0, max: 23 };
const F_MINUTE: Field = { name: 'minute', min: 0, max: 59 };
const F_SECOND: Field = { name: 'second', min: 0, max: 59 };

function fail(schedule: string, position: number, problem: string, hint: string = EXAMPLES): never {
  throw ScheduleInvalidError({ schedule, position, problem, hint });
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const re = /\S+/g;
  for (let m = re.exec(text); m; m = re.exec(text)) tokens.push({ text: m[0], pos: m.index });
  return tokens;
}

function weekdayIndex(name: string): number {
  const i = WEEKDAYS.indexOf(name);
  return i >= 0 ? i : WEEKDAY_NAMES.indexOf(name);
}

function parseWeekdays(schedule: string, tok: Token): number[] {
  const set = new Set<number>();
  let offset = 0;
  for (const part of tok.text.split(',')) {
    const pos = tok.pos + offset;
    offset += part.length + 1;
    const range = part.split('..');
    if (range.length > 2) fail(schedule, pos, `bad weekday range '${part}'`, "a range is written 'mon..fri'");
    const idx = range.map((n) => weekdayIndex(n));
    const bad = idx.findIndex((d) => d < 0);
    if (bad >= 0) {
      const guess = didYouMean(range[bad], [...WEEKDAYS, ...WEEKDAY_NAMES, ...Object.keys(KEYWORDS)]);
      const hint = range[bad].includes('-')
        ? "a weekday range is written 'mon..fri'"
        : `${guess ? `did you mean '${guess}'? ` : ''}weekdays: ${WEEKDAYS.join(', ')}; keywords: ${Object.keys(KEYWORDS).join(', ')}`;
      fail(schedule, pos, `unknown weekday '${range[bad]}'`, hint);
    }
    // Ranges run Monday-first as in PVE (`sat..sun` is valid, `sun..mon` is not).
    const [from, to] = idx.map((d) => (d === 0 ? 7 : d));
    const end = to ?? from;
    if (end < from) fail(schedule, pos, `weekday range '${part}' runs backwards`, "weeks run mon..sun, e.g. 'fri..sun'");
    for (let d = from; d <= end; d++) set.add(d % 7);
  }
  return [...set].sort((a, b) => a - b);
}

function parseNumber(schedule: string, text: string, pos: number, field: Field): number {
  if (!/^\d+$/.test(text)) fail(schedule, pos, `'${text}' is not a number (${field.name})`);
  const n = Number(text);
  if (n < field.min || n > field.max) {
    fail(schedule, pos, `${field.name} ${n} out of range`, `${field.name}s run ${field.min}..${field.max}`);
  }
  return n;
}

/** One field: `*`, `N`, `N..M`, `N/R`, `*\/R`, `N..M/R`, joined by commas. */
function parseField(schedule: string, text: string, pos: number, field: Field): FieldValues {
  if (text === '') fail(schedule, pos, `empty ${field.name}`);
  const set = new Set<number>();
  let offset = 0;
  for (const part of text.split(',')) {
    const at = pos + offset;
    offset += part.length + 1;
    if (part === '*') {
      if (text.includes(',')) fail(schedule, at, `'*' cannot be combined with other ${field.name}s`);
      return null;
    }
    const [rangeText, stepText, extra] = part.split('/');
    if (extra !== undefined) fail(schedule, at, `bad repetition '${part}'`, "a repetition is 'START/STEP', e.g. '0/15'");
    let from: number;
    let to: number;
    if (rangeText === '*') {
      if (stepText === undefined) fail(schedule, at, `'*' cannot be combined with other ${field.name}s`);
      [from, to] = [field.min, field.max];
    } else {
      const bounds = rangeText.split('..');
      if (bounds.length > 2) fail(schedule, at, `bad range '${rangeText}'`, "a range is 'FROM..TO', e.g. '8..17'");
      from = parseNumber(schedule, bounds[0], at, field);
      to = bounds.length === 2 ? parseNumber(schedule, bounds[1], at + bounds[0].length + 2, field) : from;
      if (to < from) fail(schedule, at, `range '${rangeText}' runs backwards`);
      if (bounds.length === 1 && stepText !== undefined) to = field.max;
    }
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) {
        fail(schedule, at, `bad repetition step '${stepText}'`, "the step is a positive number, e.g. '*/15'");
      }
      step = Number(stepText);
    }
    for (let v = from; v <= to; v += step) set.add(v);
  }
  return [...set].sort((a, b) => a - b);
}

function parseDate(schedule: string, tok: Token): Pick<CalendarEvent, 'years' | 'months' | 'days'> {
  const parts = tok.text.split('-');
  if (parts.length < 2 || parts.length > 3) {
    fail(schedule, tok.pos, `bad date '${tok.text}'`, "a date is '[YEAR-]MONTH-DAY', e.g. '*-*-01' or '2027-01-01'");
  }
  const fields = parts.length === 3 ? [F_YEAR, F_MONTH, F_DAY] : [F_MONTH, F_DAY];
  const values: FieldValues[] = [];
  let offset = 0;
  parts.forEach((p, i) => {
    values.push(parseField(schedule, p, tok.pos + offset, fields[i]));
    offset += p.length + 1;
  });
  return parts.length === 3
    ? { years: values[0], months: values[1], days: values[2] }
    : { years: null, months: values[0], days: values[1] };
}

function parseTime(schedule: string, tok: Token): Pick<CalendarEvent, 'hours' | 'minutes' | 'seconds'> {
  const parts = tok.text.split(':');
  if (parts.length > 3) fail(schedule, tok.pos, `bad time '${tok.text}'`, "a time is 'HOURS:MINUTES[:SECONDS]', e.g. '22:30'");
  if (parts.length === 1) return { hours: null, minutes: parseField(schedule, parts[0], tok.pos, F_MINUTE), seconds: [0] };
  const hours = parseField(schedule, parts[0], tok.pos, F_HOUR);
  const minutes = parseField(schedule, parts[1], tok.pos + parts[0].length + 1, F_MINUTE);
  const seconds = parts.length === 3 ? parseField(schedule, parts[2], tok.pos + parts[0].length + parts[1].length + 2, F_SECOND) : [0];
  return { hours, minutes, seconds };
}

const isWeekdayToken = (t: string): boolean => /^[a-z]/.test(t);
const isDateToken = (t: string): boolean => t.includes('-');
const isTimeToken = (t: string): boolean => /^[0-9*.,/:]+$/.test(t);

/** Parses a calendar event; throws CBT_SCHEDULE_INVALID with the offending position and a hint. */
export function parseCalendarEvent(schedule: string): CalendarEvent {
  const text = schedule.toLowerCase();
  let tokens = tokenize(text);
  if (tokens.length === 0) fail(schedule, 0, 'the schedule is empty');

  const keyword = KEYWORDS[tokens[0].text];
  if (keyword !== undefined) {
    const rest = tokens.slice(1);
    const kw = tokens[0].text;
    const extra = rest.find((t, idx) => idx > 0 || !DAY_KEYWORDS.has(kw) || !t.text.includes(':'));
    if (extra) fail(schedule, extra.pos, `unexpected '${extra.text}' after '${kw}'`, "only a time may follow a day keyword, e.g. 'daily 02:00'");
    const expanded = tokenize(keyword).map((t) => ({ text: t.text, pos: tokens[0].pos }));
    if (rest.length === 1) expanded[expanded.length - 1] = rest[0];
    tokens = expanded;
  }

  let i = 0;
  let weekdays: FieldValues = null;
  if (i < tokens.length && isWeekdayToken(tokens[i].text)) {
    const days = parseWeekdays(schedule, tokens[i++]);
    weekdays = days.length === 7 ? null : days;
  }
  let date: Pick<CalendarEvent, 'years' | 'months' | 'days'> = { years: null, months: null, days: null };
  if (i < tokens.length && isDateToken(tokens[i].text)) date = parseDate(schedule, tokens[i++]);
  let time: Pick<CalendarEvent, 'hours' | 'minutes' | 'seconds'> = { hours: [0], minutes: [0], seconds: [0] };
  if (i < tokens.length && isTimeToken(tokens[i].text)) time = parseTime(schedule, tokens[i++]);
  if (i < tokens.length) {
    const t = tokens[i];
    const hint = isWeekdayToken(t.text) ? `weekdays: ${WEEKDAYS.join(', ')}; keywords: ${Object.keys(KEYWORDS).join(', ')}` : EXAMPLES;
    fail(schedule, t.pos, `unexpected '${t.text}'`, hint);
  }
  return Object.freeze({ source: schedule, weekdays, ...date, ...time });
}

const allows = (values: FieldValues, v: number): boolean => values === null || values.includes(v);

function* range(values: FieldValues, min: number, max: number): Generator<number> {
  if (values === null) for (let v = min; v <= max; v++) yield v;
  else for (const v of values) if (v >= min && v <= max) yield v;
}

/** First matching time of one day at or after `from` (h, m, s), as a Date; skips DST gaps. */
function firstTimeOfDay(ev: CalendarEvent, y: number, mo: number, d: number, from: [number, number, number]): Date | null {
  const [fh, fm, fs] = from;
  for (const h of range(ev.hours, fh, 23)) {
    for (const m of range(ev.minutes, h === fh ? fm : 0, 59)) {
      for (const s of range(ev.seconds, h === fh && m === fm ? fs : 0, 59)) {
        const date = new Date(y, mo - 1, d, h, m, s);
        if (date.getHours() === h && date.getMinutes() === m && date.getDate() === d) return date;
      }
    }
  }
  return null;
}

/** The first time strictly after `after` at which the event fires, or null if it never fires again. */
export function nextRun(event: CalendarEvent, after: Date): Date | null {
  const start = new Date(Math.floor(after.getTime() / 1000) * 1000 + 1000);
  let y = start.getFullYear();
  let mo = start.getMonth() + 1;
  let d = start.getDate();
  let from: [number, number, number] = [start.getHours(), start.getMinutes(), start.getSeconds()];
  const midnight: [number, number, number] = [0, 0, 0];
  while (y <= MAX_YEAR) {
    if (!allows(event.years, y)) {
      [y, mo, d, from] = [y + 1, 1, 1, midnight];
      continue;
    }
    if (!allows(event.months, mo)) {
      [mo, d, from] = [mo + 1, 1, midnight];
      if (mo > 12) [y, mo] = [y + 1, 1];
      continue;
    }
    const daysInMonth = new Date(y, mo, 0).getDate();
    if (d > daysInMonth) {
      [mo, d, from] = [mo + 1, 1, midnight];
      if (mo > 12) [y, mo] = [y + 1, 1];
      continue;
    }
    if (allows(event.days, d) && allows(event.weekdays, new Date(y, mo - 1, d).getDay())) {
      const hit = firstTimeOfDay(event, y, mo, d, from);
      if (hit) return hit;
    }
    [d, from] = [d + 1, midnight];
  }
  return null;
}
