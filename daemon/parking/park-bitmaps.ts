/**
 * Parking: while no QEMU has a stopped VM's qcow2 image open, pve-cbt's bitmaps are not in it, so
 * that Proxmox's own offline operations on the image (`qemu-img snapshot -a` for `qm rollback`,
 * which refuses "Device has active dirty bitmaps", and `snapshot -c/-d`, `resize`, `check -r`,
 * `amend`) behave exactly as without pve-cbt.
 *
 * - park (post-stop, after an offline backup, at daemon start for stopped VMs): every pve-cbt
 *   bitmap of the image is copied into a sidecar qcow2 under stateDir
 *   (`qemu-img bitmap --add --merge NAME -b IMAGE -F qcow2 SIDECAR NAME`), removed from the image
 *   (`--remove`), and the image's identity is recorded (image-identity.ts). A bitmap QEMU left
 *   inconsistent (`in-use`, after a crash) is removed without being kept, and the disk is invalidated.
 * - unpark (pre-start, before an offline backup): only when the identity is provably unchanged are
 *   the bitmaps merged back into the image; otherwise they are dropped and the ledger marks the
 *   disk invalid with a reason naming what changed, so its next backup is a full-compare. A put-back
 *   that fails or runs out of time drops them too (fail-open: the VM starts, the next backup compares).
 *
 * Locking: the caller holds Proxmox's per-VM lock (pve-lock.ts), either itself (offline backup,
 * daemon start) or through Proxmox (`qm start` around pre-start, `qm cleanup` around post-stop).
 * Within the daemon, one VM's parking steps run one at a time (`serialise`).
 */
import fs from 'node:fs';
import type { Logger } from 'winston';
import { isOwnName } from '../backup/bitmap-names';
import { imageInfo } from '../backup/image-export';
import { programPath } from '../proc/external-programs';
import { run } from '../proc/run-process';
import { identityChanges, readImageIdentity } from './image-identity';
import { dropRecord, ensureParkedDir, readRecords, sidecarPath, takeHookDropMarkers, writeImageList, writeRecord, type ParkedBitmap, type ParkedRecord, type VmImage } from './park-store';
import { ParkingTimeUpError } from './parking-errors';

export interface ParkingContext {
  readonly stateDir: string;
  readonly qemuImg?: string;
  readonly logger?: Logger;
  /** Marks a disk's bitmap invalid in the ledger: its next backup is a full-compare for `reason`. */
  readonly invalidate: (vmid: number, disk: string, reason: string) => void;
}

export interface ParkDisk {
  readonly key: string;
  readonly path: string;
  readonly format: string;
}

export type UnparkOutcome =
  | { disk: string; outcome: 'restored'; bitmaps: string[] }
  | { disk: string; outcome: 'changed'; reason: string }
  | { disk: string; outcome: 'failed'; reason: string };

/** Default bound for one qemu-img call outside a hook (parking after a backup, at daemon start). */
const TOOL_TIMEOUT_MS = 60_000;

const chains = new Map<number, Promise<unknown>>();

/** Runs `fn` after every earlier parking step of the same VM in this process. */
export function serialise<T>(vmid: number, fn: () => Promise<T>): Promise<T> {
  const prev = chains.get(vmid) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const tail = next.catch(() => undefined);
  chains.set(vmid, tail);
  void tail.then(() => {
    if (chains.get(vmid) === tail) chains.delete(vmid);
  });
  return next;
}

function qemuImgOf(ctx: ParkingContext): string {
  return ctx.qemuImg ?? programPath('qemu-img');
}

/** Moves the pve-cbt bitmaps of one stopped qcow2 image into its sidecar. Returns the names kept. */
export async function parkDisk(ctx: ParkingContext, vmid: number, disk: ParkDisk): Promise<string[]> {
  if (disk.format !== 'qcow2') return [];
  const qemuImg = qemuImgOf(ctx);
  const info = await imageInfo(disk.path, 'qcow2', qemuImg);
  const own = info.bitmaps.filter((b) => isOwnName(b.name));
  if (own.length === 0) return [];
  const keep = own.filter((b) => !b.inconsistent);
  const previous = readRecords(ctx.stateDir, vmid).find((r) => r.disk === disk.key);
  if (previous) {
    // Bitmaps in the image and a record too: the image came back into use without the daemon.
    dropRecord(ctx.stateDir, vmid, disk.key);
  }
  const sidecar = sidecarPath(ctx.stateDir, vmid, disk.key);
  ensureParkedDir(ctx.stateDir, vmid);
  fs.rmSync(sidecar, { force: true });
  const bitmaps: ParkedBitmap[] = keep.map((b) => ({ name: b.name, granularity: b.granularity, enabled: b.recording }));
  if (bitmaps.length > 0) {
    await run(qemuImg, ['create', '-q', '-f', 'qcow2', '--', sidecar, String(info.virtualSize)], TOOL_TIMEOUT_MS);
    for (const b of bitmaps) {
      const args = ['bitmap', '--add', '-g', String(b.granularity), '--merge', b.name, '-b', disk.path, '-F', 'qcow2'];
      if (!b.enabled) args.push('--disable');
      await run(qemuImg, [...args, '-f', 'qcow2', '--', sidecar, b.name], TOOL_TIMEOUT_MS);
    }
  }
  for (const b of own) await run(qemuImg, ['bitmap', '--remove', '-f', 'qcow2', '--', disk.path, b.name], TOOL_TIMEOUT_MS);
  const dropped = own.filter((b) => b.inconsistent).map((b) => b.name);
  if (dropped.length > 0) ctx.invalidate(vmid, disk.key, `bitmap ${dropped.join(', ')} was inconsistent (QEMU did not close the image cleanly); removed when parked`);
  if (bitmaps.length === 0) {
    fs.rmSync(sidecar, { force: true });
    return [];
  }
  const identity = await readImageIdentity(disk.path);
  writeRecord(ctx.stateDir, { version: 1, vmid, disk: disk.key, path: disk.path, parkedAt: new Date().toISOString(), bitmaps, identity });
  ctx.logger?.info('bitmaps parked outside the stopped image', { vmid, disk: disk.key, bitmaps: bitmaps.map((b) => b.name) });
  return bitmaps.map((b) => b.name);
}

/** Puts one record's bitmaps back into its image if it is provably unchanged; drops them otherwise. */
export async function unparkDisk(ctx: ParkingContext, r: ParkedRecord, timeoutMs = TOOL_TIMEOUT_MS): Promise<UnparkOutcome> {
  const qemuImg = qemuImgOf(ctx);
  const sidecar = sidecarPath(ctx.stateDir, r.vmid, r.disk);
  let changes: string[];
  try {
    changes = identityChanges(r.identity, await readImageIdentity(r.path));
  } catch (err) {
    changes = [`image unreadable (${(err as Error).message})`];
  }
  if (!fs.existsSync(sidecar)) changes.push('sidecar missing');
  if (changes.length > 0) {
    dropRecord(ctx.stateDir, r.vmid, r.disk);
    const reason = `image changed while the VM was stopped: ${changes.join('; ')}`;
    ctx.invalidate(r.vmid, r.disk, reason);
    ctx.logger?.warn(`parked bitmaps dropped: ${reason}`, { vmid: r.vmid, disk: r.disk });
    return { disk: r.disk, outcome: 'changed', reason };
  }
  const t0 = Date.now();
  try {
    for (const b of r.bitmaps) {
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw ParkingTimeUpError({ vmid: r.vmid, disk: r.disk, timeoutMs });
      const args = ['bitmap', '--add', '-g', String(b.granularity), '--merge', b.name, '-b', sidecar, '-F', 'qcow2'];
      if (!b.enabled) args.push('--disable');
      await run(qemuImg, [...args, '-f', 'qcow2', '--', r.path, b.name], left);
    }
  } catch (err) {
    dropRecord(ctx.stateDir, r.vmid, r.disk);
    const reason = `parked bitmaps could not be put back: ${(err as Error).message}`;
    ctx.invalidate(r.vmid, r.disk, reason);
    ctx.logger?.warn(reason, { vmid: r.vmid, disk: r.disk });
    return { disk: r.disk, outcome: 'failed', reason };
  }
  dropRecord(ctx.stateDir, r.vmid, r.disk);
  ctx.logger?.info('parked bitmaps put back into the unchanged image', { vmid: r.vmid, disk: r.disk, bitmaps: r.bitmaps.map((b) => b.name) });
  return { disk: r.disk, outcome: 'restored', bitmaps: r.bitmaps.map((b) => b.name) };
}

/** Parks every qcow2 disk of a stopped VM; a disk that fails is logged and left as it is. */
export async function parkVm(ctx: ParkingContext, vmid: number, disks: readonly ParkDisk[]): Promise<void> {
  applyHookDrops(ctx, vmid);
  const qcow2 = disks.filter((d) => d.format === 'qcow2');
  if (qcow2.length > 0) writeImageList(ctx.stateDir, vmid, qcow2.map((d): VmImage => ({ disk: d.key, path: d.path })));
  for (const d of qcow2) {
    try {
      await parkDisk(ctx, vmid, d);
    } catch (err) {
      ctx.logger?.warn('parking bitmaps failed; they stay in the image', { vmid, disk: d.key, error: (err as Error).message });
    }
  }
}

/**
 * Puts back every parked disk of a VM within `timeoutMs` in all (disks run side by side, each
 * bounded by what is left). Never throws.
 */
export async function unparkVm(ctx: ParkingContext, vmid: number, timeoutMs = TOOL_TIMEOUT_MS): Promise<UnparkOutcome[]> {
  applyHookDrops(ctx, vmid);
  const records = readRecords(ctx.stateDir, vmid, (disk, problem) => ctx.invalidate(vmid, disk, `parked-bitmap record unusable (${problem})`));
  return Promise.all(
    records.map((r) =>
      unparkDisk(ctx, r, timeoutMs).catch((err: Error): UnparkOutcome => {
        dropRecord(ctx.stateDir, vmid, r.disk);
        ctx.invalidate(vmid, r.disk, `parked bitmaps could not be put back: ${err.message}`);
        return { disk: r.disk, outcome: 'failed', reason: err.message };
      }),
    ),
  );
}

/** A VM that started while the daemon was down ran without its parked bitmaps: they are stale. */
export function discardParked(ctx: ParkingContext, vmid: number, why: string): string[] {
  applyHookDrops(ctx, vmid);
  const dropped: string[] = [];
  for (const r of readRecords(ctx.stateDir, vmid)) {
    dropRecord(ctx.stateDir, vmid, r.disk);
    ctx.invalidate(vmid, r.disk, why);
    dropped.push(r.disk);
  }
  return dropped;
}

/** What hooks did without the daemon (hooks/park-fallback.ts) reaches the ledger here. */
export function applyHookDrops(ctx: ParkingContext, vmid: number): void {
  for (const m of takeHookDropMarkers(ctx.stateDir, vmid)) {
    ctx.invalidate(vmid, m.disk, m.reason || 'a hook removed the bitmaps while pve-cbt was down');
  }
}
