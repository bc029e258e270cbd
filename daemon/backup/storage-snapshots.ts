/**
 * The pve-cbt RBD snapshots of one backup source's jobs (storage-delta.ts has the why):
 * - `create` takes `pve-cbt-<time>-<random>` of each RBD job's image: before the read of a stopped
 *   VM (which then reads the snapshot itself), inside the paused window of a running VM's fleecing
 *   transaction (fleece-source.ts), so the snapshot holds exactly what the backup holds;
 * - `readName` is what a stopped VM's disk is read from (the image at the new snapshot);
 * - `changedRanges` is `rbd diff --from-snap PREV IMAGE@NEW` for an incremental-storage job;
 * - `commit` (after the manifest is committed) removes every other pve-cbt snapshot of the image,
 *   `rollback` (any failure) removes the new one: the previous one stays the last backup's.
 * Removals are best effort (logged); a leftover pve-cbt snapshot goes at the next commit.
 * Proxmox's snapshots are never touched: only names with the pve-cbt prefix are removed.
 */
import crypto from 'node:crypto';
import type { Logger } from 'winston';
import { rbd } from '../proc/ceph-command';
import { atSnapshot, rbdImageSpec, rbdName } from '../pve/rbd-volume';
import type { DiskJob } from './plan-disks';
import type { ByteRange } from './read-plan';
import { rbdDiff } from './rbd-storage-facts';
import { isOwnStorageSnapshot, storageSnapshotName } from './storage-delta';

export class StorageSnapshots {
  private readonly created = new Map<string, string>();

  constructor(
    private readonly jobs: readonly DiskJob[],
    private readonly logger?: Logger,
    private readonly vmid?: number,
  ) {}

  get any(): boolean {
    return this.jobs.some((j) => j.storage);
  }

  /** Takes the new snapshot of every RBD job's image. */
  async create(): Promise<void> {
    for (const j of this.jobs) {
      if (!j.storage || this.created.has(j.disk.key)) continue;
      const name = storageSnapshotName(new Date(), crypto.randomBytes(3).toString('hex'));
      await rbd(j.storage.image, ['snap', 'create', '--no-progress', rbdImageSpec(atSnapshot(j.storage.image, name))]);
      this.created.set(j.disk.key, name);
    }
  }

  /** The new snapshot of each disk, for the manifest. */
  names(): Record<string, string> {
    return Object.fromEntries(this.created);
  }

  /** The name a stopped VM's disk is read from: the image at its new snapshot (or its own path). */
  readName(j: DiskJob): string {
    const snap = this.created.get(j.disk.key);
    return j.storage && snap ? rbdName(atSnapshot(j.storage.image, snap)) : j.disk.path;
  }

  /** The ranges an incremental-storage job reads; undefined for other jobs. */
  async changedRanges(j: DiskJob): Promise<ByteRange[] | undefined> {
    if (j.decision.mode !== 'incremental-storage' || !j.storage?.facts.previous) return undefined;
    const snap = this.created.get(j.disk.key);
    if (!snap) return undefined;
    return rbdDiff(j.storage.image, j.storage.facts.previous, snap);
  }

  async commit(): Promise<void> {
    for (const j of this.jobs) {
      const keep = this.created.get(j.disk.key);
      if (!j.storage || !keep) continue;
      for (const old of j.storage.facts.own) if (old !== keep && isOwnStorageSnapshot(old)) await this.remove(j, old, 'removing an old pve-cbt RBD snapshot failed');
    }
    this.created.clear();
  }

  async rollback(): Promise<void> {
    for (const j of this.jobs) {
      const made = this.created.get(j.disk.key);
      if (j.storage && made) await this.remove(j, made, 'removing the new pve-cbt RBD snapshot failed');
    }
    this.created.clear();
  }

  private async remove(j: DiskJob, name: string, failure: string): Promise<void> {
    if (!j.storage) return;
    await rbd(j.storage.image, ['snap', 'rm', '--no-progress', rbdImageSpec(atSnapshot(j.storage.image, name))]).catch((e: Error) =>
      this.logger?.warn(failure, { vmid: this.vmid, disk: j.disk.key, snapshot: name, error: e.message }),
    );
  }
}
