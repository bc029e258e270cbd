/**
 * Point-in-time read of a running VM's disks ("fleecing"), following the recipe verified on QEMU 7.2
 * (shared/docs/pve-qemu-facts.md):
 *
 *   1. `nbd-server-start` on a private unix socket in the work dir. QEMU has one NBD server; when
 *      PVE's migration or backup holds it we retry in fresh short sessions for a bounded time, then
 *      fail CBT_BACKUP_NBD_BUSY. Done first (only the scratch copies of step 2 are made meanwhile),
 *      so a busy server costs nothing else.
 *   2. per disk: an empty qcow2 SCRATCH of the disk's size (a copy of a `qemu-img create`d template,
 *      scratch-image.ts; made while the NBD server starts) and `blockdev-add` a qcow2 node over it
 *      with the drive as backing.
 *   3. guest-agent fs freeze (only with `agent: 1`, bounded), then ONE `transaction` for all disks:
 *      disable the bitmap being read, add the next bitmap (persistent on qcow2, transient on
 *      raw/vmdk), `blockdev-backup sync=none` into the scratch node (copy-before-write); then thaw.
 *      One transaction makes the view and the bitmap switch atomic, also across the VM's disks.
 *   4. `block-export-add` per disk, exporting the frozen old bitmap with it.
 * Without a guest agent, steps 2 (the nodes), 3 and 4 share one QMP session; with one, each has its own
 * and the freeze happens between them, so a silent agent never holds QMP.
 * Teardown runs in reverse (export, job, node, server, files), each step best-effort so one failure
 * does not leave the rest behind; `leftBehind` tells the caller when QEMU did not answer, so that
 * the cleanup is finished later (fleece-source.ts). Bitmaps are settled afterwards, by the caller's outcome:
 *   - commit (only after the manifest is committed): drop every other pve-cbt bitmap of the drive;
 *   - rollback (any failure): in one transaction merge the new bitmap into the old one, re-enable the
 *     old one and remove the new one, so the next incremental still sees every change.
 * QMP is only held for short sessions; `query-block-jobs` is polled in its own short sessions and a
 * lost copy-before-write job aborts the read (the view would no longer be point-in-time).
 * All object names carry the pve-cbt prefix (bitmap-names.ts), which lets `cleanupFleeceLeftovers` (recover-fleece.ts)
 * remove what a crashed daemon left behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import type { QmpClient, QmpConnectOptions } from '../qmp/qmp-client';
import { QmpCommandError } from '../qmp/qmp-errors';
import { withQmp } from '../qmp/qmp-session';
import { queryDisks } from '../qmp/query-disks';
import { createScratchImage } from './scratch-image';
import { BackupCleanupTimeoutError, BackupJobFailedError, BackupNbdBusyError } from './backup-errors';
import { fleeceNames, isOwnName, ownBitmapsOf } from './bitmap-names';
import { fsFreeze, fsThaw } from './guest-agent';
import type { Consistency } from '../repository/manifest';

type BlockJobInfo = { device: string; status?: string; error?: string };

export interface FleeceDiskSpec {
  readonly drive: string;
  /** Node accepted as blockdev-backup device and as backing: `drive-scsi0`. */
  readonly device: string;
  /** Format node carrying the bitmaps. */
  readonly nodeName: string;
  readonly size: number;
  readonly newBitmap: string;
  readonly persistent: boolean;
  readonly granularity: number;
  /** The bitmap an incremental reads; frozen in the transaction and exported. */
  readonly readBitmap?: string;
}

export interface FleeceOptions {
  readonly vmid: number;
  readonly qmpSocket: string;
  /** Guest agent socket when the VM config has `agent: 1`. */
  readonly qgaSocket?: string;
  /** Private directory for scratch images and the NBD socket. */
  readonly workDir: string;
  readonly qmpOptions?: QmpConnectOptions;
  readonly nbdBusyTimeoutMs?: number;
  readonly freezeTimeoutMs?: number;
  readonly jobPollMs?: number;
  readonly qemuImg?: string;
  readonly logger?: Logger;
  /** Wraps the one transaction (inside the guest freeze): the RBD snapshot of storage-delta.ts is taken there. */
  readonly aroundTransaction?: (transaction: () => Promise<unknown>) => Promise<unknown>;
}


export function nbdSocketPath(workDir: string, vmid: number): string {
  return path.join(workDir, `pve-cbt-${vmid}.nbd`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function isNbdRunning(err: unknown): boolean {
  return QmpCommandError.is(err) && /already running/i.test(String(err.details.desc));
}

export class FleeceSession {
  readonly socketPath: string;
  private readonly abort = new AbortController();
  private pollTimer: NodeJS.Timeout | undefined;
  private serverStarted = false;
  private readonly nodesAdded: FleeceDiskSpec[] = [];
  private readonly jobsStarted: FleeceDiskSpec[] = [];
  private readonly exportsAdded: FleeceDiskSpec[] = [];
  private readonly scratchFiles: string[] = [];
  private bitmapsSwitched = false;
  private tornDown = false;
  private teardownFailed = false;
  consistency: Exclude<Consistency, 'offline'> = 'crash-consistent';
  freezeNote: string | undefined;

  private constructor(
    private readonly opts: FleeceOptions,
    readonly disks: readonly FleeceDiskSpec[],
  ) {
    this.socketPath = nbdSocketPath(opts.workDir, opts.vmid);
  }

  /** Fires when the point-in-time view is lost (copy-before-write job gone or failed). */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  exportName(drive: string): string {
    return fleeceNames(this.opts.vmid, drive).exportName;
  }

  /** Sets everything up; on failure tears down what was made and rolls the bitmaps back. */
  static async start(opts: FleeceOptions, disks: readonly FleeceDiskSpec[]): Promise<FleeceSession> {
    const s = new FleeceSession(opts, disks);
    try {
      await s.setup();
    } catch (err) {
      await s.teardown();
      await s.rollbackBitmaps();
      throw err;
    }
    s.startPolling();
    return s;
  }

  private qmp<T>(fn: (q: QmpClient) => Promise<T>): Promise<T> {
    return withQmp(this.opts.qmpSocket, fn, this.opts.qmpOptions);
  }

  private async setup(): Promise<void> {
    const { vmid, workDir, logger } = this.opts;
    fs.mkdirSync(workDir, { recursive: true, mode: 0o700 });
    fs.rmSync(this.socketPath, { force: true });
    // The scratch images are made while QEMU starts its NBD server (a busy server still fails first:
    // the images are removed with the rest by the teardown).
    const scratch = this.createScratchImages();
    const server = this.startNbdServer();
    const [made, started] = await Promise.allSettled([scratch, server]);
    if (started.status === 'rejected') throw started.reason;
    if (made.status === 'rejected') throw made.reason;
    // Without a guest agent nothing waits between the steps: nodes, the transaction and the
    // exports go in one short QMP session. With one, the freeze happens outside any session.
    // A storage snapshot around the transaction (aroundTransaction: stop, snapshot, cont) talks to
    // QMP itself, so it never runs inside an open session (the monitor takes one client at a time).
    if (!this.opts.qgaSocket && !this.opts.aroundTransaction) {
      this.freezeNote = 'no guest agent configured';
      await this.qmp(async (q) => {
        await this.addScratchNodes(q);
        await this.switchBitmaps(q);
        await this.addExports(q);
      });
    } else {
      await this.qmp((q) => this.addScratchNodes(q));
      // The guest agent is talked to outside any QMP session, so a silent agent never holds QMP.
      const transaction = (): Promise<void> => this.qmp((q) => this.switchBitmaps(q));
      await this.frozen(() => (this.opts.aroundTransaction ? this.opts.aroundTransaction(transaction) : transaction()));
      await this.qmp((q) => this.addExports(q));
    }
    logger?.info('point-in-time view ready', { vmid, disks: this.disks.map((d) => d.drive), consistency: this.consistency });
  }

  private async createScratchImages(): Promise<void> {
    const { vmid, workDir } = this.opts;
    for (const d of this.disks) {
      const file = path.join(workDir, fleeceNames(vmid, d.drive).scratchFile);
      fs.rmSync(file, { force: true });
      this.scratchFiles.push(file);
      await createScratchImage(file, d.size, workDir, this.opts.qemuImg);
    }
  }

  private async addScratchNodes(q: QmpClient): Promise<void> {
    for (const d of this.disks) {
      const n = fleeceNames(this.opts.vmid, d.drive);
      const file = path.join(this.opts.workDir, n.scratchFile);
      await q.execute('blockdev-add', { driver: 'qcow2', 'node-name': n.node, file: { driver: 'file', filename: file }, backing: d.device });
      this.nodesAdded.push(d);
    }
  }

  /** The one transaction: disable the read bitmap, add the next one, start copy-before-write. */
  private async switchBitmaps(q: QmpClient): Promise<void> {
    const { vmid } = this.opts;
    const actions: unknown[] = [];
    for (const d of this.disks) {
      if (d.readBitmap) actions.push({ type: 'block-dirty-bitmap-disable', data: { node: d.nodeName, name: d.readBitmap } });
      actions.push({
        type: 'block-dirty-bitmap-add',
        data: { node: d.nodeName, name: d.newBitmap, persistent: d.persistent, granularity: d.granularity },
      });
      const n = fleeceNames(vmid, d.drive);
      actions.push({ type: 'blockdev-backup', data: { device: d.device, target: n.node, sync: 'none', 'job-id': n.job } });
    }
    await q.execute('transaction', { actions });
    this.bitmapsSwitched = true;
    this.jobsStarted.push(...this.disks);
  }

  private async addExports(q: QmpClient): Promise<void> {
    for (const d of this.disks) {
      const n = fleeceNames(this.opts.vmid, d.drive);
      await q.execute('block-export-add', {
        type: 'nbd',
        id: n.exportId,
        'node-name': n.node,
        name: n.exportName,
        writable: false,
        ...(d.readBitmap ? { bitmaps: [{ node: d.nodeName, name: d.readBitmap }] } : {}),
      });
      this.exportsAdded.push(d);
    }
  }

  private async startNbdServer(): Promise<void> {
    const limit = this.opts.nbdBusyTimeoutMs ?? 30_000;
    const t0 = Date.now();
    for (;;) {
      try {
        await this.qmp((q) => q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: this.socketPath } } }));
        this.serverStarted = true;
        return;
      } catch (err) {
        if (!isNbdRunning(err)) throw err;
        const waited = Date.now() - t0;
        if (waited >= limit) throw BackupNbdBusyError({ vmid: this.opts.vmid, waitedMs: waited, desc: String((err as { details: { desc: unknown } }).details.desc) }, err);
        this.opts.logger?.info('QEMU NBD server busy, waiting', { vmid: this.opts.vmid, waitedMs: waited });
        await sleep(Math.min(1000, limit - waited));
      }
    }
  }

  /** Runs `fn` with guest file systems frozen when an agent socket is configured. */
  private async frozen<T>(fn: () => Promise<T>): Promise<T> {
    const qga = this.opts.qgaSocket;
    if (!qga) {
      this.freezeNote = 'no guest agent configured';
      return fn();
    }
    const timeoutMs = this.opts.freezeTimeoutMs ?? 2000;
    const freeze = await fsFreeze(qga, { timeoutMs });
    if (freeze.frozen) this.consistency = 'frozen';
    else {
      this.freezeNote = `guest agent did not freeze: ${freeze.reason}`;
      this.opts.logger?.warn('continuing crash-consistent', { vmid: this.opts.vmid, reason: freeze.reason });
    }
    try {
      return await fn();
    } finally {
      // Also once after an unanswered freeze: the agent may have frozen after our timeout.
      if (freeze.frozen || freeze.reachable) {
        const thawed = await fsThaw(qga, { timeoutMs, attempts: freeze.frozen ? 3 : 1 });
        if (freeze.frozen && !thawed) this.opts.logger?.error('guest agent did not thaw', { vmid: this.opts.vmid });
      }
    }
  }

  private startPolling(): void {
    const every = this.opts.jobPollMs ?? 5000;
    const tick = async (): Promise<void> => {
      try {
        await this.checkJobs();
      } catch (err) {
        if (BackupJobFailedError.is(err)) {
          this.abort.abort(err);
          return;
        }
        this.opts.logger?.debug('block job poll failed', { vmid: this.opts.vmid, error: (err as Error).message });
      }
      if (!this.tornDown && !this.abort.signal.aborted) this.pollTimer = setTimeout(() => void tick(), every).unref();
    };
    this.pollTimer = setTimeout(() => void tick(), every).unref();
  }

  /** Throws CBT_BACKUP_FLEECE_JOB when a copy-before-write job is not running any more. */
  async checkJobs(): Promise<void> {
    if (this.tornDown) return;
    this.assertJobsRunning(await this.qmp((q) => q.execute<BlockJobInfo[]>('query-block-jobs')));
  }

  private assertJobsRunning(jobs: readonly BlockJobInfo[]): void {
    for (const d of this.jobsStarted) {
      const id = fleeceNames(this.opts.vmid, d.drive).job;
      const job = jobs.find((j) => j.device === id);
      const status = job ? (job.status ?? 'running') : 'gone';
      if (status !== 'running' && status !== 'ready') {
        throw BackupJobFailedError({ vmid: this.opts.vmid, job: id, status, ...(job?.error ? { error: job.error } : {}) });
      }
    }
  }

  /**
   * Removes export, job, scratch node, NBD server and files; idempotent, each step best-effort.
   * With `checkJobs`, the session first does what `checkJobs` does, in the same QMP session (one
   * connect fewer after the reads), and the teardown still runs in full: it then throws what
   * `checkJobs` would have thrown, or the error that kept it from asking QEMU.
   */
  async teardown(opts: { checkJobs?: boolean } = {}): Promise<void> {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    if (this.tornDown) return;
    this.tornDown = true;
    let checked = !opts.checkJobs;
    let notIntact: unknown;
    const { vmid, logger } = this.opts;
    let teardownError: unknown;
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        teardownError ??= err;
        this.teardownFailed = true;
        logger?.warn('fleece teardown step failed', { vmid, step: what, error: (err as Error).message });
      }
    };
    await step('qmp session', () =>
      this.qmp(async (q) => {
        if (!checked) {
          try {
            this.assertJobsRunning(await q.execute<BlockJobInfo[]>('query-block-jobs'));
          } catch (err) {
            notIntact = err;
          }
          checked = true;
        }
        for (const d of this.exportsAdded.splice(0)) {
          await step(`block-export-del ${d.drive}`, () => q.execute('block-export-del', { id: fleeceNames(vmid, d.drive).exportId, mode: 'hard' }));
        }
        await step('wait exports gone', () => waitExportsGone(q, vmid));
        for (const d of this.jobsStarted.splice(0)) {
          await step(`block-job-cancel ${d.drive}`, () => q.execute('block-job-cancel', { device: fleeceNames(vmid, d.drive).job, force: true }));
        }
        await step('wait jobs gone', () => waitJobsGone(q));
        for (const d of this.nodesAdded.splice(0)) {
          await step(`blockdev-del ${d.drive}`, () => q.execute('blockdev-del', { 'node-name': fleeceNames(vmid, d.drive).node }));
        }
        if (this.serverStarted) {
          await step('nbd-server-stop', async () => {
            await q.execute('nbd-server-stop');
            this.serverStarted = false;
          });
        }
      }),
    );
    for (const f of this.scratchFiles.splice(0)) fs.rmSync(f, { force: true });
    // The socket file is how cleanupFleeceLeftovers recognises our NBD server: it stays while the
    // server may still run (QEMU hung during the teardown), so the next backup can stop it.
    if (!this.serverStarted) fs.rmSync(this.socketPath, { force: true });
    if (notIntact !== undefined) throw notIntact;
    if (!checked) throw teardownError ?? new Error('the block jobs were not checked');
  }

  /** Whether something of the session may still be in QEMU: a teardown step or the rollback failed. */
  get leftBehind(): boolean {
    return this.teardownFailed || this.bitmapsSwitched;
  }

  /** After the manifest is committed: the new bitmap is the only pve-cbt bitmap left per drive. */
  async commitBitmaps(): Promise<void> {
    await this.qmp(async (q) => {
      const disks = await queryDisks(q);
      for (const d of this.disks) {
        const qd = disks.find((x) => x.drive === d.drive);
        for (const b of ownBitmapsOf(qd?.bitmaps ?? [], d.drive)) {
          if (b.name === d.newBitmap) continue;
          await q.execute('block-dirty-bitmap-remove', { node: d.nodeName, name: b.name });
        }
      }
    });
    this.bitmapsSwitched = false;
  }

  /** After any failure: every change since the last committed backup stays in the old bitmap. */
  async rollbackBitmaps(): Promise<void> {
    if (!this.bitmapsSwitched) return;
    const actions = this.disks.flatMap((d) => bitmapRollbackActions(d.nodeName, d.readBitmap, d.newBitmap));
    await this.qmp((q) => q.execute('transaction', { actions }));
    this.bitmapsSwitched = false;
  }
}

/**
 * Undoing one drive's bitmap switch, as actions of a QMP `transaction`: what the new bitmap recorded
 * is merged into the old one, the old one records again, and the new one goes. Without an old one
 * (a full), only the new one goes.
 */
export function bitmapRollbackActions(node: string, old: string | undefined, added: string): unknown[] {
  return [
    ...(old
      ? [
          { type: 'block-dirty-bitmap-merge', data: { node, target: old, bitmaps: [added] } },
          { type: 'block-dirty-bitmap-enable', data: { node, name: old } },
        ]
      : []),
    { type: 'block-dirty-bitmap-remove', data: { node, name: added } },
  ];
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, gone: { vmid: number | null; what: string }): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw BackupCleanupTimeoutError({ ...gone, timeoutMs });
    await sleep(50);
  }
}

export function waitExportsGone(q: QmpClient, vmid: number): Promise<void> {
  const prefix = fleeceNames(vmid, '').exportId;
  return waitUntil(async () => {
    const exps = await q.execute<{ id: string }[]>('query-block-exports');
    return !exps.some((e) => e.id.startsWith(prefix));
  }, 10_000, { vmid, what: `block export ${prefix}*` });
}

export function waitJobsGone(q: QmpClient): Promise<void> {
  return waitUntil(async () => {
    const jobs = await q.execute<{ device: string }[]>('query-block-jobs');
    return !jobs.some((j) => isOwnName(j.device));
  }, 10_000, { vmid: null, what: 'pve-cbt block job' });
}
