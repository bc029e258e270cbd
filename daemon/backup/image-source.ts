/**
 * The backup source of disk images read with qemu-nbd (image-export.ts):
 * - a stopped VM's disks (`offline`): each image is checked not to be held by a running QEMU before
 *   it is opened; an image whose bitmaps persist gets its next bitmap in `open`, the old ones are
 *   removed after the commit, the new one again on failure;
 * - a running VM's volumes that QEMU does not hold (tpmstate0, held by swtpm): opened shared,
 *   without a bitmap (`crash-consistent`).
 * Bitmap removals are best-effort: one that fails is logged and goes at the next committed backup.
 * A stopped VM's RBD disk gets its pve-cbt RBD snapshot in `open` and is read from that snapshot
 * (storage-snapshots.ts); an incremental-storage job reads only the ranges `rbd diff` reports.
 */
import { StorageSnapshots } from './storage-snapshots';
import type { Logger } from 'winston';
import type { Consistency } from './backup-options';
import type { BackupSource, DriveExport } from './backup-source';
import { addImageBitmap, assertVmStopped, ImageExport, removeImageBitmap } from './image-export';
import type { ImageBitmaps, ImageJob, VolumeJob } from './plan-disks';

export interface ImageSourceOptions {
  readonly vmid: number;
  readonly qemuServerRunDir: string;
  readonly workDir: string;
  /** The VM runs: its volumes are held by another program and read shared. */
  readonly vmRunning: boolean;
  readonly granularity: number;
  readonly qemuImg?: string;
  readonly qemuNbd?: string;
  readonly logger?: Logger;
}

export class ImageSource implements BackupSource<ImageJob | VolumeJob> {
  readonly consistency: Consistency;
  readonly signal = undefined;
  readonly freezeNote = undefined;
  /** Images whose new bitmap was added (removed again on rollback). */
  private readonly added: { readonly job: ImageJob; readonly bitmaps: ImageBitmaps }[] = [];
  private readonly snapshots: StorageSnapshots;

  constructor(
    private readonly opts: ImageSourceOptions,
    readonly jobs: readonly (ImageJob | VolumeJob)[],
  ) {
    this.consistency = opts.vmRunning ? 'crash-consistent' : 'offline';
    // only a stopped VM's images: a running VM's volumes beside QEMU (swtpm) are not on RBD here
    this.snapshots = new StorageSnapshots(opts.vmRunning ? [] : jobs, opts.logger, opts.vmid);
  }

  async open(): Promise<void> {
    await this.snapshots.create();
    for (const j of this.jobs) {
      if (j.kind !== 'image' || !j.bitmaps) continue;
      await addImageBitmap(j.disk.path, j.bitmaps.added.name, this.opts.granularity, this.qemuImg);
      this.added.push({ job: j, bitmaps: j.bitmaps });
    }
  }

  async exportDrive(j: ImageJob | VolumeJob): Promise<DriveExport> {
    const o = this.opts;
    if (!o.vmRunning) assertVmStopped(o.qemuServerRunDir, o.vmid, j.disk.key, j.disk.path);
    const changedRanges = await this.snapshots.changedRanges(j);
    const exp = await ImageExport.open({
      vmid: o.vmid,
      drive: j.disk.key,
      file: this.snapshots.readName(j),
      format: j.disk.format,
      workDir: o.workDir,
      forceShare: o.vmRunning,
      ...(j.readBitmap ? { bitmap: j.readBitmap } : {}),
      ...(o.qemuNbd ? { qemuNbd: o.qemuNbd } : {}),
      ...(o.logger ? { logger: o.logger } : {}),
    });
    if (!changedRanges) return exp;
    return { socketPath: exp.socketPath, exportName: exp.exportName, changedRanges, close: () => exp.close() };
  }

  storageSnapshots(): Record<string, string> {
    return this.snapshots.names();
  }

  async assertIntact(): Promise<void> {
    // An image does not change under the read: the VM is stopped, or swtpm's volume is read as is.
  }

  async close(): Promise<void> {
    // Each export is closed after its drive was read.
  }

  async closeIntact(): Promise<void> {
    await this.assertIntact();
    await this.close();
  }

  async commitBitmaps(): Promise<void> {
    await this.snapshots.commit();
    for (const { job, bitmaps } of this.added.splice(0)) {
      for (const b of bitmaps.old) await this.removeBitmap(job, b, 'removing an old image bitmap failed');
    }
  }

  async rollbackBitmaps(): Promise<void> {
    await this.snapshots.rollback();
    for (const { job, bitmaps } of this.added.splice(0)) await this.removeBitmap(job, bitmaps.added.name, 'removing the new image bitmap failed');
  }

  private get qemuImg(): string {
    return this.opts.qemuImg ?? 'qemu-img';
  }

  private async removeBitmap(j: ImageJob, name: string, failure: string): Promise<void> {
    await removeImageBitmap(j.disk.path, name, this.qemuImg).catch((e: Error) =>
      this.opts.logger?.warn(failure, { vmid: this.opts.vmid, disk: j.disk.key, bitmap: name, error: e.message }),
    );
  }
}
