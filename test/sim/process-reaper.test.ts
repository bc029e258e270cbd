import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { isAlive, ProcessReaper, waitForExit } from '../../daemon/sim/process-reaper';

const execFileP = promisify(execFile);

/** A bare daemonized QEMU whose command line names `dir`, its pid written to `pidFile`. */
async function launchQemu(dir: string, pidFile: string): Promise<number> {
  await execFileP('qemu-system-x86_64', [
    '-machine', 'accel=tcg', '-m', '16', '-nographic', '-nodefaults', '-daemonize', '-S',
    '-pidfile', pidFile, '-chardev', `socket,id=qmp,path=${path.join(dir, 'q.qmp')},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control',
  ]);
  return Number(fs.readFileSync(pidFile, 'utf8'));
}

describe('ProcessReaper', () => {
  const started: number[] = [];
  afterAll(() => {
    for (const pid of started) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  });

  it('its watchdog kills the node\'s QEMUs and removes the node once the watched process dies', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-reaper-'));
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-reaper-other-'));
    const runDir = path.join(root, 'run');
    fs.mkdirSync(runDir);
    try {
      const ours = await launchQemu(root, path.join(runDir, '1.pid'));
      // A pid file pointing at a process of someone else (think: pid reuse) must not get it killed.
      const foreign = await launchQemu(other, path.join(other, 'x.pid'));
      fs.copyFileSync(path.join(other, 'x.pid'), path.join(runDir, '2.pid'));
      started.push(ours, foreign);
      const parent = spawn('sleep', ['60'], { stdio: 'ignore' });
      const reaper = new ProcessReaper(root, runDir, parent.pid!);
      reaper.add(ours);
      parent.kill('SIGKILL');
      expect(await waitForExit(ours, 30_000)).toBe(true);
      expect(isAlive(foreign)).toBe(true);
      const deadline = Date.now() + 30_000;
      while (fs.existsSync(root) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(fs.existsSync(root)).toBe(false);
      reaper.dispose();
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it('killAll only kills recorded processes that still belong to the node', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-reaper-'));
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-reaper-other-'));
    try {
      const ours = await launchQemu(root, path.join(root, 'a.pid'));
      const foreign = await launchQemu(other, path.join(other, 'b.pid'));
      started.push(ours, foreign);
      const reaper = new ProcessReaper(root, root);
      reaper.add(ours);
      reaper.add(foreign);
      reaper.dispose();
      expect(await waitForExit(ours, 30_000)).toBe(true);
      expect(isAlive(foreign)).toBe(true);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});
