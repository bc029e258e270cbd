/**
 * The backup source of a running VM's disks: one fleecing session (fleece-session.ts) for all of
 * them, so the view and the bitmap switch are atomic across the VM's disks. When a failed backup's
 * teardown or rollback finds QEMU not answering (hung, SIGSTOP), they are retried in the background
 * until QEMU answers again (recover-fleece.ts, cleanup-retry.ts).
 */
import type { QemuProcess } from '../pve/qemu-process';
import type { Consistency } from './backup-options';
import type { BackupSource, DriveExport } from './backup-source';
import { fleeceNames } from './bitmap-names';
import { FleeceSession, nbdSocketPath, type FleeceDiskSpec, type FleeceOptions } from './fleece-session';
import type { FleeceJob } from './plan-disks';
import { cleanupFleeceLeftoversLater } from './recover-fleece';

export class FleeceSource implements BackupSource<FleeceJob> {
  private session: FleeceSession | undefined;

  constructor(
    private readonly opts: FleeceOptions,
    readonly jobs: readonly FleeceJob[],
    private readonly granularity: number,
    /** The QEMU process the view lives in. */
    private readonly qemu: QemuProcess,
  ) {}

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
    this.session = await FleeceSession.start(this.opts, specs);
  }

  async exportDrive(job: FleeceJob): Promise<DriveExport> {
    // The session exports every drive; the exports go with the view in `close`.
    return {
      socketPath: nbdSocketPath(this.opts.workDir, this.opts.vmid),
      exportName: fleeceNames(this.opts.vmid, job.disk.key).exportName,
      close: async () => undefined,
    };
  }

  async assertIntact(): Promise<void> {
    await this.session?.checkJobs();
  }

  async close(): Promise<void> {
    await this.session?.teardown();
  }

  async commitBitmaps(): Promise<void> {
    await this.session?.commitBitmaps();
  }

  /** Failure path: when QEMU did not answer the teardown or the rollback, both are retried in the background. */
  async rollbackBitmaps(): Promise<void> {
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
