/**
 * End-to-end harness: a simulated Proxmox node (real QEMU), pve-cbt's real compiled hooks installed
 * and attached with daemon/hook-admin (so PVE-style hook runs are separate Node processes talking to
 * the daemon over its real socket), and the real daemon (`runDaemon`) in this process on a config
 * file in a temporary directory. The daemon can be stopped and started again on the same state.
 *
 * Backups go through the socket like `pve-cbt backup`; `backupAndCheck` restores every disk of every
 * backup and compares it byte for byte with the simulator's reference taken when the backup was asked
 * for. Hooks run from dist/ (the build), never from the TypeScript sources.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'winston';
import { validateConfig } from '../../daemon/config/load-config';
import type { CbtConfig } from '../../daemon/config/config-schema';
import { attachHook, installHooks, type HookAdminOptions } from '../../daemon/hook-admin/hook-admin';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { closeLogger, createLogger } from '../../daemon/log/create-logger';
import type { Clock } from '../../daemon/schedule/scheduler';
import { runDaemon } from '../../daemon/service/run-daemon';
import { REQUESTS, type DiskResult, type BackupOutcome, type BackupResult, type TaskInfo } from '../../daemon/service/requests';
import { openStores, type Services } from '../../daemon/service/services';
import type { VmStatus } from '../../daemon/service/vm-status';
import { createPveNode, type PveNode, type SimVm } from '../../daemon/sim/pve-node';
import { simNodeConfig } from '../../daemon/demo/sim-node-config';

export const ROOT = path.resolve(__dirname, '..', '..');
export const DIST = path.join(ROOT, 'dist');
export const CLI = path.join(DIST, 'daemon', 'cli', 'main.js');
export const MiB = 1024 * 1024;

export interface Stack {
  work: string;
  node: PveNode;
  configFile: string;
  config: CbtConfig;
  hookOpts: HookAdminOptions;
  /** The running daemon's services; throws while it is stopped. */
  readonly services: Services;
  daemonRunning(): boolean;
  startDaemon(opts?: { clock?: Clock }): Promise<Services>;
  stopDaemon(): Promise<void>;
  request<R>(type: string, payload: unknown, timeoutMs?: number): Promise<R>;
  status(vmid: number): Promise<VmStatus>;
  tasks(): Promise<TaskInfo[]>;
  /** Backs the VMs up through the daemon; every disk restored and compared byte-exact. */
  backupAndCheck(vms: SimVm[]): Promise<Map<number, BackupResult>>;
  /** Catalog, ledger and repository: the in-process daemon's, or opened for `fn` when the daemon is elsewhere. */
  withStores<T>(fn: (s: Omit<Services, 'queue'>) => Promise<T>): Promise<T>;
  /** Restores one disk of a backup and returns the index of the first byte that differs from `reference`, -1 if none. */
  compareRestore(backupId: string, disk: string, reference: string): Promise<number>;
  cleanup(): Promise<void>;
}

export interface StackOptions {
  /** Extra config keys (jobs, concurrency ...). */
  config?: Record<string, unknown>;
  /** Install the hooks (default true); attaching is per VM with `attach`. */
  installHooks?: boolean;
}

/** Fails clearly when the build the hooks run from is missing. */
export function requireDist(): void {
  if (!fs.existsSync(path.join(DIST, 'hooks', 'guest-hook.js')) || !fs.existsSync(CLI)) {
    throw new Error(`no build in ${DIST}: run 'npm run build' (npm test does) before the e2e tests`);
  }
}

export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

export async function createStack(opts: StackOptions = {}): Promise<Stack> {
  requireDist();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  const node = await createPveNode({ baseDir: work });
  const configFile = path.join(work, 'config.json');
  const raw = { ...simNodeConfig(node, work), ...opts.config };
  fs.writeFileSync(configFile, `${JSON.stringify(raw, null, 2)}\n`);
  const config = validateConfig(raw, configFile);
  const hookOpts: HookAdminOptions = { root: node.root, nodePath: process.execPath, distDir: DIST, stateDir: config.stateDir, configPath: configFile };
  if (opts.installHooks !== false) installHooks(hookOpts);

  let services: Services | undefined;
  let abort: AbortController | undefined;
  let done: Promise<void> | undefined;
  let logger: Logger | undefined;

  const stack: Stack = {
    work,
    node,
    configFile,
    config,
    hookOpts,
    get services(): Services {
      if (!services) throw new Error('the daemon is not running');
      return services;
    },
    daemonRunning: () => services !== undefined,
    async startDaemon(o = {}) {
      if (services) throw new Error('the daemon already runs');
      logger = createLogger({ logDir: config.logDir, console: false, defaultMeta: { component: 'daemon' } });
      abort = new AbortController();
      const ready = new Promise<Services>((resolve, reject) => {
        done = runDaemon({ config, logger: logger!, signal: abort!.signal, clock: o.clock, onReady: resolve });
        done.catch(reject);
      });
      services = await ready;
      return services;
    },
    async stopDaemon() {
      if (!abort) return;
      abort.abort(new Error('test stops the daemon'));
      try {
        await done;
      } finally {
        services = undefined;
        abort = undefined;
        await closeLogger(logger!);
      }
    },
    request: <R>(type: string, payload: unknown, timeoutMs = 120_000) => ipcRequest<R>(config.socketPath, type, payload, { timeoutMs }),
    async status(vmid) {
      const all = await stack.request<VmStatus[]>(REQUESTS.status, { vmid });
      return all[0];
    },
    tasks: () => stack.request<TaskInfo[]>(REQUESTS.tasks, {}),
    async withStores(fn) {
      if (services) return fn(services);
      // The daemon may run as a child process: open catalog and repository beside it, as the CLI does.
      const storeLogger = createLogger({ console: false });
      const stores = await openStores(config, storeLogger);
      try {
        return await fn(stores);
      } finally {
        stores.db.close();
        await closeLogger(storeLogger);
      }
    },
    async compareRestore(backupId, disk, reference) {
      const target = path.join(work, `restore-${process.hrtime.bigint()}.raw`);
      try {
        await stack.withStores((st) => st.repo.restoreDisk(backupId, disk, { path: target, format: 'raw' }));
        return firstDifference(fs.readFileSync(target), fs.readFileSync(reference));
      } finally {
        fs.rmSync(target, { force: true });
      }
    },
    async backupAndCheck(vms) {
      const refs = new Map<string, string>();
      for (const vm of vms) for (const d of vm.disks) refs.set(`${vm.vmid}/${d.key}`, await vm.snapshotReference(d.key));
      try {
        const outcomes = await stack.request<BackupOutcome[]>(REQUESTS.backup, { vmids: vms.map((v) => v.vmid) }, 300_000);
        const out = new Map<number, BackupResult>();
        for (const o of outcomes) {
          if (!o.result) throw new Error(`backup of VM ${o.vmid} failed: ${o.error?.code}: ${o.error?.message}`);
          for (const d of o.result.disks) {
            const diff = await stack.compareRestore(o.result.id, d.disk, refs.get(`${o.vmid}/${d.disk}`)!);
            if (diff !== -1) throw new Error(`restore of VM ${o.vmid} ${d.disk} from ${o.result.id} (${d.mode}) differs at byte ${diff}`);
          }
          out.set(o.vmid, o.result);
        }
        return out;
      } finally {
        for (const f of refs.values()) fs.rmSync(f, { force: true });
      }
    },
    async cleanup() {
      await stack.stopDaemon().catch(() => undefined);
      await node.cleanup();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
  return stack;
}

/** Adds a VM with one disk and some data in it, hookscript attached unless `attach` is false. */
export async function addVm(stack: Stack, vmid: number, format: 'qcow2' | 'raw', opts: { sizeMiB?: number; attach?: boolean } = {}): Promise<SimVm> {
  const vm = await stack.node.addVm({ vmid, name: `vm-${vmid}`, disks: [{ key: 'scsi0', format, sizeMiB: opts.sizeMiB ?? 8 }] });
  if (opts.attach !== false) attachHook(stack.hookOpts, vmid);
  for (let i = 0; i < 3; i++) await vm.writeData('scsi0', i * 2 * MiB, Buffer.alloc(256 * 1024, vmid % 251 + i));
  return vm;
}

export function diskOf(r: BackupResult | undefined, disk = 'scsi0'): DiskResult {
  const d = r?.disks.find((x) => x.disk === disk);
  if (!d) throw new Error(`no result for ${disk} in ${JSON.stringify(r)}`);
  return d;
}

export interface ChildDaemon {
  proc: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `pve-cbt daemon --config` from dist/ as its own process (as systemd runs it); resolves once it answers. */
export async function startChildDaemon(stack: Pick<Stack, 'configFile' | 'request'>, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<ChildDaemon> {
  const proc = spawn(process.execPath, [CLI, 'daemon', '--config', stack.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const end = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`child daemon exited ${proc.exitCode}: ${out}`);
    const ok = await stack.request(REQUESTS.tasks, {}, 2000).then(
      () => true,
      () => false,
    );
    if (ok) break;
    if (Date.now() > end) {
      proc.kill('SIGKILL');
      throw new Error(`child daemon did not answer: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return { proc, output: () => out, exited };
}

/** SIGKILLs a child daemon a test left running (afterAll); nothing if it already ended. */
export function killChildDaemon(child: ChildDaemon | undefined): void {
  if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
}

/** The newest `startup recovery done` entry of the daemon logs in logDir. */
export function lastStartupRecovery<T>(logDir: string): T {
  const entries = fs
    .readdirSync(logDir)
    .filter((f) => f.endsWith('.log'))
    .flatMap((f) => fs.readFileSync(path.join(logDir, f), 'utf8').split('\n'))
    .filter((l) => l.includes('"startup recovery done"'))
    .map((l) => JSON.parse(l) as T & { timestamp: string })
    .sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  if (entries.length === 0) throw new Error('no startup recovery logged');
  return entries[entries.length - 1];
}

/** `pve-cbt ARGS` from dist/ as its own process, as an admin runs it; resolves with its exit code and output. */
export function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
