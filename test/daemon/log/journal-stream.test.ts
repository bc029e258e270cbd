/**
 * journald priorities (issue 17 point 8): with JOURNAL_STREAM naming the console's file descriptor,
 * every console line starts with its syslog priority as sd-daemon(3) describes; with JOURNAL_STREAM
 * naming another file, unset or malformed, lines stay plain. The console stream is a real file
 * descriptor here, compared by device and inode as systemd.exec(5) says.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { isJournalStream, journalPrefix, parseJournalStream } from '../../../daemon/log/journal-stream';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function devIno(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

async function logEveryLevel(journalStream: (file: string) => string | undefined): Promise<string> {
  const file = path.join(tmp, `console-${Math.random()}.txt`);
  const fd = fs.openSync(file, 'w');
  const stream = fs.createWriteStream(file, { fd });
  const value = journalStream(file);
  const logger = createLogger({ level: 'debug', console: { stream }, env: value === undefined ? {} : { JOURNAL_STREAM: value }, repeatLimit: false });
  logger.error('disk failed', { vmid: 101 });
  logger.warn('slow');
  logger.info('backup finished');
  logger.verbose('detail');
  logger.debug('qemu-nbd started');
  await closeLogger(logger);
  await new Promise<void>((resolve) => stream.end(resolve));
  return fs.readFileSync(file, 'utf8');
}

test('stdout is the journal stream: each line carries its level as <N>', async () => {
  const text = await logEveryLevel(devIno);
  expect(text.split('\n').filter(Boolean)).toEqual([
    '<3>error vm=101 disk failed',
    '<4>warn  slow',
    '<6>info  backup finished',
    '<7>verbose detail',
    '<7>debug qemu-nbd started',
  ]);
});

test.each<[string, (file: string) => string | undefined]>([
  ['JOURNAL_STREAM unset (a terminal, a plain pipe)', () => undefined],
  ['JOURNAL_STREAM names another file (inherited by a child writing elsewhere)', () => devIno(os.tmpdir())],
  ['JOURNAL_STREAM malformed', () => 'journal'],
])('%s: no prefixes', async (_name, value) => {
  const text = await logEveryLevel(value);
  expect(text.split('\n').filter(Boolean)).toHaveLength(5);
  expect(text).not.toMatch(/^</m);
  expect(text).toMatch(/^error vm=101 disk failed$/m);
});

test('a failing log file is reported on a journal stderr at priority 3', async () => {
  const errFile = path.join(tmp, 'stderr.txt');
  const fd = fs.openSync(errFile, 'w');
  const stderr = fs.createWriteStream(errFile, { fd });
  const logDir = path.join(tmp, 'logs');
  // The day's log file is a directory (local and UTC date, whichever the rotator uses): opening it fails.
  const day = (d: Date, utc: boolean): string =>
    utc ? d.toISOString().slice(0, 10) : `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  for (const utc of [true, false]) fs.mkdirSync(path.join(logDir, `pve-cbt-${day(new Date(), utc)}.log`), { recursive: true });
  const logger = createLogger({ logDir, console: false, fallbackStream: stderr, env: { JOURNAL_STREAM: devIno(errFile) }, fileRetryMs: 60_000 });
  logger.info('entry');
  for (let i = 0; i < 1000 && !fs.readFileSync(errFile, 'utf8').includes('cannot write'); i++) await new Promise((r) => setTimeout(r, 10));
  await closeLogger(logger);
  await new Promise<void>((resolve) => stderr.end(resolve));
  expect(fs.readFileSync(errFile, 'utf8')).toMatch(/^<3>pve-cbt: cannot write log files in /m);
});

test.each<[string, string]>([
  ['error', '<3>'],
  ['warn', '<4>'],
  ['info', '<6>'],
  ['http', '<6>'],
  ['verbose', '<7>'],
  ['debug', '<7>'],
  ['silly', '<7>'],
  ['unknown', '<6>'],
])('journalPrefix(%s) = %s', (level, prefix) => {
  expect(journalPrefix(level)).toBe(prefix);
});

test.each<[string | undefined, { dev: bigint; ino: bigint } | undefined]>([
  ['8:1234', { dev: 8n, ino: 1234n }],
  ['0:18446744073709551615', { dev: 0n, ino: 18446744073709551615n }],
  [undefined, undefined],
  ['', undefined],
  ['8:', undefined],
  ['8:12:3', undefined],
])('parseJournalStream(%j)', (value, parsed) => {
  expect(parseJournalStream(value)).toEqual(parsed);
});

test('a stream without a file descriptor is never the journal', () => {
  expect(isJournalStream(new (require('node:stream').PassThrough)(), { JOURNAL_STREAM: '1:1' })).toBe(false);
});
