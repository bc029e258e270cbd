import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { listLogFiles, readLog } from '../../../daemon/log/read-log';
import { defineError } from '../../../shared/errors/cbt-error';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(isTTY = false): { stream: PassThrough & { isTTY?: boolean }; text: () => string } {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean };
  stream.isTTY = isTTY;
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

function jsonLines(dir: string): Record<string, unknown>[] {
  return listLogFiles(dir).flatMap((f) =>
    fs
      .readFileSync(f, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  );
}

test('writes JSON lines with timestamp and child context to the dated file', async () => {
  const out = capture();
  const logger = createLogger({ logDir: tmp, level: 'info', console: { stream: out.stream } });
  const job = logger.child({ jobId: 'nightly' });
  job.child({ vmid: 101, disk: 'scsi0' }).info('backup done', { mode: 'incremental', bytesRead: 65536 });
  logger.debug('not written at info');
  logger.warn('plain');
  await closeLogger(logger);

  const files = fs.readdirSync(tmp);
  expect(files.filter((f) => /^pve-cbt-\d{4}-\d{2}-\d{2}\.log$/.test(f))).toHaveLength(1);
  const lines = jsonLines(tmp);
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatchObject({ level: 'info', message: 'backup done', jobId: 'nightly', vmid: 101, disk: 'scsi0', mode: 'incremental', bytesRead: 65536 });
  expect(new Date(lines[0].timestamp as string).getTime()).toBeGreaterThan(Date.now() - 60_000);
  expect(lines[1]).toMatchObject({ level: 'warn', message: 'plain' });
  expect(lines[1]).not.toHaveProperty('vmid');
});

test('console output is one readable line per entry, no colours and no timestamp off a TTY', async () => {
  const out = capture(false);
  const logger = createLogger({ console: { stream: out.stream } });
  logger.child({ vmid: 101, disk: 'scsi0', jobId: 'nightly' }).info('backup done\nsecond line', { reason: 'bitmap valid', bytes: 42 });
  await closeLogger(logger);
  expect(out.text()).toBe('info  vm=101 disk=scsi0 job=nightly backup done second line reason="bitmap valid" bytes=42\n');
});

test('console output is coloured on a TTY', async () => {
  const out = capture(true);
  const logger = createLogger({ console: { stream: out.stream } });
  logger.error('boom');
  await closeLogger(logger);
  expect(out.text()).toContain('\x1b[31merror\x1b[0m boom');
});

test('errors in metadata keep code, details and message', async () => {
  const E = defineError<{ vmid: number }>('CBT_TEST_THING', (d) => `thing failed for ${d.vmid}`);
  const logger = createLogger({ logDir: tmp, console: false });
  logger.error('backup failed', { err: E({ vmid: 7 }) });
  await closeLogger(logger);
  const [line] = jsonLines(tmp);
  expect(line.err).toMatchObject({ code: 'CBT_TEST_THING', message: 'thing failed for 7', details: { vmid: 7 } });
});

test('rotates by size into .log.1, .log.2 and read-log reads them in write order', async () => {
  const logger = createLogger({ logDir: tmp, console: false, maxSize: '2k' });
  for (let i = 0; i < 100; i++) logger.info(`entry ${i}`, { i, vmid: 100 + (i % 2) });
  await closeLogger(logger);
  const files = listLogFiles(tmp).map((f) => path.basename(f));
  expect(files.length).toBeGreaterThanOrEqual(3);
  expect(files[1]).toMatch(/\.log\.1$/);
  expect(readLog(tmp).map((e) => e.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(readLog(tmp, { vmid: 101 }).map((e) => e.i)).toEqual(Array.from({ length: 50 }, (_, i) => 2 * i + 1));
});

test('a logger with no outputs is valid and silent', async () => {
  const logger = createLogger({ console: false });
  logger.info('nowhere');
  await closeLogger(logger);
  expect(fs.readdirSync(tmp)).toEqual([]);
});

test('log directory 0700 and log and audit files 0600 even under umask 000', async () => {
  const old = process.umask(0);
  try {
    const dir = path.join(tmp, 'var', 'log', 'pve-cbt');
    const logger = createLogger({ logDir: dir, console: false });
    logger.info('hello');
    await closeLogger(logger);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    const files = fs.readdirSync(dir);
    expect(files).toEqual(expect.arrayContaining(['.pve-cbt-audit.json']));
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) expect([f, fs.statSync(path.join(dir, f)).mode & 0o777]).toEqual([f, 0o600]);
  } finally {
    process.umask(old);
  }
});

test('an existing log directory and file with loose modes are tightened', async () => {
  const dir = path.join(tmp, 'log');
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  const first = createLogger({ logDir: dir, console: false });
  first.info('one');
  await closeLogger(first);
  const [file] = listLogFiles(dir);
  fs.chmodSync(file, 0o644);
  fs.chmodSync(dir, 0o755);
  const second = createLogger({ logDir: dir, console: false });
  second.info('two');
  await closeLogger(second);
  expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(readLog(dir).map((e) => e.message)).toEqual(['one', 'two']);
});

test('repeated warnings: the first 10 per message and code, then one summary at close', async () => {
  const out = capture();
  const logger = createLogger({ console: { stream: out.stream } });
  for (let i = 0; i < 1000; i++) logger.warn('ipc message rejected', { code: 'CBT_IPC_MALFORMED', peer: i % 7 });
  for (let i = 0; i < 3; i++) logger.warn('ipc message rejected', { code: 'CBT_IPC_UNKNOWN_TYPE' });
  for (let i = 0; i < 20; i++) logger.info('not limited', { i });
  await closeLogger(logger);
  const lines = out.text().split('\n').filter(Boolean);
  expect(lines.filter((l) => l.includes('code=CBT_IPC_MALFORMED') && !l.includes('suppressed'))).toHaveLength(10);
  expect(lines.filter((l) => l.includes('code=CBT_IPC_UNKNOWN_TYPE'))).toHaveLength(3);
  expect(lines.filter((l) => l.includes('not limited'))).toHaveLength(20);
  expect(lines.filter((l) => l.includes('suppressed 990 similar: ipc message rejected') && l.includes('code=CBT_IPC_MALFORMED'))).toHaveLength(1);
  expect(lines).toHaveLength(34);
});
