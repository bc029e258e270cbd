/**
 * What `status` says of a disk's bitmap, decided as the next backup would decide it: the ledger's
 * record, the last committed backup and QEMU's own view (a running VM's bitmaps over QMP, a stopped
 * VM's qcow2 bitmaps from `qemu-img info`) go through the engine's mode decision (mode-decision.ts).
 *
 * So a ledger that still says `valid` after an unseen kill -9 (no hooks attached) does not mislead:
 * QEMU has no such bitmap, the next backup is a full-compare, and the state shown is `invalid` with
 * the engine's reason (the ledger's own view stays in `ledgerState`).
 *
 * An RBD disk's storage facts (its pve-cbt snapshot, rbd-storage-facts.ts) go through the planner's
 * own rule (storage-delta.ts `storageDecision`), so a raw RBD disk whose QEMU bitmap is gone after a
 * restart, but whose last backup's snapshot is still on the image, shows state `storage` and next
 * `incremental-storage` with the planner's reason: changes are still tracked, by the storage. Pure
 * (tested by a table).
 */
import { storageDecision, type StorageFacts } from '../backup/storage-delta';
import { decideMode, type BitmapView, type LastBackupView, type LedgerView, type ModeDecision, type QemuIdentity } from '../backup/mode-decision';
import type { DiskFormat } from '../pve/vm-config';

export interface StatusCheckInput {
  disk: string;
  format: DiskFormat;
  /** QEMU's or qemu-img's size of the disk; undefined when neither could be asked. */
  size: number | undefined;
  vmRunning: boolean;
  qemu: QemuIdentity | undefined;
  lastBackup: LastBackupView | undefined;
  ledger: LedgerView | undefined;
  /** QEMU's (or qemu-img's) bitmaps of the disk; undefined when neither could be asked. */
  bitmaps: readonly BitmapView[] | undefined;
  granularity: number;
  /** A backup of this VM runs now: its bitmaps are being switched, nothing is decided. */
  taskRunning: boolean;
  /** An RBD disk's snapshots as the planner reads them; undefined for other disks (or Ceph not asked). */
  storage?: StorageFacts;
}

export interface StatusCheck {
  /**
   * What status shows: the ledger's state, `invalid` when QEMU contradicts a valid ledger, or
   * `storage` when the next backup is incremental-storage (the RBD snapshot stands in for the bitmap).
   */
  state: string;
  reason: string | null;
  /** The next backup's mode and why; null while a backup runs or when QEMU could not be asked. */
  nextBackup: ModeDecision | null;
}

export function checkDisk(i: StatusCheckInput): StatusCheck {
  const ledgerState = i.ledger?.state ?? 'unknown';
  const ledgerReason = i.ledger?.reason ?? null;
  if (i.taskRunning || i.bitmaps === undefined || i.size === undefined) return { state: ledgerState, reason: ledgerReason, nextBackup: null };
  const bitmapDecision = decideMode({
    disk: i.disk,
    format: i.format,
    diskSize: i.size,
    vmRunning: i.vmRunning,
    lastBackup: i.lastBackup,
    ledger: i.ledger,
    bitmaps: i.bitmaps,
    qemu: i.qemu,
    expectedGranularity: i.granularity,
  });
  const d = storageDecision(bitmapDecision, i.storage);
  if (d.mode === 'incremental-storage') return { state: 'storage', reason: `${d.code}: ${d.reason}`, nextBackup: d };
  const trusted = ledgerState === 'valid' || ledgerState === 'suspect';
  // The ledger trusts a bitmap the next backup will not use: say so, with the engine's reason.
  if (trusted && d.mode !== 'incremental' && i.lastBackup) return { state: 'invalid', reason: `${d.code}: ${d.reason}`, nextBackup: d };
  return { state: ledgerState, reason: ledgerReason, nextBackup: d };
}
