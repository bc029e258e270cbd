/**
 * One simulated VM: a real daemonized qemu-system-x86_64 per start, driven through QMP, with the
 * Proxmox hook phases of every lifecycle operation (see the table in shared/docs/pve-qemu-facts.md):
 *
 *   start               pre-start (non-zero aborts, QEMU not started), QEMU, post-start (CPUs running)
 *   stop / shutdown     pre-stop, QEMU quits, post-stop (as qmeventd's `qm cleanup` after the exit)
 *   reboot              pre-stop, post-stop, pre-start, post-start: a NEW QEMU process
 *   reset / guestReboot system_reset in the same process, no hooks
 *   crash               kill -9, then post-stop only
 *   QEMU exits on its own (a `quit` from another QMP client, a kill from outside): post-stop, as
 *                       qmeventd's `qm cleanup` runs it; noticed by polling the pid every 50 ms
 *   vzdump              vzdump hook phases with vzdump's emptied environment (order in `vzdump`)
 *
 * Proxmox's per-VM flock (lock-VMID.conf) is held as qemu-server holds it: `qm start` around
 * pre-start..post-start, `qm stop` around pre-stop and the quit, and qmeventd's `qm cleanup` around
 * post-stop (so post-stop comes after the stopping command released it). qm-rollback.ts drives the
 * same steps for `qm rollback`.
 *
 * Only pre-start failures are fatal; other hook failures are recorded in hookLog and ignored.
 * Every write goes to the disk AND its raw reference twin, so tests compare restores against
 * bytes the tool never produced itself.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { hmp } from '../qmp/hmp';
import type { QmpClient, QmpConnectOptions } from '../qmp/qmp-client';
import { QmpDisconnectedError } from '../qmp/qmp-errors';
import { withQmp } from '../qmp/qmp-session';
import { withPveLock } from '../pve/pve-lock';
import { runHook, type HookRun } from './hook-runner';
import type { NodeContext, SimDisk, SimVm } from './pve-node';
import { readConfHookscript, setConfHookscript } from './pve-conf';
import { setMigrationCaps } from './migration-caps';
import { isAlive, waitForExit } from './process-reaper';
import { qemuArgs, type DiskLayout } from './qemu-command';
import { SimHookAbortError, SimIoError, SimQemuStartError, SimStateError } from './sim-errors';
import { runVzdump, type VzdumpMode } from './sim-vzdump';
import { checkRange, hasDevice, qdevPath, qemuIo, writeReference } from './guest-disk-io';

const execFileP = promisify(execFile);

const QUIT_TIMEOUT_MS = 10_000;
/** Patient: the code under test may hold the one QMP socket for a moment, as qemu-server would see it. */
const SIM_QMP: QmpConnectOptions = { connectAttempts: 10, retryBaseDelayMs: 50, maxRetryDelayMs: 1_000 };

export interface SimVmInit {
  vmid: number;
  name: string;
  agent: boolean;
  layout: DiskLayout;
  confPath: string;
  disks: SimDisk[];
}


export class SimVmImpl implements SimVm {
  readonly vmid: number;
  readonly confPath: string;
  readonly qmpPath: string;
  readonly pidPath: string;
  readonly qgaPath: string;
  readonly disks: SimDisk[];
  readonly name: string;
  readonly agent: boolean;
  readonly layout: DiskLayout;
  private readonly ctx: NodeContext;
  private currentPid: number | undefined;
  private snapshotCounter = 0;
  private exitWatch: NodeJS.Timeout | undefined;
  /** Set while a simulator operation ends QEMU itself and runs post-stop on its own. */
  private expectingExit = false;
  private exitHandled: Promise<void> = Promise.resolve();

  constructor(ctx: NodeContext, init: SimVmInit) {
    this.ctx = ctx;
    this.vmid = init.vmid;
    this.name = init.name;
    this.agent = init.agent;
    this.layout = init.layout;
    this.confPath = init.confPath;
    this.disks = init.disks;
    this.qmpPath = path.join(ctx.runDir, `${init.vmid}.qmp`);
    this.pidPath = path.join(ctx.runDir, `${init.vmid}.pid`);
    this.qgaPath = path.join(ctx.runDir, `${init.vmid}.qga`);
  }

  setHookscript(volid: string | undefined): void {
    setConfHookscript(this.confPath, volid);
  }

  pid(): number | undefined {
    return this.running() ? this.currentPid : undefined;
  }

  running(): boolean {
    return this.currentPid !== undefined && isAlive(this.currentPid);
  }

  async start(opts: { paused?: boolean; migratedFrom?: string } = {}): Promise<void> {
    await this.settle();
    this.requireStopped('start');
    // QEMU may have died between the two checks: its post-stop comes first.
    await this.settle();
    await this.pveLocked(() => this.startWithHooks(opts));
  }

  async stop(): Promise<void> {
    await this.settle();
    this.requireRunning('stop');
    await this.stopWithHooks();
  }

  /** There is no guest OS to honour ACPI, so a shutdown ends like a stop (same phases). */
  async shutdown(): Promise<void> {
    await this.settle();
    this.requireRunning('shutdown');
    await this.stopWithHooks();
  }

  async reboot(): Promise<void> {
    await this.settle();
    this.requireRunning('reboot');
    await this.stopWithHooks();
    await this.pveLocked(() => this.startWithHooks({}));
  }

  async reset(): Promise<void> {
    await this.settle();
    this.requireRunning('reset');
    await this.qmp((q) => q.execute('system_reset'));
  }

  /** A reboot inside the guest is a machine reset in the same QEMU process: no hooks. */
  async guestReboot(): Promise<void> {
    await this.settle();
    this.requireRunning('reboot the guest');
    await this.qmp((q) => q.execute('system_reset'));
  }

  async crash(): Promise<void> {
    await this.settle();
    this.requireRunning('crash');
    const pid = this.currentPid!;
    this.expectingExit = true;
    try {
      process.kill(pid, 'SIGKILL');
      await waitForExit(pid, QUIT_TIMEOUT_MS);
      this.forget(pid);
    } finally {
      this.expectingExit = false;
    }
    await this.qmCleanup();
  }

  /** Resolves once QEMU has exited and the post-stop of that exit has run. */
  async whenStopped(timeoutMs = QUIT_TIMEOUT_MS): Promise<void> {
    const pid = this.currentPid;
    if (pid !== undefined && !(await waitForExit(pid, timeoutMs))) {
      throw SimStateError({ vmid: this.vmid, op: 'wait for the stop', reason: `QEMU ${pid} still runs after ${timeoutMs} ms` });
    }
    await this.settle();
  }

  qmp<T>(fn: (q: QmpClient) => Promise<T>): Promise<T> {
    return withQmp(this.qmpPath, fn, SIM_QMP);
  }

  async write(diskKey: string, w: { pattern: number; offset: number; length: number }): Promise<void> {
    const disk = this.disk(diskKey);
    checkRange(this.vmid, disk, w.offset, w.length);
    if (!Number.isInteger(w.pattern) || w.pattern < 0 || w.pattern > 255) {
      throw SimIoError({ vmid: this.vmid, disk: diskKey, op: 'write', output: `pattern ${w.pattern} is not a byte` });
    }
    const cmd = `write -P 0x${w.pattern.toString(16)} ${w.offset} ${w.length}`;
    if (this.running()) {
      // Through the guest device (`-d`), which also works while a backup job holds the node;
      // efidisk0/tpmstate0 have no device and take the drive name. qemu-io prints its own result
      // on QEMU's stdout (/dev/null once daemonized): only monitor-level errors come back, hence
      // the range check above.
      const target = hasDevice(disk.key) ? `-d ${qdevPath(disk.key)}` : `drive-${disk.key}`;
      const output = await this.qmp((q) => hmp(q, `qemu-io ${target} "${cmd}"`));
      if (output.trim() !== '') throw SimIoError({ vmid: this.vmid, disk: diskKey, op: cmd, output });
    } else {
      const output = await qemuIo(disk, cmd);
      if (!/wrote \d+\/\d+ bytes at offset/.test(output)) throw SimIoError({ vmid: this.vmid, disk: diskKey, op: cmd, output });
    }
    writeReference(disk.reference, w.offset, w.length, (buf, len) => buf.fill(w.pattern, 0, len));
  }

  async writeData(diskKey: string, offset: number, data: Buffer): Promise<void> {
    const disk = this.disk(diskKey);
    checkRange(this.vmid, disk, offset, data.length);
    if (this.running()) throw SimStateError({ vmid: this.vmid, op: 'writeData', reason: 'arbitrary data is only written to a stopped VM' });
    const tmpDir = fs.mkdtempSync(path.join(this.ctx.root, 'data-'));
    try {
      const src = path.join(tmpDir, 'data');
      fs.writeFileSync(src, data);
      const cmd = `write -s ${src} ${offset} ${data.length}`;
      const output = await qemuIo(disk, cmd);
      if (!/wrote \d+\/\d+ bytes at offset/.test(output)) throw SimIoError({ vmid: this.vmid, disk: diskKey, op: cmd, output });
    } finally {
      fs.rmSync(tmpDir, { recursive: true, force: true });
    }
    let pos = 0;
    writeReference(disk.reference, offset, data.length, (buf, len) => {
      data.copy(buf, 0, pos, pos + len);
      pos += len;
    });
  }

  async snapshotReference(diskKey: string): Promise<string> {
    const disk = this.disk(diskKey);
    const dest = path.join(path.dirname(disk.reference), `${disk.key}-snap-${++this.snapshotCounter}.raw`);
    await execFileP('cp', ['--sparse=always', disk.reference, dest]);
    return dest;
  }

  /** vzdump of this VM, hook phases in pve-manager's order (sim-vzdump.ts). */
  vzdump(mode: VzdumpMode, during?: () => Promise<void>): Promise<void> {
    return runVzdump(
      {
        vmid: this.vmid,
        name: this.name,
        ctx: this.ctx,
        running: () => this.running(),
        settle: () => this.settle(),
        qmp: (fn) => this.qmp(fn),
        stopWithHooks: () => this.stopWithHooks(),
        startWithHooks: (o) => this.startWithHooks(o),
      },
      mode,
      during,
    );
  }

  /** Hard stop used by node cleanup: no hooks. */
  async kill(): Promise<void> {
    const pid = this.currentPid;
    if (pid === undefined) return;
    this.expectingExit = true;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await waitForExit(pid, QUIT_TIMEOUT_MS);
    this.forget(pid);
    this.expectingExit = false;
  }

  /** Runs `fn` holding Proxmox's per-VM lock, as qemu-server's lock_config does (10 s wait). */
  pveLocked<T>(fn: () => Promise<T>): Promise<T> {
    return withPveLock(this.ctx.lockDir, this.vmid, fn);
  }

  /** qmeventd's `qm cleanup`: post-stop under the VM lock. */
  qmCleanup(): Promise<void> {
    return this.pveLocked(async () => {
      await this.guestHook('post-stop', this.ctx.env);
    });
  }

  /** vm_stop's part of a qemu-server operation that holds the lock itself (qm-rollback.ts): pre-stop, quit. */
  async stopInsideLock(): Promise<void> {
    await this.settle();
    if (!this.running()) return;
    await this.guestHook('pre-stop', this.ctx.env);
    await this.quit();
  }

  /** vm_start's part of a qemu-server operation that holds the lock itself; `loadvm` resumes an internal snapshot's vmstate. */
  startInsideLock(opts: { paused?: boolean; loadvm?: string } = {}): Promise<void> {
    return this.startWithHooks(opts);
  }

  
  /**
   * The target side of a live migration (live-migration.ts has the whole sequence): `qm start
   * --migratedfrom NODE --stateuri unix` loads the config from the source node, runs pre-start with
   * PVE_MIGRATED_FROM, starts QEMU with `-incoming URI -S`, sets the migration capabilities, and
   * runs post-start before any state has arrived.
   */
  async startIncoming(migratedFrom: string, uri: string, sourceConfPath: string): Promise<void> {
    await this.settle();
    this.requireStopped('start for an incoming migration');
    await this.startWithHooks({ migratedFrom, incoming: { uri, sourceConfPath } });
  }

  private async startWithHooks(opts: { paused?: boolean; migratedFrom?: string; loadvm?: string; incoming?: { uri: string; sourceConfPath: string } }): Promise<void> {
    const env = opts.migratedFrom ? { ...this.ctx.env, PVE_MIGRATED_FROM: opts.migratedFrom } : this.ctx.env;
    const confPath = opts.incoming?.sourceConfPath;
    const pre = await this.guestHook('pre-start', env, confPath);
    if (pre && pre.exitCode !== 0) {
      throw SimHookAbortError({ vmid: this.vmid, phase: 'pre-start', script: pre.script, exitCode: pre.exitCode, stderr: pre.stderr });
    }
    await this.launch(opts.paused === true, { loadvm: opts.loadvm, incoming: opts.incoming?.uri });
    if (opts.incoming) await this.qmp((q) => setMigrationCaps(q));
    await this.guestHook('post-start', env, confPath);
  }

  private async stopWithHooks(): Promise<void> {
    await this.pveLocked(async () => {
      await this.guestHook('pre-stop', this.ctx.env);
      await this.quit();
    });
    await this.qmCleanup();
  }

  private async launch(paused: boolean, extra: { loadvm?: string; incoming?: string } = {}): Promise<void> {
    const { loadvm, incoming } = extra;
    for (const f of [this.qmpPath, this.pidPath, this.qgaPath]) fs.rmSync(f, { force: true });
    const run = (directIo: boolean): Promise<void> =>
      execFileP('qemu-system-x86_64', [
        ...qemuArgs({
          vmid: this.vmid,
          name: this.name,
          qmpPath: this.qmpPath,
          pidPath: this.pidPath,
          qgaPath: this.agent ? this.qgaPath : undefined,
          disks: this.disks.map((d) => ({ key: d.key, format: d.format, path: d.path, volid: d.volid })),
          paused,
          ...(incoming ? { incoming } : {}),
          layout: this.layout,
          directIo,
        }),
        ...(loadvm === undefined ? [] : ['-loadvm', loadvm]),
      ]).then(() => undefined);
    try {
      await run(this.ctx.directIo);
    } catch (err) {
      const e = err as { code?: number | string; stderr?: string; message: string };
      // io_uring can be unavailable (seccomp, old kernels): fall back like a storage without O_DIRECT.
      if (this.ctx.directIo && /io_uring|O_DIRECT|Invalid argument/i.test(e.stderr ?? '')) {
        this.ctx.directIo = false;
        await run(false).catch((e2: { code?: number; stderr?: string; message: string }) => {
          throw SimQemuStartError({ vmid: this.vmid, exitCode: typeof e2.code === 'number' ? e2.code : null, stderr: e2.stderr ?? e2.message });
        });
      } else {
        throw SimQemuStartError({ vmid: this.vmid, exitCode: typeof e.code === 'number' ? e.code : null, stderr: e.stderr ?? e.message });
      }
    }
    const pid = Number(fs.readFileSync(this.pidPath, 'utf8').trim());
    this.currentPid = pid;
    this.ctx.reaper.add(pid);
    this.watchExit();
    // -daemonize returns once the monitor is set up; one round trip proves the socket serves.
    await this.qmp((q) => q.execute('query-status'));
  }

  private async quit(): Promise<void> {
    const pid = this.currentPid!;
    this.expectingExit = true;
    try {
      try {
        await this.qmp((q) => q.execute('quit'));
      } catch (err) {
        // QEMU may close the socket before its reply reaches us.
        if (!QmpDisconnectedError.is(err)) throw err;
      }
      if (!(await waitForExit(pid, QUIT_TIMEOUT_MS))) {
        process.kill(pid, 'SIGKILL');
        await waitForExit(pid, QUIT_TIMEOUT_MS);
      }
      this.forget(pid);
    } finally {
      this.expectingExit = false;
    }
  }

  private forget(pid: number): void {
    this.ctx.reaper.remove(pid);
    if (this.currentPid !== pid) return;
    this.currentPid = undefined;
    if (this.exitWatch) clearInterval(this.exitWatch);
    this.exitWatch = undefined;
  }

  /** qmeventd's part: notice a QEMU exit nobody in the simulator asked for. */
  private watchExit(): void {
    if (this.exitWatch) clearInterval(this.exitWatch);
    this.exitWatch = setInterval(() => this.noticeExit(), 50);
    this.exitWatch.unref();
  }

  private noticeExit(): void {
    const pid = this.currentPid;
    if (pid === undefined || this.expectingExit || isAlive(pid)) return;
    this.forget(pid);
    const previous = this.exitHandled;
    // A `qm cleanup` that cannot get the lock only fails its own task, as on a real node.
    this.exitHandled = previous.then(() => this.qmCleanup()).catch(() => undefined);
  }

  /** Handles an unnoticed exit now, so that its post-stop comes before whatever the caller does next. */
  private async settle(): Promise<void> {
    this.noticeExit();
    await this.exitHandled;
  }

  /** Runs the hookscript named in the config (read afresh, like qemu-server does each phase). */
  private async guestHook(phase: string, env: Record<string, string>, confPath = this.confPath): Promise<HookRun | undefined> {
    const volid = readConfHookscript(confPath);
    if (volid === undefined) return undefined;
    const script = volid.startsWith('local:snippets/')
      ? path.join(this.ctx.snippetsDir, volid.slice('local:snippets/'.length))
      : volid;
    const run = await runHook('guest', script, [String(this.vmid), phase], phase, env);
    this.ctx.hookLog.push(run);
    return run;
  }

  private disk(key: string): SimDisk {
    const disk = this.disks.find((d) => d.key === key);
    if (!disk) throw SimStateError({ vmid: this.vmid, op: `use disk ${key}`, reason: 'no such disk' });
    return disk;
  }

  private requireRunning(op: string): void {
    if (!this.running()) throw SimStateError({ vmid: this.vmid, op, reason: 'VM is not running' });
  }

  private requireStopped(op: string): void {
    if (this.running()) throw SimStateError({ vmid: this.vmid, op, reason: 'VM is already running' });
  }
}
