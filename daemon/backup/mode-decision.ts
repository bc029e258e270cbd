/**
 * Per-disk backup mode decision: full, incremental or full-compare, with a stable reason code and a
 * human sentence. Pure, so that every row of the decision table is unit-tested.
 *
 * An incremental is allowed only when ALL of these agree (defense in depth):
 * - the repository has a committed backup of this disk, of the same size, that started a bitmap;
 * - the ledger (fed by lifecycle hooks) says that bitmap is valid (or only suspect after a crash,
 *   which QEMU's `inconsistent` flag then settles), under the same name and generation;
 * - QEMU itself (or `qemu-img info` for a stopped qcow2) shows the bitmap under that name: recording,
 *   not inconsistent, not busy, with the expected granularity;
 * - for a transient bitmap (raw/vmdk), QEMU's pid and start time equal those the ledger recorded;
 * - the disk is still the volume the ledger recorded (volume id and path): `qm disk move` and
 *   attaching another volume under the same key fire no Proxmox hook, so this is how they are seen.
 * A catalog/ledger entry alone never makes a disk eligible; QEMU's own view is always checked.
 * When sides disagree the reason names both, so an operator can see which one was wrong.
 */
import type { DiskFormat } from '../pve/vm-config';
import { bitmapPersists } from './bitmap-persistence';
import type { BackupMode } from '../repository/manifest';
import type { BitmapState } from '../ledger/ledger-rules';

export type { BackupMode };

export type ReasonCode =
  | 'first-backup'
  | 'bitmap-valid'
  | 'disk-resized'
  | 'no-bitmap-recorded'
  | 'ledger-no-record'
  | 'ledger-invalid'
  | 'ledger-mismatch'
  | 'stopped-transient'
  | 'bitmap-missing'
  | 'bitmap-generation-mismatch'
  | 'bitmap-inconsistent'
  | 'bitmap-not-recording'
  | 'bitmap-busy'
  | 'bitmap-granularity'
  | 'qemu-restarted'
  | 'not-in-qemu'
  | 'forced-full'
  | 'volume-changed'
  /** incremental-storage: the RBD snapshot of the last backup stands in for the bitmap (storage-delta.ts). */
  | 'storage-delta'
  /** full-compare: the RBD image was rolled back to an older snapshot since the last backup. */
  | 'storage-rolled-back';

export interface LastBackupView {
  readonly backupId: string;
  readonly size: number;
  /** The bitmap this backup started (from its manifest); absent when it started none. */
  readonly bitmap?: { readonly name: string; readonly generation: number };
}

export interface LedgerView {
  readonly state: BitmapState;
  readonly reason?: string | null;
  readonly bitmapName?: string | null;
  readonly generation?: number | null;
  readonly qemuPid?: number | null;
  readonly qemuStartTime?: number | null;
  /** Volume id and path the record was made for; null or absent when not recorded. */
  readonly volid?: string | null;
  readonly path?: string | null;
}

/** What QEMU (or `qemu-img info` offline) reports for a bitmap. */
export interface BitmapView {
  readonly name: string;
  readonly granularity: number;
  readonly recording: boolean;
  readonly busy: boolean;
  readonly persistent: boolean;
  readonly inconsistent: boolean;
}

export interface QemuIdentity {
  readonly pid: number;
  readonly startTime: number;
}

export interface ModeInput {
  readonly disk: string;
  readonly format: DiskFormat;
  readonly diskSize: number;
  readonly vmRunning: boolean;
  readonly lastBackup: LastBackupView | undefined;
  /** Ledger record of this disk; undefined when the ledger has none. */
  readonly ledger: LedgerView | undefined;
  /** All bitmaps QEMU (or qemu-img) lists for this disk's format node, any owner. */
  readonly bitmaps: readonly BitmapView[];
  /** The running QEMU's identity; undefined when stopped. */
  readonly qemu: QemuIdentity | undefined;
  readonly expectedGranularity: number;
  /** The disk's volume now (config volume id, `pvesm path`); compared with the ledger's record. */
  readonly volume?: { readonly volid: string; readonly path: string };
}

export interface ModeDecision {
  readonly mode: BackupMode;
  readonly code: ReasonCode;
  readonly reason: string;
}

function fullCompare(code: ReasonCode, reason: string): ModeDecision {
  return { mode: 'full-compare', code, reason };
}

function ledgerText(l: LedgerView): string {
  const name = l.bitmapName ? ` for ${l.bitmapName}` : '';
  return `ledger says ${l.state}${name}${l.reason ? ` (${l.reason})` : ''}`;
}

export function decideMode(input: ModeInput): ModeDecision {
  const { lastBackup: last, ledger } = input;
  if (!last) return { mode: 'full', code: 'first-backup', reason: `no committed backup of ${input.disk} yet` };
  const moved = volumeChange(input.volume, ledger);
  if (moved) return fullCompare('volume-changed', `${input.disk} ${moved} since the ledger recorded its bitmap (qm disk move, or another volume attached); compared against backup ${last.backupId}`);
  if (last.size !== input.diskSize) {
    return fullCompare('disk-resized', `disk size ${input.diskSize} differs from ${last.size} in backup ${last.backupId}`);
  }
  if (!last.bitmap) return fullCompare('no-bitmap-recorded', `backup ${last.backupId} started no bitmap`);
  const expected = last.bitmap.name;
  if (!ledger || ledger.state === 'unknown') {
    return fullCompare('ledger-no-record', `ledger has no valid record of ${expected}; QEMU is not trusted alone`);
  }
  if (ledger.state === 'invalid') return fullCompare('ledger-invalid', `${ledgerText(ledger)}`);
  if (ledger.bitmapName !== expected || ledger.generation !== last.bitmap.generation) {
    return fullCompare(
      'ledger-mismatch',
      `${ledgerText(ledger)} generation ${ledger.generation ?? 'none'}, but backup ${last.backupId} started ${expected} generation ${last.bitmap.generation}`,
    );
  }
  const transient = !bitmapPersists(input.format);
  if (!input.vmRunning && transient) {
    return fullCompare('stopped-transient', `${input.format} disk of a stopped VM keeps no bitmap (${ledgerText(ledger)})`);
  }
  const bitmap = input.bitmaps.find((b) => b.name === expected);
  const where = input.vmRunning ? 'QEMU' : 'the qcow2 image';
  if (!bitmap) {
    const others = input.bitmaps.filter((b) => b.name.startsWith(expected.replace(/-g\d+$/, '-g'))).map((b) => b.name);
    if (others.length > 0) {
      return fullCompare('bitmap-generation-mismatch', `${ledgerText(ledger)}, but ${where} has ${others.join(', ')} instead of ${expected}`);
    }
    return fullCompare('bitmap-missing', `${ledgerText(ledger)}, but ${where} has no bitmap ${expected}`);
  }
  if (bitmap.inconsistent) return fullCompare('bitmap-inconsistent', `${ledgerText(ledger)}, but ${where} marks ${expected} inconsistent`);
  if (!bitmap.recording) return fullCompare('bitmap-not-recording', `${ledgerText(ledger)}, but ${where} reports ${expected} not recording`);
  if (bitmap.busy) return fullCompare('bitmap-busy', `${ledgerText(ledger)}, but ${where} reports ${expected} busy`);
  if (bitmap.granularity !== input.expectedGranularity) {
    return fullCompare('bitmap-granularity', `${expected} has granularity ${bitmap.granularity}, expected ${input.expectedGranularity}`);
  }
  if (!bitmap.persistent) {
    const now = input.qemu;
    if (!now || ledger.qemuPid !== now.pid || ledger.qemuStartTime !== now.startTime) {
      const then = `pid ${ledger.qemuPid ?? '?'} started ${ledger.qemuStartTime ?? '?'}`;
      const cur = now ? `pid ${now.pid} started ${now.startTime}` : 'no QEMU';
      return fullCompare('qemu-restarted', `ledger recorded transient ${expected} under QEMU ${then}, but QEMU is now ${cur}`);
    }
  }
  const suspect = ledger.state === 'suspect' ? ` (ledger suspect: ${ledger.reason ?? 'unclean stop'}; ${where} reports it consistent)` : '';
  return { mode: 'incremental', code: 'bitmap-valid', reason: `${expected} is valid in ledger and ${where}${suspect}` };
}

/**
 * The decision when a full backup was asked for (`pve-cbt backup --mode full`): read every allocated
 * block whatever the bitmaps say, and say so in the manifest. `otherwise` is what would have been
 * done, kept in the reason so the log shows what the full replaced.
 */
export function forcedFull(otherwise: ModeDecision): ModeDecision {
  return { mode: 'full', code: 'forced-full', reason: `full backup requested (--mode full); otherwise ${otherwise.mode} (${otherwise.code})` };
}

/** How the disk's volume differs from the one the ledger recorded, or undefined (same, or not recorded). */
function volumeChange(now: ModeInput['volume'], ledger: LedgerView | undefined): string | undefined {
  if (!now || !ledger) return undefined;
  if (ledger.volid && ledger.volid !== now.volid) return `is volume ${now.volid}, was ${ledger.volid}`;
  if (ledger.path && ledger.path !== now.path) return `is at ${now.path}, was at ${ledger.path}`;
  return undefined;
}

/** The reason as recorded in manifests and logs: `code: sentence`. */
export function formatReason(d: ModeDecision): string {
  return `${d.code}: ${d.reason}`;
}
