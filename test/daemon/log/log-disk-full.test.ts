/**
 * The log files' file system fills up (a real tmpfs, real ENOSPC): the daemon's logger reports it
 * once on its fallback stream, keeps writing the console lines, never throws, and writes the files
 * again once there is room.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { readLog } from '../../../daemon/log/read-log';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('log file system full', () => {
  let dir: string;
  let mountDir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    mountDir = path.join(dir, 'small');
    fs.mkdirSync(mountDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'cbt-test-log-full', mountDir]);
  });
  afterAll(() => {
    execFileSync('umount', ['-l', mountDir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('ENOSPC is reported on the fallback, logging goes on, and files resume when space is back', async () => {
    const logDir = path.join(mountDir, 'log');
    const filler = path.join(mountDir, 'filler');
    const console = capture();
    const fallback = capture();
    const logger = createLogger({ logDir, console: { stream: console.stream }, fallbackStream: fallback.stream, fileRetryMs: 50 });
    logger.info('before full');
    await until('the first line on disk', () => readLog(logDir).some((e) => e.message === 'before full'));
    // Fill the file system to the last byte.
    const fd = fs.openSync(filler, 'w');
    try {
      const block = Buffer.alloc(4096, 1);
      for (;;) fs.writeSync(fd, block);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
    for (let i = 0; i < 200; i++) logger.info(`while full ${i}`, { pad: 'x'.repeat(200) });
    await until('the failure report', () => fallback.text().includes('ENOSPC'));
    expect(fallback.text()).toMatch(/^pve-cbt: cannot write log files in .*log, logging to the console only and retrying in 50 ms: ENOSPC/);
    // The process is still here and logging; the console got every entry.
    logger.warn('still alive');
    await until('console lines', () => console.text().includes('still alive'));
    expect(console.text().split('\n').filter((l) => l.includes('while full'))).toHaveLength(200);

    fs.rmSync(filler);
    let n = 0;
    await until('a line on disk again', () => {
      logger.info(`after ${n++}`);
      return readLog(logDir).some((e) => String(e.message).startsWith('after'));
    });
    await closeLogger(logger);
    expect(readLog(logDir)[0]).toMatchObject({ message: 'before full' });
  });
});
