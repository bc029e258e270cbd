/**
 * The CLI's deferred logger (daemon/log/deferred-logger.ts): nothing is made until the first use;
 * children taken before that are deferred too and keep their metadata; once made, every use goes to
 * the one real logger. And through the real CLI: `list` logs nothing, loads no winston and leaves no
 * log file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deferredLogger } from '../../../daemon/log/deferred-logger';
import { memoryLogger } from './memory-logger';
import { Repository } from '../../../daemon/repository/repository';

describe('deferredLogger', () => {
  test('makes nothing until used; an early child is deferred and keeps its metadata', () => {
    const lines: Array<Record<string, unknown>> = [];
    let made = 0;
    const d = deferredLogger(() => {
      made++;
      return memoryLogger(lines);
    });
    const child = d.logger.child({ vmid: 101 });
    const grandchild = child.child({ disk: 'scsi0' });
    expect(made).toBe(0);
    expect(d.real()).toBeNull();
    grandchild.warn('late', { n: 1 });
    expect(made).toBe(1);
    d.logger.info('root');
    child.error('mid');
    expect(made).toBe(1);
    expect(d.real()).not.toBeNull();
    expect(lines).toEqual([
      expect.objectContaining({ level: 'warn', message: 'late', n: 1, vmid: 101, disk: 'scsi0' }),
      expect.objectContaining({ level: 'info', message: 'root' }),
      expect.objectContaining({ level: 'error', message: 'mid', vmid: 101 }),
    ]);
    expect(lines[1]).not.toHaveProperty('vmid');
  });

  test('any other use makes the real logger once: events, properties, level checks', () => {
    const lines: Array<Record<string, unknown>> = [];
    let made = 0;
    const d = deferredLogger(() => {
      made++;
      return memoryLogger(lines);
    });
    const onError = jest.fn();
    d.logger.on('error', onError);
    expect(made).toBe(1);
    expect(d.logger.transports).toHaveLength(1);
    expect(d.logger.isLevelEnabled('debug')).toBe(true);
    d.logger.level = 'warn';
    expect(d.real()?.level).toBe('warn');
    d.logger.info('dropped by level');
    d.logger.child({ a: 1 }).warn('kept');
    expect(lines).toEqual([expect.objectContaining({ message: 'kept', a: 1 })]);
    expect(made).toBe(1);
  });

  test('an error of the factory reaches the first use, not the creation', () => {
    const d = deferredLogger(() => {
      throw new Error('no log dir');
    });
    const child = d.logger.child({ x: 1 });
    expect(() => child.info('x')).toThrow('no log dir');
  });
});

describe('the CLI loads winston only when it logs', () => {
  test('list writes no log file and loads no winston', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-deferred-log-'));
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
      const repo = path.join(dir, 'repo');
      await Repository.open(repo, { create: true });
      fs.mkdirSync(path.join(dir, 'log'), { mode: 0o700 });
      fs.mkdirSync(path.join(dir, 's'), { mode: 0o700 });
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, JSON.stringify({ repository: repo, stateDir: path.join(dir, 'state'), logDir: path.join(dir, 'log'), socketPath: path.join(dir, 's', 'sock'), qemuServerConfigDir: dir, qemuServerRunDir: dir }));
      const probe = path.join(dir, 'loaded.js');
      fs.writeFileSync(probe, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(path.join(dir, 'modules.json'))}, JSON.stringify(Object.keys(require.cache))));`);
      const main = path.resolve(__dirname, '../../../dist/daemon/cli/main.js');
      execFileSync(process.execPath, ['-r', probe, main, 'list', '--json'], { env: { ...process.env, PVE_CBT_CONFIG: config } });
      const modules = JSON.parse(fs.readFileSync(path.join(dir, 'modules.json'), 'utf8')) as string[];
      expect(modules.filter((m) => /node_modules\/winston/.test(m))).toEqual([]);
      expect(fs.readdirSync(path.join(dir, 'log')).filter((f) => f.endsWith('.log'))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
