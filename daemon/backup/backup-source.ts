/**
 * Where a backup reads disks from, and what becomes of their bitmaps: one interface for both ways a
 * disk is read.
 *
 * - fleece-source.ts: a running VM's disks, from QEMU's point-in-time view (fleece-session.ts);
 * - image-source.ts: a stopped VM's images, or a running VM's volumes QEMU does not hold (qemu-nbd).
 *
 * Life of a source in one backup (backup-vm.ts):
 *   open → per job exportDrive (read it, close the export) → closeIntact (assertIntact + close) → manifest commit
 *   → commitBitmaps.  On any failure before the commit: close → rollbackBitmaps.
 * `open` switches the bitmaps (the new one records from here on); `commitBitmaps` keeps only the
 * new one; `rollbackBitmaps` leaves every change since the last committed backup in the old one.
 * `close` and `rollbackBitmaps` are idempotent and safe to call on a source whose open failed.
 */
import type { Consistency } from './backup-options';
import type { DiskJob } from './plan-disks';
import type { ByteRange } from './read-plan';

/** One drive served over NBD. */
export interface DriveExport {
  readonly socketPath: string;
  readonly exportName: string;
  /** incremental-storage: the ranges the storage reports changed (storage-snapshots.ts). */
  readonly changedRanges?: readonly ByteRange[];
  close(): Promise<void>;
}

export interface BackupSource<J extends DiskJob = DiskJob> {
  readonly jobs: readonly J[];
  /** How consistent what the source serves is (settled by `open`). */
  readonly consistency: Consistency;
  /** Fires when the view is lost while reading; its reason is the error to report. */
  readonly signal: AbortSignal | undefined;
  /** Why the guest file systems were not frozen, for the manifest (after `open`). */
  readonly freezeNote: string | undefined;
  open(): Promise<void>;
  exportDrive(job: J): Promise<DriveExport>;
  /** Throws when what was read may not be point-in-time any more. */
  assertIntact(): Promise<void>;
  close(): Promise<void>;
  /** `assertIntact` then `close` in one go (a fleece source: one QMP session); closed also when it throws. */
  closeIntact(): Promise<void>;
  commitBitmaps(): Promise<void>;
  rollbackBitmaps(): Promise<void>;
  /** The storage snapshot each disk's backup took (manifest `extra.storageSnapshots`), after the reads. */
  storageSnapshots?(): Record<string, string>;
}
