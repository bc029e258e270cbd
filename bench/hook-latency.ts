/**
 * Wall time of one installed pve-cbt hook run as Proxmox runs it (a fresh `node` process through
 * the `#!` wrapper in the snippets folder, Node start-up included): with the daemon up (event
 * acknowledged) and with the daemon down (event fsync'd to the spool). `node -e 0` in the same run is
 * the baseline: most of a hook's time is Node's own start-up, which pve-cbt cannot shorten.
 * Runs are interleaved (baseline, up, down, ...) so that machine load affects all three alike.
 * Uses the compiled build (`npm run bench` builds first): dist/hooks next to dist/bench.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migration as ledgerMigration } from '../daemon/catalog/migrations/002-ledger';
import { openCatalog } from '../daemon/catalog/open-catalog';
import { installHooks } from '../daemon/hook-admin/hook-admin';
import { startIpcServer } from '../daemon/ipc/ipc-server';
import { lifecycleEventHandler } from '../daemon/ipc/lifecycle-event-handler';
import { Ledger } from '../daemon/ledger/ledger';
import type { BenchResult } from './support/bench-result';

const RUNS = 30;
const TARGET_MS = 150;

function timeProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

export async function run(): Promise<BenchResult[]> {
  const distDir = path.join(__dirname, '..');
  if (!fs.existsSync(path.join(distDir, 'hooks', 'guest-hook.js'))) throw new Error(`no compiled hooks under ${distDir}; run npm run build`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-'));
  const stateDir = path.join(dir, 'state');
  const upSocket = path.join(dir, 'run', 'pve-cbt.sock');
  const upConfig = path.join(dir, 'up.json');
  const downConfig = path.join(dir, 'down.json');
  fs.writeFileSync(upConfig, JSON.stringify({ socketPath: upSocket, stateDir }));
  fs.writeFileSync(downConfig, JSON.stringify({ socketPath: path.join(dir, 'run', 'absent.sock'), stateDir }));
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  const { guestHook } = installHooks({ root, nodePath: process.execPath, distDir, stateDir });
  const db = openCatalog(path.join(dir, 'catalog.sqlite'), [ledgerMigration]);
  const server = await startIpcServer({
    socketPath: upSocket,
    handlers: { 'lifecycle-event': lifecycleEventHandler({ ledger: new Ledger(db), stateDir }) },
  });
  const base: number[] = [];
  const up: number[] = [];
  const down: number[] = [];
  try {
    const env = (config: string): NodeJS.ProcessEnv => ({ PATH: '/usr/bin:/bin', PVE_CBT_CONFIG: config });
    for (let i = 0; i < RUNS; i++) {
      base.push(await timeProcess(process.execPath, ['-e', '0'], env(upConfig)));
      up.push(await timeProcess(guestHook, ['100', 'post-start'], env(upConfig)));
      down.push(await timeProcess(guestHook, ['100', 'post-start'], env(downConfig)));
    }
  } finally {
    await server.close();
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const b = quantile(base, 0.5);
  const baseline = `node -e 0: median ${b.toFixed(1)} ms, p95 ${quantile(base, 0.95).toFixed(1)} ms`;
  const row = (name: string, xs: number[], q: number): BenchResult => {
    const v = quantile(xs, q);
    return q === 0.5
      ? { name, value: Number(v.toFixed(1)), unit: 'ms', baseline, ratio: Number((v / b).toFixed(2)), target: `< ${TARGET_MS} ms`, pass: v < TARGET_MS }
      : { name, value: Number(v.toFixed(1)), unit: 'ms', baseline, ratio: Number((v / quantile(base, 0.95)).toFixed(2)) };
  };
  return [
    row('guest hook, daemon up, median', up, 0.5),
    row('guest hook, daemon up, p95', up, 0.95),
    row('guest hook, daemon down (spool), median', down, 0.5),
    row('guest hook, daemon down (spool), p95', down, 0.95),
    { name: 'node -e 0 start-up, median', value: Number(b.toFixed(1)), unit: 'ms' },
  ];
}
