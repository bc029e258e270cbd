import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readQemuPid } from '../../hooks/qemu-pid';

describe('QEMU pid from the pid file', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('only a live process started with this very -pidfile counts', async () => {
    const pidFile = path.join(dir, '100.pid');
    // Stands in for QEMU: a process whose command line carries `-pidfile <file>` as qemu-server's does.
    // `--`: without it node takes -pidfile for one of its own options and exits at once.
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '--', '-pidfile', pidFile], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await new Promise((r) => child.once('spawn', r));
      fs.writeFileSync(pidFile, `${child.pid}\n`);
      expect(await readQemuPid(dir, 100)).toBe(child.pid);
      // Same pid file contents, but looked up for another VM's file name: not its QEMU.
      fs.copyFileSync(pidFile, path.join(dir, '101.pid'));
      expect(await readQemuPid(dir, 101)).toBeUndefined();
      // A reused pid (here: this test process) is not a QEMU with that pid file.
      fs.writeFileSync(pidFile, String(process.pid));
      expect(await readQemuPid(dir, 100)).toBeUndefined();
    } finally {
      child.kill('SIGKILL');
    }
    await exited;
    fs.writeFileSync(pidFile, String(child.pid));
    expect(await readQemuPid(dir, 100)).toBeUndefined();
    fs.writeFileSync(pidFile, 'garbage');
    expect(await readQemuPid(dir, 100)).toBeUndefined();
    expect(await readQemuPid(dir, 102)).toBeUndefined();
  });
});
