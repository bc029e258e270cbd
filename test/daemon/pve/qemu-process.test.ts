import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { processStartTime, readQemuProcess } from '../../../daemon/pve/qemu-process';

describe('readQemuProcess', () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('live process from the pid file, with a stable start time', () => {
    fs.writeFileSync(path.join(dir, '100.pid'), `${process.pid}\n`);
    const p = readQemuProcess(dir, 100);
    expect(p).toEqual({ pid: process.pid, startTime: expect.any(Number) });
    expect(processStartTime(process.pid)).toBe(p?.startTime);
  });

  test('no pid file, garbage, or a process that is gone → undefined', async () => {
    expect(readQemuProcess(dir, 101)).toBeUndefined();
    fs.writeFileSync(path.join(dir, '102.pid'), 'garbage');
    expect(readQemuProcess(dir, 102)).toBeUndefined();
    const child = spawn('true');
    await new Promise((r) => child.once('exit', r));
    fs.writeFileSync(path.join(dir, '103.pid'), String(child.pid));
    expect(readQemuProcess(dir, 103)).toBeUndefined();
  });
});
