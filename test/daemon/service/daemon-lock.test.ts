/**
 * The daemon's single-instance lock on real files, and the modes of the state directory and the
 * catalog whatever the umask: stateDir 0700, catalog.sqlite with its -wal and -shm 0600.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { acquireDaemonLock, daemonLockFile } from '../../../daemon/service/daemon-lock';
import { catalogFile } from '../../../daemon/service/services';
import { ensurePrivateDir } from '../../../daemon/service/state-dir';

let tmp: string;
let umask: number;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-lock-'));
  umask = process.umask();
});
afterEach(() => {
  process.umask(umask);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const modeOf = (f: string): number => fs.statSync(f).mode & 0o777;

describe('daemon lock', () => {
  test('a held lock refuses a second taker with the holder pid; release frees it', () => {
    const lock = acquireDaemonLock(tmp);
    expect(() => acquireDaemonLock(tmp)).toThrow(expect.objectContaining({ code: 'CBT_DAEMON_ALREADY_RUNNING', details: { lockFile: daemonLockFile(tmp), holderPid: process.pid } }));
    lock.release();
    expect(fs.existsSync(daemonLockFile(tmp))).toBe(false);
    acquireDaemonLock(tmp).release();
  });

  test('the lock of a dead (SIGKILLed) daemon is taken over', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    const pid = child.pid!;
    fs.writeFileSync(daemonLockFile(tmp), JSON.stringify({ pid, procStart: null, host: os.hostname(), what: 'daemon', startedAtMs: 1 }));
    expect(() => acquireDaemonLock(tmp)).toThrow(expect.objectContaining({ code: 'CBT_DAEMON_ALREADY_RUNNING' }));
    await new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGKILL');
    });
    const lock = acquireDaemonLock(tmp);
    expect(JSON.parse(fs.readFileSync(daemonLockFile(tmp), 'utf8'))).toMatchObject({ pid: process.pid });
    lock.release();
  });

  test('a lock file cut short by a crash is stale', () => {
    fs.writeFileSync(daemonLockFile(tmp), '{"pid": 12');
    acquireDaemonLock(tmp).release();
  });
});

describe('state modes under umask 000', () => {
  test('a new stateDir is 0700, the lock and catalog files 0600', () => {
    process.umask(0);
    const stateDir = path.join(tmp, 'a', 'state');
    ensurePrivateDir(stateDir);
    const lock = acquireDaemonLock(stateDir);
    const db = openCatalog(catalogFile(stateDir));
    try {
      db.prepare('INSERT INTO jobs (id, kind, started_at, status) VALUES (?, ?, ?, ?)').run('j1', 'backup', new Date().toISOString(), 'running');
      expect(modeOf(stateDir)).toBe(0o700);
      expect(modeOf(daemonLockFile(stateDir))).toBe(0o600);
      for (const f of ['catalog.sqlite', 'catalog.sqlite-wal', 'catalog.sqlite-shm']) expect([f, modeOf(path.join(stateDir, f))]).toEqual([f, 0o600]);
    } finally {
      db.close();
      lock.release();
    }
  });

  test('an existing open stateDir and catalog are made private again', () => {
    process.umask(0);
    const stateDir = path.join(tmp, 'state');
    fs.mkdirSync(stateDir, { mode: 0o777 });
    fs.writeFileSync(catalogFile(stateDir), '', { mode: 0o666 });
    expect(modeOf(stateDir)).toBe(0o777);
    ensurePrivateDir(stateDir);
    openCatalog(catalogFile(stateDir)).close();
    expect(modeOf(stateDir)).toBe(0o700);
    expect(modeOf(catalogFile(stateDir))).toBe(0o600);
  });
});
