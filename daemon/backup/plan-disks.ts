/**
 * Disk planning: from what is known about each disk of a VM (config, QEMU's or qemu-img's view, the
 * last committed backup, the ledger), the job of each disk: how it is read, in which mode, from which
 * bitmap, and which new bitmap it starts. Pure, so that every rule is checked by a table
 * (test/daemon/backup/plan-disks.test.ts).
 *
 * Three kinds of job:
 * - `fleece`: a running VM's disk that QEMU holds; read from the point-in-time view (fleece-session.ts).
 *   A new bitmap always starts, persistent when both the configured format and QEMU's format node
 *   are one whose bitmaps persist (bitmap-persistence.ts), transient otherwise.
 * - `image`: a stopped VM's disk, read from its image (qemu-nbd). Only an image whose bitmaps persist
 *   gets a new bitmap (transient ones would vanish with qemu-nbd); the pve-cbt bitmaps it has now are
 *   the old ones, dropped once the backup is committed.
 * - `volume`: a running VM's volume that QEMU does not hold (tpmstate0, which qemu-server hands to
 *   swtpm): read from its volume, shared, without a bitmap: full, or full-compare once backed up.
 * A running VM's disk that is neither in QEMU nor such a volume is CBT_BACKUP_DISK_MISMATCH.
 *
 * Rules:
 * - mode: mode-decision.ts (an incremental reads the bitmap the last committed backup started; the
 *   disk's volume id and path are compared with the ledger's, which sees a `qm disk move`);
 *   `forceFull` makes every disk `full` (code `forced-full`), still starting a new bitmap;
 * - an RBD disk (`storage` facts) also takes an RBD snapshot at each backup; a full-compare for a
 *   bitmap reason becomes `incremental-storage` when the last backup's snapshot is still there
 *   (storage-delta.ts `storageDecision`);
 * - generation of the new bitmap: one more than any seen, in QEMU or the image (own bitmaps of the
 *   drive), in the last committed manifest or in the ledger, so a name is never reused.
 */
import type { QemuDisk } from '../qmp/query-disks';
import type { VmDisk } from '../pve/vm-disks';
import { BackupDiskMismatchError } from './backup-errors';
import { bitmapName, ownBitmapsOf, parseBitmapName } from './bitmap-names';
import { bitmapPersists } from './bitmap-persistence';
import type { LastDiskBackup } from './last-backups';
import { decideMode, forcedFull, type BitmapView, type LastBackupView, type LedgerView, type ModeDecision, type QemuIdentity } from './mode-decision';
import type { RbdImage } from '../pve/rbd-volume';
import { storageDecision, type StorageFacts } from './storage-delta';

/** qemu-server gives these volumes to another program (swtpm), never to QEMU as a block device. */
const VOLUMES_OUTSIDE_QEMU: ReadonlySet<string> = new Set(['tpmstate0']);

/** Whether a running VM's disk missing in QEMU is read from its volume instead. */
export function readFromVolume(disk: Pick<VmDisk, 'key'>): boolean {
  return VOLUMES_OUTSIDE_QEMU.has(disk.key);
}

export interface DiskFacts {
  readonly disk: VmDisk;
  /** The drive as a running QEMU lists it; absent when QEMU does not hold it (or the VM is stopped). */
  readonly qemuDisk?: QemuDisk;
  /** What qemu-img reports of the image: a stopped VM's disk, or a volume QEMU does not hold. */
  readonly image?: { readonly virtualSize: number; readonly bitmaps: readonly BitmapView[] };
  readonly last: LastDiskBackup | undefined;
  /** The ledger's record of the disk, undefined when it has none. */
  readonly ledger: LedgerView | undefined;
  /** An RBD disk: its image and what its snapshots say (rbd-storage-facts.ts). */
  readonly storage?: StorageJob;
}

export interface StorageJob {
  readonly image: RbdImage;
  readonly facts: StorageFacts;
}

export interface PlanFacts {
  readonly vmid: number;
  /** The running QEMU; undefined when the VM is stopped. */
  readonly qemu: QemuIdentity | undefined;
  readonly granularity: number;
  readonly disks: readonly DiskFacts[];
  /** Every disk full, whatever the bitmaps say (`backup --mode full`); the reason says so. */
  readonly forceFull?: boolean;
}

export interface NewBitmap {
  readonly name: string;
  readonly generation: number;
}

interface JobBase {
  readonly disk: VmDisk;
  readonly size: number;
  readonly decision: ModeDecision;
  readonly last: LastDiskBackup | undefined;
  /** The bitmap an incremental reads (the one the last committed backup started). */
  readonly readBitmap: string | undefined;
  /** Set for an RBD disk: it takes a pve-cbt snapshot (storage-snapshots.ts). */
  readonly storage?: StorageJob;
}

export interface FleeceJob extends JobBase {
  readonly kind: 'fleece';
  readonly qemuDisk: QemuDisk;
  readonly newBitmap: NewBitmap;
  readonly persistent: boolean;
}

/** The bitmap an image job adds, and the pve-cbt bitmaps of the drive the image has now. */
export interface ImageBitmaps {
  readonly added: NewBitmap;
  readonly old: readonly string[];
}

export interface ImageJob extends JobBase {
  readonly kind: 'image';
  /** Set when the image keeps bitmaps (bitmap-persistence.ts). */
  readonly bitmaps: ImageBitmaps | undefined;
}

export interface VolumeJob extends JobBase {
  readonly kind: 'volume';
}

export type DiskJob = FleeceJob | ImageJob | VolumeJob;

/** The bitmap a committed job leaves recording (and the ledger marks valid), if any. */
export function newBitmapOf(j: DiskJob): NewBitmap | undefined {
  if (j.kind === 'fleece') return j.newBitmap;
  if (j.kind === 'image') return j.bitmaps?.added;
  return undefined;
}

export function planDisks(facts: PlanFacts): DiskJob[] {
  return facts.disks.map((f) => planDisk(facts, f));
}

function planDisk(facts: PlanFacts, f: DiskFacts): DiskJob {
  const { disk, last } = f;
  if (facts.qemu && f.qemuDisk) {
    const qd = f.qemuDisk;
    const decision = decide(facts, f, qd.size, qd.bitmaps);
    return {
      kind: 'fleece',
      disk,
      ...(f.storage ? { storage: f.storage } : {}),
      size: qd.size,
      decision,
      last,
      readBitmap: readBitmapOf(decision, last),
      qemuDisk: qd,
      newBitmap: nextBitmap(f, qd.bitmaps),
      persistent: bitmapPersists(disk.format) && bitmapPersists(qd.format),
    };
  }
  if (facts.qemu && f.image && readFromVolume(disk)) {
    const auto: ModeDecision = last
      ? { mode: 'full-compare', code: 'not-in-qemu', reason: `${disk.key} is not a QEMU block device (swtpm holds it); no bitmap is possible` }
      : { mode: 'full', code: 'first-backup', reason: `no committed backup of ${disk.key} yet` };
    const decision = facts.forceFull ? forcedFull(auto) : auto;
    return { kind: 'volume', disk, size: f.image.virtualSize, decision, last, readBitmap: undefined };
  }
  if (facts.qemu || !f.image) {
    throw BackupDiskMismatchError({ vmid: facts.vmid, disk: disk.key, reason: 'in the VM config but not attached in QEMU' });
  }
  const image = f.image;
  const decision = decide(facts, f, image.virtualSize, image.bitmaps);
  return {
    kind: 'image',
    disk,
    ...(f.storage ? { storage: f.storage } : {}),
    size: image.virtualSize,
    decision,
    last,
    readBitmap: readBitmapOf(decision, last),
    bitmaps: bitmapPersists(disk.format)
      ? { added: nextBitmap(f, image.bitmaps), old: ownBitmapsOf(image.bitmaps, disk.key).map((b) => b.name) }
      : undefined,
  };
}

function decide(facts: PlanFacts, f: DiskFacts, size: number, bitmaps: readonly BitmapView[]): ModeDecision {
  const auto = decideMode({
    disk: f.disk.key,
    format: f.disk.format,
    diskSize: size,
    vmRunning: facts.qemu !== undefined,
    lastBackup: f.last,
    ledger: f.ledger,
    bitmaps,
    qemu: facts.qemu,
    expectedGranularity: facts.granularity,
    volume: { volid: f.disk.volid, path: f.disk.path },
  });
  return facts.forceFull ? forcedFull(auto) : storageDecision(auto, f.storage?.facts);
}

function readBitmapOf(decision: ModeDecision, last: LastBackupView | undefined): string | undefined {
  return decision.mode === 'incremental' ? last?.bitmap?.name : undefined;
}

function nextBitmap(f: DiskFacts, bitmaps: readonly BitmapView[]): NewBitmap {
  const gens = ownBitmapsOf(bitmaps, f.disk.key).map((b) => parseBitmapName(b.name)?.generation ?? 0);
  const generation = Math.max(0, ...gens, f.last?.bitmap?.generation ?? 0, f.ledger?.generation ?? 0) + 1;
  return { name: bitmapName(f.disk.key, generation), generation };
}
