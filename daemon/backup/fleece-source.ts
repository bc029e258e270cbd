/**
 * The backup source of a running VM's disks: one fleecing session (fleece-session.ts) for all of
 * them, so the view and the bitmap switch are atomic across the VM's disks. When a failed backup's
 * teardown or rollback finds QEMU not answering (hung, SIGSTOP), they are retried in the background
 * until QEMU answers again (recover-fleece.ts, cleanup-retry.ts).
 * RBD disks get their pve-cbt RBD snapshot inside the transaction's window with the VM paused (QMP
 * `stop` drains every request first; `cont` after), so snapshot and view hold the same bytes
 * (storage-snapshots.ts); an incremental-storage job reads only what `rbd diff` reports, from the view.
 */
import type { QmpClient } from '../qmp/qmp-client';
import { withQmp } from '../qmp/qmp-session';
import { StorageSnapshots } from './storage-snapshots';
import type { QemuProcess } from '../pve/qemu-process';
import type { Consistency } from './backup-options';
import type { BackupSource, DriveExport } from './backup-source';
import { fleeceNames } from './bitmap-names';
import { FleeceSession, nbdSocketPath, type FleeceDiskSpec, type FleeceOptions } from './fleece-session';
import type { FleeceJob } from './plan-disks';
import { cleanupFleeceLeftoversLater } from './recover-fleece';

export class FleeceSource implements BackupSource<FleeceJob> {
  private session: FleeceSession | undefined;
  private readonly snapshots: StorageSnapshots;

  constructor(
    private readonly opts: FleeceOptions,
    readonly jobs: readonly FleeceJob[],
    private readonly granularity: number,
    /** The QEMU process the view lives in. */
    private readonly qemu: QemuProcess,
  ) {
    this.snapshots = new StorageSnapshots(jobs, opts.logger, opts.vmid);
  }

  get consistency(): Consistency {
    return this.session?.consistency === 'frozen' ? 'frozen' : 'crash-consistent';
  }

  get signal(): AbortSignal | undefined {
    return this.session?.signal;
  }

  get freezeNote(): string | undefined {
    return this.session?.freezeNote;
  }

  /** Sets up the view; a failed setup is torn down and rolled back by the session itself. */
  async open(): Promise<void> {
    const specs: FleeceDiskSpec[] = this.jobs.map((j) => ({
      drive: j.disk.key,
      device: j.qemuDisk.device,
      nodeName: j.qemuDisk.nodeName,
      size: j.size,
      newBitmap: j.newBitmap.name,
      persistent: j.persistent,
      granularity: this.granularity,
      ...(j.readBitmap ? { readBitmap: j.readBitmap } : {}),
    }));
    const opts: FleeceOptions = this.snapshots.any
      ? { ...this.opts, aroundTransaction: (tx) => this.paused(async () => { await this.snapshots.create(); return tx(); }) }
      : this.opts;
    this.session = await FleeceSession.start(opts, specs);
  }

  /** Runs `fn` with the guest's CPUs stopped (if they ran): no guest write lands between the snapshot and the view. */
  private async paused<T>(fn: () => Promise<T>): Promise<T> {
    const qmp = <R>(f: (q: QmpClient) => Promise<R>): Promise<R> => withQmp(this.opts.qmpSocket, f, this.opts.qmpOptions);
    const status = await qmp((q) => q.execute<{ running: boolean }>('query-status'));
    if (!status.running) return fn();
    await qmp((q) => q.execute('stop'));
    try {
      return await fn();
    } finally {
      await qmp((q) => q.execute('cont'));
    }
  }

  storageSnapshots(): Record<string, string> {
    return this.snapshots.names();
  }

  async exportDrive(job: FleeceJob): Promise<DriveExport> {
    // The session exports every drive; the exports go with the view in `close`.
    const changedRanges = await this.snapshots.changedRanges(job);
    return {
      socketPath: nbdSocketPath(this.opts.workDir, this.opts.vmid),
      exportName: fleeceNames(this.opts.vmid, job.disk.key).exportName,
      ...(changedRanges ? { changedRanges } : {}),
      close: async () => undefined,
    };
  }

  async assertIntact(): Promise<void> {
    await this.session?.checkJobs();
  }

  async close(): Promise<void> {
    await this.session?.teardown();
  }

  async closeIntact(): Promise<void> {
    await this.session?.teardown({ checkJobs: true });
  }

  async commitBitmaps(): Promise<void> {
    await this.snapshots.commit();
    await this.session?.commitBitmaps();
  }

  /** Failure path: when QEMU did not answer the teardown or the rollback, both are retried in the background. */
  async rollbackBitmaps(): Promise<void> {
    await this.snapshots.rollback();
    const s = this.session;
    if (!s) return;
    try {
      await s.rollbackBitmaps();
    } finally {
      if (s.leftBehind) {
        cleanupFleeceLeftoversLater({
          vmid: this.opts.vmid,
          qmpSocket: this.opts.qmpSocket,
          workDir: this.opts.workDir,
          qemu: this.qemu,
          committedBitmap: (drive) => this.jobs.find((j) => j.disk.key === drive)?.last?.bitmap?.name,
          ...(this.opts.qmpOptions ? { qmpOptions: this.opts.qmpOptions } : {}),
          ...(this.opts.logger ? { logger: this.opts.logger } : {}),
        });
      }
    }
  }
}
