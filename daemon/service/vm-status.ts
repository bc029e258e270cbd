/**
 * What `pve-cbt status` shows per disk: format, the bitmap pve-cbt tracks, its state and reason as
 * the next backup would judge them (status-check.ts: ledger, last backup and QEMU's own view; the
 * ledger's alone in `ledgerState`), the next backup's mode, the dirty bytes QEMU reports now, and
 * the last committed backup. Per VM also the task working on it now (a running backup with its
 * progress). QEMU is asked in one short QMP session per running VM; a stopped VM's qcow2 images
 * are read from their own header (backup/qcow2-header.ts), other images and what that reader is not
 * sure of by qemu-img; a VM whose QMP socket is busy or broken still reports the ledger's view, with the QMP
 * problem named. An RBD disk (QEMU's drive name or the stopped VM's `pvesm path` is an rbd name)
 * whose last backup recorded a pve-cbt snapshot also has its snapshots listed, exactly as the
 * planner reads them (rbd-storage-facts.ts), so `incremental-storage` is shown as the next mode when
 * it will be; one bounded `rbd snap ls` per such disk, and a Ceph that does not answer in time only
 * costs that disk its storage facts (logged, the bitmap's view is shown).
 */
import type { Logger } from 'winston';
import { isCbtError } from '../../shared/errors/cbt-error';
import { DEFAULT_GRANULARITY } from '../backup/backup-options';
import { isOwnName } from '../backup/bitmap-names';
import { imageInfo, type ImageInfo } from '../backup/image-export';
import { readQcow2Facts } from '../backup/qcow2-header';
import { readStorageFacts } from '../backup/rbd-storage-facts';
import type { StorageFacts } from '../backup/storage-delta';
import { parseRbdName } from '../pve/rbd-volume';
import { listBackupsFromCatalog } from '../catalog/catalog-sync';
import { lastBackupsByDisk, type LastDiskBackup } from '../backup/last-backups';
import type { ModeDecision } from '../backup/mode-decision';
import { withQmp } from '../qmp/qmp-session';
import { queryDisks, type QemuDisk } from '../qmp/query-disks';
import { qmpSocketPath, readQemuProcess } from '../pve/qemu-process';
import { readVmConfig, resolveVmDisks } from '../pve/vm-disks';
import type { VmConfig } from '../pve/vm-config';
import type { Services } from './services';
import { listNodeVmids } from './select-vms';
import { checkDisk } from './status-check';
import type { TaskRecord } from './task-records';

export interface DiskStatus {
  disk: string;
  format: string;
  bitmap: string | null;
  /**
   * As the next backup judges it: the ledger's state, `invalid` when QEMU contradicts it, or `storage`
   * when the next backup is incremental-storage (status-check.ts).
   */
  state: string;
  reason: string | null;
  /** The ledger's own record (fed by the hooks), before QEMU was asked. */
  ledgerState: string;
  /** The next backup's mode and reason; null while a backup runs or when QEMU could not be asked. */
  nextBackup: ModeDecision | null;
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
  /** The task working on this VM now (queued or running), with its progress; null when none. */
  task: Pick<TaskRecord, 'id' | 'kind' | 'status' | 'queuedAt' | 'startedAt' | 'progress'> | null;
  disks: DiskStatus[];
}

/** Bound of the `rbd snap ls` status makes per RBD disk: status answers even when Ceph does not. */
const STATUS_RBD_TIMEOUT_MS = 5000;

/**
 * What qemu-img says of a stopped VM's images, by disk key (a disk it cannot read is left out), and
 * each disk's path (`pvesm path`).
 */
async function imageViews(s: Services, conf: VmConfig, paths: Map<string, string>): Promise<Map<string, ImageInfo>> {
  const out = new Map<string, ImageInfo>();
  try {
    const disks = await resolveVmDisks(conf, { qemuServerConfigDir: s.config.qemuServerConfigDir, pvesmPath: s.config.pvesmPath });
    for (const d of disks) {
      paths.set(d.key, d.path);
      try {
        out.set(d.key, (d.format === 'qcow2' ? readQcow2Facts(d.path) : null) ?? (await imageInfo(d.path, d.format)));
      } catch (err) {
        s.logger.warn('status: qemu-img info failed', { vmid: conf.vmid, disk: d.key, error: (err as Error).message });
      }
    }
  } catch (err) {
    s.logger.warn('status: disks of a stopped VM not resolved', { vmid: conf.vmid, error: (err as Error).message });
  }
  return out;
}

function currentTask(s: Services, vmid: number): VmStatus['task'] {
  const h = s.queue.list().find((x) => x.vmid === vmid);
  if (!h) return null;
  return { id: h.id, kind: h.kind, status: h.state === 'running' ? 'running' : 'queued', queuedAt: h.queuedAt.toISOString(), startedAt: h.startedAt?.toISOString() ?? null, progress: h.progress ?? null };
}

async function qemuDisks(runDir: string, vmid: number, logger?: Logger): Promise<{ disks: QemuDisk[]; error: string | null }> {
  try {
    return { disks: await withQmp(qmpSocketPath(runDir, vmid), (q) => queryDisks(q), { timeoutMs: 5000 }), error: null };
  } catch (err) {
    logger?.warn('status: QMP query failed', { vmid, error: err });
    return { disks: [], error: isCbtError(err) ? `${err.code}: ${err.message}` : String(err) };
  }
}

/** The RBD snapshots' facts of a disk, as the planner gathers them (disk-facts.ts); undefined when not RBD. */
async function storageFactsOf(s: Services, vmid: number, disk: string, name: string | undefined, last: LastDiskBackup | undefined, vmgenid: string | undefined): Promise<StorageFacts | undefined> {
  const image = name === undefined ? undefined : parseRbdName(name);
  if (!image || !last?.storageSnapshot) return undefined;
  try {
    return await readStorageFacts(image, last.storageSnapshot, { last: last.vmgenid, now: vmgenid }, { timeoutMs: STATUS_RBD_TIMEOUT_MS });
  } catch (err) {
    s.logger.warn('status: RBD snapshots not listed', { vmid, disk, error: isCbtError(err) ? `${err.code}: ${err.message}` : String(err) });
    return undefined;
  }
}

export async function vmStatus(s: Services, vmid: number): Promise<VmStatus> {
  const conf = readVmConfig(s.config.qemuServerConfigDir, vmid);
  const proc = readQemuProcess(s.config.qemuServerRunDir, vmid);
  const task = currentTask(s, vmid);
  const q = proc ? await qemuDisks(s.config.qemuServerRunDir, vmid, s.logger) : { disks: [], error: null };
  const paths = new Map<string, string>();
  const images = proc ? new Map<string, ImageInfo>() : await imageViews(s, conf, paths);
  const backups = await listBackupsFromCatalog(s, vmid);
  // The catalog's list (not a second listing of the repository); only the newest manifests are read.
  const lastByDisk = await lastBackupsByDisk({ listBackups: async () => backups, readManifest: (id) => s.repo.readManifest(id) }, vmid);
  const vmgenid = conf.entries.vmgenid?.trim() || undefined;
  const storage = new Map<string, StorageFacts>();
  for (const d of conf.disks) {
    const name = proc ? q.disks.find((x) => x.drive === d.key)?.file : paths.get(d.key);
    const facts = await storageFactsOf(s, vmid, d.key, name, lastByDisk.get(d.key), vmgenid);
    if (facts) storage.set(d.key, facts);
  }
  const disks = conf.disks.map((d): DiskStatus => {
    const rec = s.ledger.get(vmid, d.key);
    const qd = q.disks.find((x) => x.drive === d.key);
    const facts = storage.get(d.key);
    const own = qd?.bitmaps.find((b) => b.name === rec?.bitmapName) ?? qd?.bitmaps.find((b) => isOwnName(b.name));
    const last = [...backups].reverse().find((b) => b.disks.some((x) => x.name === d.key));
    const img = images.get(d.key);
    const check = checkDisk({
      disk: d.key,
      format: d.format,
      size: proc ? qd?.size : img?.virtualSize,
      vmRunning: proc !== undefined,
      qemu: proc ? { pid: proc.pid, startTime: proc.startTime } : undefined,
      lastBackup: lastByDisk.get(d.key),
      ledger: rec,
      bitmaps: proc ? (q.error ? undefined : (qd?.bitmaps ?? [])) : img?.bitmaps,
      granularity: DEFAULT_GRANULARITY,
      taskRunning: task?.status === 'running' && task.kind === 'backup',
      ...(facts ? { storage: facts } : {}),
    });
    return {
      disk: d.key,
      format: qd?.format ?? d.format,
      bitmap: own?.name ?? rec?.bitmapName ?? null,
      state: check.state,
      reason: check.reason,
      ledgerState: rec?.state ?? 'unknown',
      nextBackup: check.nextBackup,
      since: rec?.changedAt ?? null,
      dirtyBytes: own ? own.count : null,
      lastBackup: last ? { id: last.id, time: last.time.toISOString(), mode: last.disks.find((x) => x.name === d.key)?.mode ?? '' } : null,
    };
  });
  return { vmid, running: proc !== undefined, qemuPid: proc?.pid ?? null, vzdumpBusy: s.ledger.isVzdumpBusy(vmid), qmpError: q.error, task, disks };
}

export async function nodeStatus(s: Services, vmid?: number): Promise<VmStatus[]> {
  const ids = vmid === undefined ? listNodeVmids(s.config.qemuServerConfigDir) : [vmid];
  const out: VmStatus[] = [];
  for (const id of ids) out.push(await vmStatus(s, id));
  return out;
}
