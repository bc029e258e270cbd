import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LogEntry } from '../../../daemon/log/log-entry';
import { formatLogLine } from '../../../daemon/log/log-entry';
import { filterLines, followLog, listLogFiles, matchesFilter, parseLogLine, parseSince, readLog } from '../../../daemon/log/read-log';
import { LogSinceInvalidError } from '../../../daemon/log/log-errors';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const NOW = new Date('2026-11-25T12:00:00.000Z');

describe('parseSince', () => {
  test.each<[string, string]>([
    ['30m', '2026-11-25T11:30:00.000Z'],
    ['2h', '2026-11-25T10:00:00.000Z'],
    ['1d', '2026-11-24T12:00:00.000Z'],
    ['1w', '2026-11-18T12:00:00.000Z'],
    ['90s', '2026-11-25T11:58:30.000Z'],
    ['2026-11-25T02:00:00Z', '2026-11-25T02:00:00.000Z'],
  ])('%s', (text, iso) => {
    expect(parseSince(text, NOW).toISOString()).toBe(iso);
  });

  test.each(['', 'yesterday', '2x', '-2h', '2026-13-45'])('%j is refused', (text) => {
    expect(() => parseSince(text, NOW)).toThrow(expect.objectContaining({ code: LogSinceInvalidError.code }));
  });
});

const E = (over: Partial<LogEntry>): LogEntry => ({ level: 'info', message: 'm', timestamp: '2026-11-25T11:00:00.000Z', ...over });

describe('matchesFilter', () => {
  test.each<[string, LogEntry, Parameters<typeof matchesFilter>[1], boolean]>([
    ['no filter', E({}), {}, true],
    ['vm match', E({ vmid: 101 }), { vmid: 101 }, true],
    ['vm mismatch', E({ vmid: 102 }), { vmid: 101 }, false],
    ['vm filter, entry without vm', E({}), { vmid: 101 }, false],
    ['job match', E({ jobId: 'n' }), { jobId: 'n' }, true],
    ['job mismatch', E({ jobId: 'x' }), { jobId: 'n' }, false],
    ['level warn shows error', E({ level: 'error' }), { level: 'warn' }, true],
    ['level warn shows warn', E({ level: 'warn' }), { level: 'warn' }, true],
    ['level warn hides info', E({ level: 'info' }), { level: 'warn' }, false],
    ['level debug shows verbose', E({ level: 'verbose' }), { level: 'debug' }, true],
    ['since: newer', E({}), { since: new Date('2026-11-25T10:00:00Z') }, true],
    ['since: exactly', E({}), { since: new Date('2026-11-25T11:00:00Z') }, true],
    ['since: older', E({}), { since: new Date('2026-11-25T11:30:00Z') }, false],
    ['since: no timestamp', E({ timestamp: undefined }), { since: new Date(0) }, false],
    ['all at once', E({ vmid: 101, jobId: 'n', level: 'error' }), { vmid: 101, jobId: 'n', level: 'warn', since: new Date(0) }, true],
  ])('%s', (_name, entry, filter, expected) => {
    expect(matchesFilter(entry, filter)).toBe(expected);
  });
});

test('parseLogLine skips what is not a log entry', () => {
  expect(parseLogLine('{"level":"info","message":"x"}')).toEqual({ level: 'info', message: 'x' });
  for (const bad of ['', 'plain text', '{"level":"info"', '[1]', '{"message":"no level"}', 'null']) expect(parseLogLine(bad)).toBeNull();
});

test('formatLogLine puts context first and quotes values with spaces', () => {
  expect(formatLogLine(E({ vmid: 101, jobId: 'n', reason: 'bitmap lost', n: 3 }), { timestamp: true })).toBe(
    '2026-11-25T11:00:00.000Z info  vm=101 job=n m reason="bitmap lost" n=3',
  );
});

function write(name: string, entries: (LogEntry | string)[]): void {
  fs.appendFileSync(path.join(tmp, name), entries.map((e) => (typeof e === 'string' ? e : JSON.stringify(e))).join('\n') + '\n');
}

test('listLogFiles orders by date then rotation number and ignores other files', () => {
  for (const n of ['pve-cbt-2026-11-25.log.10', 'pve-cbt-2026-11-25.log.2', 'pve-cbt-2026-11-24.log', 'pve-cbt-2026-11-25.log', '.pve-cbt-audit.json', 'other.log']) {
    fs.writeFileSync(path.join(tmp, n), '');
  }
  expect(listLogFiles(tmp).map((f) => path.basename(f))).toEqual([
    'pve-cbt-2026-11-24.log',
    'pve-cbt-2026-11-25.log',
    'pve-cbt-2026-11-25.log.2',
    'pve-cbt-2026-11-25.log.10',
  ]);
  expect(listLogFiles(path.join(tmp, 'absent'))).toEqual([]);
});

test('readLog reads across files, skips garbage lines, filters', () => {
  write('pve-cbt-2026-11-24.log', [E({ message: 'a', vmid: 101, timestamp: '2026-11-24T10:00:00.000Z' }), 'garbage']);
  write('pve-cbt-2026-11-25.log', [E({ message: 'b', vmid: 102 }), E({ message: 'c', vmid: 101, level: 'warn' })]);
  expect(readLog(tmp).map((e) => e.message)).toEqual(['a', 'b', 'c']);
  expect(readLog(tmp, { vmid: 101 }).map((e) => e.message)).toEqual(['a', 'c']);
  expect(readLog(tmp, { vmid: 101, since: parseSince('2h', NOW) }).map((e) => e.message)).toEqual(['c']);
  expect(filterLines(['x', JSON.stringify(E({ level: 'error' }))], { level: 'error' })).toHaveLength(1);
});

test('followLog emits existing entries, then appended ones, then a new rotated file, and stops on abort', async () => {
  write('pve-cbt-2026-11-25.log', [E({ message: 'old' })]);
  const seen: string[] = [];
  const ac = new AbortController();
  const waitFor = async (n: number) => {
    for (let i = 0; i < 1000 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };
  const done = followLog({ logDir: tmp, filter: { level: 'info' }, onEntry: (e) => seen.push(String(e.message)), signal: ac.signal, pollMs: 20 });
  await waitFor(1);
  // A line arriving in two writes is emitted once, complete.
  const half = JSON.stringify(E({ message: 'split' }));
  fs.appendFileSync(path.join(tmp, 'pve-cbt-2026-11-25.log'), half.slice(0, 10));
  await new Promise((r) => setTimeout(r, 60));
  fs.appendFileSync(path.join(tmp, 'pve-cbt-2026-11-25.log'), `${half.slice(10)}\n${JSON.stringify(E({ message: 'dbg', level: 'debug' }))}\n`);
  await waitFor(2);
  write('pve-cbt-2026-11-25.log.1', [E({ message: 'rotated' })]);
  await waitFor(3);
  ac.abort();
  await done;
  expect(seen).toEqual(['old', 'split', 'rotated']);
});

test('formatLogLine shows a serialized error as CODE: message', () => {
  const line = formatLogLine(E({ level: 'error', err: { message: 'no bitmap', code: 'CBT_X_Y', stack: 'Error: ...' } }));
  expect(line).toBe('error m err="CBT_X_Y: no bitmap"');
});
