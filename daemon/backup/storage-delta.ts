/**
 * Change tracking through the storage, for raw disks whose QEMU bitmap does not survive a restart:
 * mode `incremental-storage`. Pure rules, table-tested (test/daemon/backup/storage-delta.test.ts);
 * the Ceph calls are in storage-snapshots.ts and rbd-storage-facts.ts.
 *
 * RBD: every backup of an RBD disk takes a snapshot `pve-cbt-<time>-<random>` of the image at (or,
 * for a running VM, exactly at: the VM is paused around it and the fleecing transaction) the point
 * in time it reads, and records its name in the manifest (`extra.storageSnapshots`). After the
 * commit the previous pve-cbt snapshot is removed, so each image carries exactly one; Proxmox's own
 * snapshots are never touched. When the next backup finds the QEMU bitmap unusable (full-compare
 * for a bitmap reason: restart, crash, migration without bitmaps, ledger doubts), and the image still
 * has the snapshot the last backup recorded, it reads only `rbd diff --from-snap PREV IMAGE@NEW`
 * (mode incremental-storage, reason `storage-delta`). Extents of RADOS objects that did not exist
 * at PREV come back object-rounded (from the object's start): more bytes read, never fewer.
 *
 * A full-compare stays a full-compare when the reason is about the volume itself (another volume,
 * a resize), when the snapshot is gone, or when a `qm rollback` happened since. A rollback is seen
 * in the VM generation id: qemu-server gives the config a new `vmgenid` at every rollback
 * (QemuConfig.pm `__snapshot_rollback_hook`, so that the guest knows it was rolled back), and the
 * manifest keeps the config of the last backup. (RBD itself counts `rbd snap rollback` as writes:
 * `rbd diff` from PREV reported exactly the rolled-back ranges when tried here, but the rule does
 * not rely on that.) A VM without a vmgenid gives no such sign.
 */
import type { ByteRange } from './read-plan';
import type { ModeDecision, ReasonCode } from './mode-decision';

export const STORAGE_SNAPSHOT_PREFIX = 'pve-cbt-';

/** `pve-cbt-20261202T035400Z-1a2b3c`: sortable by time, unique by the random tail. */
export function storageSnapshotName(now: Date, randomHex: string): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${STORAGE_SNAPSHOT_PREFIX}${t}-${randomHex}`;
}

export function isOwnStorageSnapshot(name: string): boolean {
  return name.startsWith(STORAGE_SNAPSHOT_PREFIX);
}

/** What the storage says about a disk before the backup (rbd-storage-facts.ts). */
export interface StorageFacts {
  /** The snapshot the last backup recorded, when the image still has it. */
  readonly previous: string | undefined;
  /** The snapshot the last backup recorded (present or not). */
  readonly recorded: string | undefined;
  /** Every pve-cbt snapshot on the image now (all go once the new one is committed). */
  readonly own: readonly string[];
  /** The VM generation id (`vmgenid:`) at the last backup and now; a change means a rollback. */
  readonly generation?: { readonly last: string | undefined; readonly now: string | undefined };
}

/** Full-compare codes that are about the QEMU bitmap only: the storage can stand in for it. */
const BITMAP_REASONS: ReadonlySet<ReasonCode> = new Set<ReasonCode>([
  'no-bitmap-recorded',
  'ledger-no-record',
  'ledger-invalid',
  'ledger-mismatch',
  'stopped-transient',
  'bitmap-missing',
  'bitmap-generation-mismatch',
  'bitmap-inconsistent',
  'bitmap-not-recording',
  'bitmap-busy',
  'bitmap-granularity',
  'qemu-restarted',
]);

/** The mode of a disk that has storage facts, given the bitmap-based decision. */
export function storageDecision(auto: ModeDecision, facts: StorageFacts | undefined): ModeDecision {
  if (!facts || auto.mode !== 'full-compare' || !BITMAP_REASONS.has(auto.code)) return auto;
  if (!facts.recorded) return auto;
  if (!facts.previous) {
    return { ...auto, reason: `${auto.reason}; the RBD snapshot ${facts.recorded} of that backup is gone, so the storage cannot say what changed` };
  }
  const g = facts.generation;
  if (g && g.last !== undefined && g.now !== g.last) {
    return {
      mode: 'full-compare',
      code: 'storage-rolled-back',
      reason: `the VM generation id changed since the last backup (vmgenid ${g.last} -> ${g.now ?? 'none'}: qm rollback), so the RBD diff from ${facts.previous} is not used; ${auto.code}: ${auto.reason}`,
    };
  }
  return {
    mode: 'incremental-storage',
    code: 'storage-delta',
    reason: `QEMU's bitmap cannot be used (${auto.code}: ${auto.reason}); reading only what rbd diff --from-snap ${facts.previous} reports`,
  };
}

export interface RbdDiffExtent {
  readonly offset: number;
  readonly length: number;
  /** "true": data; "false": a hole now (discarded or rolled back to nothing): reads as zeroes. */
  readonly exists: string | boolean;
}

/** Every extent rbd diff reports is read (a hole reads as zeroes, which the backup must record too). */
export function diffRanges(extents: readonly RbdDiffExtent[]): ByteRange[] {
  return extents.filter((e) => e.length > 0).map((e) => ({ offset: e.offset, length: e.length }));
}
