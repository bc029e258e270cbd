/**
 * What `pve-cbt status` shows per disk: format, the bitmap pve-cbt tracks, the ledger's state and
 * reason, the dirty bytes QEMU reports now, and the last committed backup. QEMU is asked in one
 * short QMP session per running VM; a VM whose QMP socket is busy or broken still reports the
 * ledger's view, with the QMP problem named.
 */
import type { Logger } from 'winston';
import { isCbtError } from '../../shared/errors/cbt-error';
import { isOwnName } from '../backup/bitmap-names';
import { withQmp } from '../qmp/qmp-session';
import { queryDisks, type QemuDisk } from '../qmp/query-disks';
import { qmpSocketPath, readQemuProcess } from '../pve/qemu-process';
import { readVmConfig } from '../pve/vm-disks';
import type { Services } from './services';
import { listNodeVmids } from './select-vms';

export interface DiskStatus {
  disk: string;
  format: string;
  bitmap: string | null;
  state: string;
  reason: string | null;
  since: string | null;
  dirtyBytes: number | null;
  lastBackup: { id: string; time: string; mode: string } | null;
}

export interface VmStatus {
  vmid: number;
  running: boolean;
  qemuPid: number | null;
  vzdumpBusy: boolean;
  qmpError: string | null;
  disks: DiskStatus[];
}

async function qemuDisks(runDir: string, vmid: number, logger?: Logger): Promise<{ disks: QemuDisk[]; error: string | null }> {
  try {
    return { disks: await withQmp(qmpSocketPath(runDir, vmid), (q) => queryDisks(q), { timeoutMs: 5000 }), error: null };
  } catch (err) {
    logger?.warn('status: QMP query failed', { vmid, error: err });
    return { disks: [], error: isCbtError(err) ? `${err.code}: ${err.message}` : String(err) };
  }
}

export async function vmStatus(s: Services, vmid: number): Promise<VmStatus> {
  const conf = readVmConfig(s.config.qemuServerConfigDir, vmid);
  const proc = readQemuProcess(s.config.qemuServerRunDir, vmid);
  const q = proc ? await qemuDisks(s.config.qemuServerRunDir, vmid, s.logger) : { disks: [], error: null };
  const backups = await s.repo.listBackups(vmid);
  const disks = conf.disks.map((d): DiskStatus => {
    const rec = s.ledger.get(vmid, d.key);
    const qd = q.disks.find((x) => x.drive === d.key);
    const own = qd?.bitmaps.find((b) => b.name === rec?.bitmapName) ?? qd?.bitmaps.find((b) => isOwnName(b.name));
    const last = [...backups].reverse().find((b) => b.disks.some((x) => x.name === d.key));
    return {
      disk: d.key,
      format: qd?.format ?? d.format,
      bitmap: own?.name ?? rec?.bitmapName ?? null,
      state: rec?.state ?? 'unknown',
      reason: rec?.reason ?? null,
      since: rec?.changedAt ?? null,
      dirtyBytes: own ? own.count : null,
      lastBackup: last ? { id: last.id, time: last.time.toISOString(), mode: last.disks.find((x) => x.name === d.key)?.mode ?? '' } : null,
    };
  });
  return { vmid, running: proc !== undefined, qemuPid: proc?.pid ?? null, vzdumpBusy: s.ledger.isVzdumpBusy(vmid), qmpError: q.error, disks };
}

export async function nodeStatus(s: Services, vmid?: number): Promise<VmStatus[]> {
  const ids = vmid === undefined ? listNodeVmids(s.config.qemuServerConfigDir) : [vmid];
  const out: VmStatus[] = [];
  for (const id of ids) out.push(await vmStatus(s, id));
  return out;
}
