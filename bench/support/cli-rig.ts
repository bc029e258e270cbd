/**
 * pve-cbt driven as the peers bench drives it (../shared/peers/pve-cbt-peer.sh), for benches that
 * time the whole CLI → daemon → QEMU path: a simulated Proxmox node (daemon/sim, real QEMU, TCG),
 * pve-cbt's compiled hooks attached, the real daemon as its own process, and `pve-cbt backup VMID
 * --json` spawned and timed as an admin runs it.
 *
 * `distDir` picks the build that runs the daemon and the CLI, so a script can put an older build
 * beside the current one on the same node and state (bench/incremental-path.ts does, to alternate
 * old and new in one run). Tracing (shared/trace/trace-spans.ts) goes to `traceFile` when given.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { attachHook, installHooks } from '../../daemon/hook-admin/hook-admin';
import { simNodeConfig } from '../../daemon/demo/sim-node-config';
import { createPveNode, type PveNode, type SimVm } from '../../daemon/sim/pve-node';
import { ipcRequest } from '../../shared/ipc/ipc-client';

export const MiB = 1024 * 1024;
/** The build this bench runs from (dist/). */
export const DIST = path.resolve(__dirname, '..', '..');

export interface CliRun {
  ms: number;
  code: number | null;
  json: CliBackupJson | undefined;
  stdout: string;
  stderr: string;
}

export interface CliDisk {
  disk: string;
  mode: string;
  bytesRead: number;
  bytesStored: number;
  durationMs: number;
}

export interface CliBackupJson {
  ok: boolean;
  backups?: { id?: string; disks?: CliDisk[] }[];
  disks?: CliDisk[];
}

export interface CliRig {
  work: string;
  node: PveNode;
  configFile: string;
  repository: string;
  vm: SimVm;
  daemonPid(): number | undefined;
  startDaemon(distDir?: string): Promise<void>;
  stopDaemon(): Promise<void>;
  /** `pve-cbt ARGS` of `distDir` (default: this build), timed from spawn to exit. */
  cli(args: string[], opts?: { distDir?: string; traceFile?: string }): Promise<CliRun>;
  /** The daemon's VmHWM (peak resident set), bytes. */
  daemonPeakRss(): number;
  cleanup(): Promise<void>;
}

export interface RigOptions {
  vmid?: number;
  sizeMiB: number;
  /** Fills the image before QEMU starts: alternating random 1 MiB extents up to `dataMiB` MiB of data. */
  dataMiB: number;
  /** Trace file the daemon writes its spans to. */
  traceFile?: string;
}

function cliPath(distDir: string): string {
  return path.join(distDir, 'daemon', 'cli', 'main.js');
}

/** A raw file with `dataMiB` MiB of random data, every even MiB, converted into the disk's qcow2. */
function fillImage(disk: string, sizeMiB: number, dataMiB: number, work: string): void {
  const raw = path.join(work, 'fill.raw');
  const fd = fs.openSync(raw, 'w');
  try {
    fs.ftruncateSync(fd, sizeMiB * MiB);
    const buf = Buffer.allocUnsafe(MiB);
    for (let i = 0; i < dataMiB; i++) {
      crypto.randomFillSync(buf);
      fs.writeSync(fd, buf, 0, MiB, 2 * i * MiB);
    }
  } finally {
    fs.closeSync(fd);
  }
  const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { stdio: 'inherit' });
  fs.rmSync(raw);
  if (r.status !== 0) throw new Error(`qemu-img convert failed with ${r.status}`);
}

function vmHwm(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export async function createCliRig(opts: RigOptions): Promise<CliRig> {
  const vmid = opts.vmid ?? 9100;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-cli-'));
  const node = await createPveNode({ baseDir: work });
  let daemon: ChildProcess | undefined;
  let daemonOut = '';
  const configFile = path.join(work, 'config.json');
  const raw = simNodeConfig(node, work);
  fs.writeFileSync(configFile, `${JSON.stringify(raw, null, 2)}\n`);
  const socketPath = raw.socketPath as string;
  const stateDir = raw.stateDir as string;
  const hookOpts = { root: node.root, nodePath: process.execPath, distDir: DIST, stateDir, configPath: configFile };
  try {
    installHooks(hookOpts);
    const vm = await node.addVm({ vmid, name: 'pvecbt-bench', disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: opts.sizeMiB }] });
    attachHook(hookOpts, vmid);
    if (opts.dataMiB > 0) fillImage(vm.disks[0].path, opts.sizeMiB, opts.dataMiB, work);
    const rig: CliRig = {
      work,
      node,
      configFile,
      repository: raw.repository as string,
      vm,
      daemonPid: () => daemon?.pid,
      async startDaemon(distDir = DIST) {
        if (daemon) throw new Error('the daemon already runs');
        daemonOut = '';
        const env = { ...process.env, PVE_CBT_CONFIG: configFile, ...(opts.traceFile ? { PVE_CBT_TRACE: opts.traceFile } : {}) };
        const p = spawn(process.execPath, [cliPath(distDir), 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'], env });
        p.stdout!.on('data', (d: Buffer) => (daemonOut += d.toString()));
        p.stderr!.on('data', (d: Buffer) => (daemonOut += d.toString()));
        daemon = p;
        const end = Date.now() + 30_000;
        for (;;) {
          if (p.exitCode !== null) throw new Error(`daemon exited ${p.exitCode}: ${daemonOut}`);
          const ok = await ipcRequest(socketPath, 'tasks', {}, { timeoutMs: 2000 }).then(
            () => true,
            () => false,
          );
          if (ok) return;
          if (Date.now() > end) throw new Error(`daemon did not answer: ${daemonOut}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async stopDaemon() {
        const p = daemon;
        if (!p) return;
        daemon = undefined;
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise<void>((r) => p.once('exit', () => r()));
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      },
      cli(args, o = {}) {
        return new Promise((resolve) => {
          const env = { ...process.env, PVE_CBT_CONFIG: configFile, ...(o.traceFile ? { PVE_CBT_TRACE: o.traceFile } : {}) };
          const t0 = process.hrtime.bigint();
          const p = spawn(process.execPath, [cliPath(o.distDir ?? DIST), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
          let stdout = '';
          let stderr = '';
          p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
          p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
          p.on('exit', (code) => {
            const ms = Number(process.hrtime.bigint() - t0) / 1e6;
            let json: CliBackupJson | undefined;
            try {
              json = JSON.parse(stdout) as CliBackupJson;
            } catch {
              json = undefined;
            }
            resolve({ ms, code, json, stdout, stderr });
          });
        });
      },
      daemonPeakRss() {
        if (!daemon?.pid) throw new Error('the daemon is not running');
        return vmHwm(daemon.pid);
      },
      async cleanup() {
        await rig.stopDaemon().catch(() => undefined);
        await node.cleanup();
        fs.rmSync(work, { recursive: true, force: true });
      },
    };
    return rig;
  } catch (err) {
    if (daemon) daemon.kill('SIGKILL');
    await node.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
    throw err;
  }
}

/** The disks of a `backup --json` answer, wherever the CLI puts them (`.disks`, or inside `.backups`). */
export function disksOf(j: CliBackupJson | undefined): CliDisk[] {
  if (!j) return [];
  if (Array.isArray(j.disks)) return j.disks;
  return (j.backups ?? []).flatMap((b) => b.disks ?? []);
}

/**
 * The peers bench's change set: `count` random 64 KiB blocks (fixed seed), each written with its own
 * random data through the guest device (HMP qemu-io on scsi0), as mutate.py does. Returns the number
 * of distinct blocks.
 */
export async function changeBlocks(vm: SimVm, count: number, seed: number, work: string): Promise<number> {
  const BLOCK = 64 * 1024;
  const size = vm.disks[0].sizeBytes;
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const dir = path.join(work, 'blocks');
  fs.mkdirSync(dir, { recursive: true });
  const seen = new Set<number>();
  await vm.qmp(async (q) => {
    for (let i = 0; i < count; i++) {
      const offset = Math.floor(rnd() * (size / BLOCK)) * BLOCK;
      seen.add(offset);
      const f = path.join(dir, `b${i}.bin`);
      fs.writeFileSync(f, crypto.randomBytes(BLOCK));
      await q.execute('human-monitor-command', { 'command-line': `qemu-io -d scsi0 "write -s ${f} ${offset} ${BLOCK}"` });
    }
  });
  fs.rmSync(dir, { recursive: true, force: true });
  return seen.size;
}
