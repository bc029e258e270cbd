/**
 * Where the daemon moves pve-cbt's bitmaps in and out of stopped qcow2 images (park-bitmaps.ts):
 *
 * - lifecycle events (the hook waits for the reply, Proxmox holds the VM lock around the hook):
 *   post-stop parks the VM's bitmaps; pre-start puts them back within PRE_START budget (a pre-start
 *   with PVE_MIGRATED_FROM has nothing parked here); post-start records the VM's qcow2 images for the
 *   hooks' daemon-less fallback. Only live, first-seen events act; replayed spool lines never do,
 *   since the VM may have changed state since.
 * - offline backups (`withOfflineParking`): under Proxmox's flock, refused while the config carries
 *   a `lock:` property; parked bitmaps go back first (or the disk is invalidated), and everything is
 *   parked again when the backup ends, whatever its outcome.
 * - daemon start (`parkAtStartup`): stopped VMs are parked (under the flock; a VM locked now is
 *   left for its next event), running VMs whose bitmaps were still parked started without them
 *   while the daemon was down: those records are dropped and the disks invalidated.
 * A failure here is logged and never fails the hook, the backup's own result or the daemon start.
 */
import fs from 'node:fs';
import type { Logger } from 'winston';
import type { LifecycleEvent } from '../../shared/ipc/messages';
import type { Ledger } from '../ledger/ledger';
import { withPveLock } from '../pve/pve-lock';
import { readQemuProcess } from '../pve/qemu-process';
import { readVmDisks, vmConfigFile, type VmDisk } from '../pve/vm-disks';
import { configLock } from './config-lock';
import { discardParked, parkVm, serialise, unparkVm, type ParkingContext } from './park-bitmaps';
import { writeImageList } from './park-store';
import { ParkingVmLockedError } from './parking-errors';

export interface ParkingPaths {
  readonly stateDir: string;
  readonly qemuServerConfigDir: string;
  readonly qemuServerRunDir: string;
  readonly qemuServerLockDir: string;
  readonly pvesmPath: string;
  readonly hookTimeoutMs: number;
  readonly qemuImg?: string;
}

/**
 * How long a pre-start put-back may take: half the hook's bound (the hook waits at least that long
 * for the reply once Node has started), at most 1 s. qemu-img is killed at the bound, so no tool
 * still holds the image when QEMU opens it.
 */
export function preStartBudgetMs(hookTimeoutMs: number): number {
  return Math.max(25, Math.min(1000, Math.floor(hookTimeoutMs / 2)));
}

/** The parking paths of the daemon's config. */
export function parkingPaths(c: Pick<ParkingPaths, Exclude<keyof ParkingPaths, 'qemuImg'>>): ParkingPaths {
  return {
    stateDir: c.stateDir,
    qemuServerConfigDir: c.qemuServerConfigDir,
    qemuServerRunDir: c.qemuServerRunDir,
    qemuServerLockDir: c.qemuServerLockDir,
    pvesmPath: c.pvesmPath,
    hookTimeoutMs: c.hookTimeoutMs,
  };
}

export function parkingContext(p: Pick<ParkingPaths, 'stateDir' | 'qemuImg'>, ledger: Pick<Ledger, 'markInvalid'>, logger?: Logger): ParkingContext {
  return {
    stateDir: p.stateDir,
    ...(p.qemuImg ? { qemuImg: p.qemuImg } : {}),
    ...(logger ? { logger } : {}),
    invalidate: (vmid, disk, reason) => ledger.markInvalid(vmid, disk, reason, { format: 'qcow2' }),
  };
}

async function qcow2Disks(p: ParkingPaths, vmid: number): Promise<VmDisk[]> {
  const { disks } = await readVmDisks(vmid, { qemuServerConfigDir: p.qemuServerConfigDir, pvesmPath: p.pvesmPath });
  return disks.filter((d) => d.format === 'qcow2');
}

/** Acts on one live lifecycle event, before the hook gets its reply (except post-start's image list). */
export async function parkingOnEvent(p: ParkingPaths, ledger: Pick<Ledger, 'markInvalid'>, ev: LifecycleEvent, logger?: Logger): Promise<void> {
  if (ev.source !== 'hookscript' || ev.vmid === undefined) return;
  const vmid = ev.vmid;
  const ctx = parkingContext(p, ledger, logger);
  try {
    if (ev.phase === 'pre-start' && ev.migratedFrom === undefined) {
      await serialise(vmid, () => unparkVm(ctx, vmid, preStartBudgetMs(p.hookTimeoutMs)));
    } else if (ev.phase === 'post-stop') {
      await serialise(vmid, async () => {
        if (readQemuProcess(p.qemuServerRunDir, vmid)) return;
        await parkVm(ctx, vmid, await qcow2Disks(p, vmid));
      });
    } else if (ev.phase === 'post-start') {
      // Not awaited: only the hooks' fallback list, nothing the VM start waits for.
      void qcow2Disks(p, vmid)
        .then((disks) => {
          if (disks.length > 0) writeImageList(p.stateDir, vmid, disks.map((d) => ({ disk: d.key, path: d.path })));
        })
        .catch((err: Error) => logger?.debug('image list not written', { vmid, error: err.message }));
    }
  } catch (err) {
    logger?.warn('bitmap parking on a lifecycle event failed', { vmid, phase: ev.phase, error: (err as Error).message });
  }
}

/**
 * Runs an offline backup of a stopped VM: Proxmox's flock held throughout, parked bitmaps put back
 * before `fn` reads the images, all parked again after.
 */
export async function withOfflineParking<T>(p: ParkingPaths, ledger: Pick<Ledger, 'markInvalid'>, vmid: number, disks: readonly VmDisk[], fn: () => Promise<T>, logger?: Logger): Promise<T> {
  const ctx = parkingContext(p, ledger, logger);
  return withPveLock(p.qemuServerLockDir, vmid, () =>
    serialise(vmid, async () => {
      const lock = configLock(fs.readFileSync(vmConfigFile(p.qemuServerConfigDir, vmid), 'utf8'));
      if (lock !== undefined) throw ParkingVmLockedError({ vmid, lock });
      await unparkVm(ctx, vmid);
      try {
        return await fn();
      } finally {
        if (!readQemuProcess(p.qemuServerRunDir, vmid)) await parkVm(ctx, vmid, disks);
      }
    }),
  );
}

/** Daemon start: park stopped VMs, drop what running VMs left parked. Returns what it did, per VM. */
export async function parkAtStartup(p: ParkingPaths, ledger: Pick<Ledger, 'markInvalid'>, vmids: readonly number[], logger?: Logger): Promise<{ vmid: number; action: string }[]> {
  const ctx = parkingContext(p, ledger, logger);
  const out: { vmid: number; action: string }[] = [];
  for (const vmid of vmids) {
    try {
      if (readQemuProcess(p.qemuServerRunDir, vmid)) {
        const dropped = discardParked(ctx, vmid, 'the VM started while pve-cbt was down, so its parked bitmaps were not put back');
        if (dropped.length > 0) out.push({ vmid, action: `dropped stale parked bitmaps of ${dropped.join(', ')}` });
        continue;
      }
      const disks = await qcow2Disks(p, vmid);
      if (disks.length === 0) continue;
      await withPveLock(
        p.qemuServerLockDir,
        vmid,
        () =>
          serialise(vmid, async () => {
            const lock = configLock(fs.readFileSync(vmConfigFile(p.qemuServerConfigDir, vmid), 'utf8'));
            if (lock !== undefined) throw ParkingVmLockedError({ vmid, lock });
            if (readQemuProcess(p.qemuServerRunDir, vmid)) return;
            await parkVm(ctx, vmid, disks);
          }),
        2_000,
      );
      out.push({ vmid, action: 'parked' });
    } catch (err) {
      logger?.warn('parking at daemon start skipped', { vmid, error: (err as Error).message });
    }
  }
  return out;
}
