/**
 * Wall time of the simulator's `qm start` of a small VM (pre-start and post-start hooks, the real
 * daemonized qemu-system-x86_64 with its disks, the QMP greeting and `cont`): the acceptance target is
 * under a second. A bare daemonized `qemu-system-x86_64` (TCG, no devices) launched in the same run is
 * the baseline: most of a start is QEMU's own. Runs are interleaved (baseline, start, ...) so that
 * machine load affects both alike. (It was a wall-clock test in test/sim/lifecycle-hooks.test.ts,
 * which a loaded 2-core CI machine could fail: 1.8 s at load 12.)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createPveNode } from '../daemon/sim/pve-node';
import { waitForExit } from '../daemon/sim/process-reaper';
import type { BenchResult } from './support/bench-result';

const execFileP = promisify(execFile);
const RUNS = 7;
const TARGET_MS = 1000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function bareQemu(dir: string): Promise<number> {
  const pidFile = path.join(dir, 'bare.pid');
  const t0 = process.hrtime.bigint();
  await execFileP('qemu-system-x86_64', ['-machine', 'accel=tcg', '-m', '16', '-nographic', '-nodefaults', '-daemonize', '-pidfile', pidFile]);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  process.kill(pid, 'SIGKILL');
  await waitForExit(pid, 30_000);
  return ms;
}

export async function run(): Promise<BenchResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-'));
  const node = await createPveNode({ baseDir: dir });
  const base: number[] = [];
  const starts: number[] = [];
  try {
    const vm = await node.addVm({ vmid: 400, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
    for (let i = 0; i < RUNS; i++) {
      base.push(await bareQemu(dir));
      const t0 = process.hrtime.bigint();
      await vm.start();
      starts.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await vm.stop();
    }
  } finally {
    await node.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const b = median(base);
  const s = median(starts);
  return [
    { name: 'simulator qm start, median', value: Number(s.toFixed(1)), unit: 'ms', baseline: `bare daemonized qemu-system-x86_64: median ${b.toFixed(1)} ms`, ratio: Number((s / b).toFixed(2)), target: `< ${TARGET_MS} ms`, pass: s < TARGET_MS },
    { name: 'bare daemonized qemu-system-x86_64, median', value: Number(b.toFixed(1)), unit: 'ms' },
  ];
}
