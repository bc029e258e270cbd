/**
 * Backup of one VM: the engine's entry point (README.md draws one incremental's path through the files).
 *
 * Order of events (the bitmap and the manifest must never disagree in a way that loses changes):
 *   1. vzdump busy (ledger) → CBT_BACKUP_VZDUMP_BUSY; a qemu-server `lock:` in the config is waited
 *      out, bounded (wait-config-lock.ts). Disks come from the VM config (+ pvesm path, run while
 *      step 2 and the leftovers check go on: they need only the disks' keys).
 *   2. The repository writer is started first: it takes the VM's lock, so two engines never work on
 *      one VM, and only then are a crashed engine's leftovers in QEMU cleaned (recover-fleece.ts).
 *   3. Each disk is planned (plan-disks.ts) from the last committed backup, the ledger and QEMU's
 *      (or qemu-img's) own view of the bitmap (disk-facts.ts): its kind of job, mode and bitmaps.
 *   4. The jobs are read from their sources (backup-source.ts): a running VM's disks from one
 *      fleecing session, images (stopped VM, swtpm volume) through qemu-nbd; each disk over NBD
 *      (disk-backup.ts). Sources open in order and are read in order.
 *   5. The sources are checked to still be point-in-time and closed, the manifest is committed, and
 *      only then are the old bitmaps dropped and the ledger told the new ones are valid.
 *   Any failure before the commit aborts the writer (no manifest) and rolls the bitmaps back.
 */
import { qmpSocketPath, readQemuProcess, type QemuProcess } from '../pve/qemu-process';
import { resolveVmDisks, type VmDisk } from '../pve/vm-disks';
import { readSavedVmConfig, type SavedVmConfig } from '../pve/saved-vm-config';
import { parseVmConfig, type VmConfigDisk } from '../pve/vm-config';
import type { QemuDisk } from '../qmp/query-disks';
import type { BackupWriter } from '../repository/repository';
import { BackupAbortedError, BackupNoDisksError } from './backup-errors';
import { DEFAULT_GRANULARITY, workDirOf, type BackupResult, type BackupVmOptions, type DiskResult } from './backup-options';
import type { BackupSource } from './backup-source';
import { backupDisk } from './disk-backup';
import { gatherDiskFacts } from './disk-facts';
import { lastBackupsForBackup, vmgenidOf, type LastDiskBackup } from './last-backups';
import { newBitmapOf, planDisks, type DiskJob } from './plan-disks';
import { cleanupFleeceLeftovers } from './recover-fleece';
import { sourcesFor } from './vm-sources';
import { waitConfigUnlocked } from './wait-config-lock';
import { waitVzdumpDone } from './wait-vzdump';
import { withOfflineParking } from '../parking/parking-service';
import { traced, tracedSync } from '../../shared/trace/trace-spans';

export type { BackupLedger, BackupProgress, BackupResult, BackupVmConfig, BackupVmOptions, Consistency, DiskResult } from './backup-options';
export type { BackupRepository } from './last-backups';

export async function backupVm(opts: BackupVmOptions): Promise<BackupResult> {
  const { vmid, config, logger } = opts;
  await traced('backup.wait-vzdump', () => waitVzdumpDone(opts));
  await traced('backup.wait-config-lock', () => waitConfigUnlocked(opts));
  opts.signal?.throwIfAborted();
  // The config the manifest keeps, and the disks to read, from one read of VMID.conf.
  const saved = tracedSync('backup.read-config', () => readSavedVmConfig(config.qemuServerConfigDir, vmid));
  const vmConfig = parseVmConfig(vmid, saved.conf);
  if (vmConfig.disks.length === 0) throw BackupNoDisksError({ vmid });
  // `pvesm path` per disk (a process each; the real Perl pvesm takes far longer than the bench's)
  // runs while the manifests are read, the writer takes the VM's lock and QEMU's leftovers are
  // checked: none of that needs a disk's path, only its key. Awaited before the disks are planned;
  // a failure meanwhile is not unhandled (the writer is aborted like for any failure).
  const resolving = traced('backup.resolve-disks', () => resolveVmDisks(vmConfig, { qemuServerConfigDir: config.qemuServerConfigDir, pvesmPath: config.pvesmPath, ...(config.pvesmExec ? { pvesmExec: config.pvesmExec } : {}) }));
  resolving.catch(() => undefined);
  const { stateDir, qemuServerLockDir } = config;
  if (stateDir && qemuServerLockDir && !readQemuProcess(config.qemuServerRunDir, vmid)) {
    // A stopped VM: under Proxmox's lock, with its parked bitmaps back in the images (daemon/parking).
    const disks = await resolving;
    const paths = { ...config, stateDir, qemuServerLockDir, hookTimeoutMs: 0 };
    return withOfflineParking(paths, opts.ledger, vmid, disks, () => backupDisks(opts, vmConfig.agentEnabled, vmConfig.disks, resolving, saved), logger);
  }
  return backupDisks(opts, vmConfig.agentEnabled, vmConfig.disks, resolving, saved);
}

async function backupDisks(opts: BackupVmOptions, agent: boolean, configDisks: readonly VmConfigDisk[], resolving: Promise<VmDisk[]>, saved: SavedVmConfig): Promise<BackupResult> {
  const { vmid, repo, logger } = opts;
  const keys = configDisks.map((d) => d.key);
  // Each manifest is read once: the writer takes the parent's and the bases' from `manifests`.
  const { byDisk: lastByDisk, manifests } = await traced('backup.last-backups', () => lastBackupsForBackup(repo, vmid, keys));
  const latestId = [...lastByDisk.values()].map((l) => l.backupId).sort().pop();
  const writer = await traced('backup.start-writer', () => repo.startBackup({ vmid, ...(latestId ? { parent: latestId } : {}), ...(logger ? { logger } : {}), manifests }));
  logger?.info('backup started', { vmid, backupId: writer.id, disks: keys });
  try {
    return await runBackup(opts, writer, resolving, lastByDisk, agent, saved);
  } catch (err) {
    await writer.abort().catch((e: Error) => logger?.error('abort of backup writer failed', { vmid, error: e.message }));
    logger?.error('backup failed', { vmid, backupId: writer.id, error: (err as Error).message, code: (err as { code?: string }).code });
    throw err;
  }
}

async function runBackup(opts: BackupVmOptions, writer: BackupWriter, resolving: Promise<VmDisk[]>, lastByDisk: Map<string, LastDiskBackup>, agent: boolean, saved: SavedVmConfig): Promise<BackupResult> {
  const { vmid, config, logger } = opts;
  const qemu = readQemuProcess(config.qemuServerRunDir, vmid);
  const qmpSocket = qmpSocketPath(config.qemuServerRunDir, vmid);
  let qemuDisks: QemuDisk[] | undefined;
  if (qemu) {
    const committedBitmap = (d: string): string | undefined => lastByDisk.get(d)?.bitmap?.name;
    const onDisks = (d: QemuDisk[]): void => void (qemuDisks = d);
    await traced('backup.cleanup-leftovers', () => cleanupFleeceLeftovers({ vmid, qmpSocket, workDir: workDirOf(config), committedBitmap, onDisks, ...(logger ? { logger } : {}) }));
  }
  const disks = await resolving;
  const granularity = config.granularity ?? DEFAULT_GRANULARITY;
  const jobs = planDisks({ vmid, qemu, granularity, forceFull: opts.forceFull, disks: await traced('backup.disk-facts', () => gatherDiskFacts(opts, disks, lastByDisk, qemu, qmpSocket, vmgenidOf(saved.conf), qemuDisks)) });
  for (const j of jobs) logger?.info(`mode ${j.decision.mode}: ${j.decision.reason}`, { vmid, disk: j.disk.key, mode: j.decision.mode, code: j.decision.code });
  const sources = sourcesFor(opts, jobs, qemu, agent, granularity);
  // Events stored from here on may have cost a bitmap created in QEMU its validity (Ledger.markValid).
  const sinceEventId = qemu ? opts.ledger.lastEventId() : undefined;
  const results: DiskResult[] = [];
  const opened: BackupSource[] = [];
  let freezeNote: string | undefined;
  let manifestId: string;
  try {
    for (const s of sources) {
      opened.push(s);
      await traced('backup.source-open', () => s.open());
    }
    for (const s of sources) {
      const signal = s.signal && opts.signal ? AbortSignal.any([opts.signal, s.signal]) : (s.signal ?? opts.signal);
      for (const j of s.jobs) {
        const exp = await s.exportDrive(j);
        try {
          results.push(await traced('backup.disk', () => backupDisk(opts, writer, j, exp, s.consistency, signal)));
        } finally {
          await exp.close();
        }
      }
    }
    // Each source is checked to still be point-in-time and closed in one step (a fleece source: one
    // QMP session); its reads are over, so closing one does not change what another's check says.
    for (const s of sources) await traced('backup.source-close', () => s.closeIntact());
    freezeNote = sources.find((s) => s.freezeNote)?.freezeNote;
    // The storage snapshot each RBD disk's backup took: the next backup may read its diff (storage-delta.ts).
    const storageSnapshots = Object.assign({}, ...sources.map((s) => s.storageSnapshots?.() ?? {})) as Record<string, string>;
    const extra = { ...(freezeNote ? { freezeNote } : {}), ...(Object.keys(storageSnapshots).length > 0 ? { storageSnapshots } : {}) };
    manifestId = (await traced('backup.commit', () => writer.commit(extra, saved))).id;
  } catch (err) {
    for (const s of opened) {
      await s.close();
      await s.rollbackBitmaps().catch((e: Error) => logger?.error('bitmap rollback failed', { vmid, error: e.message }));
    }
    throw mapAbort(err, opts, sources);
  }
  for (const s of sources) {
    await traced('backup.commit-bitmaps', () => s.commitBitmaps()).catch((e: Error) => logger?.warn('removing old bitmaps failed; they go at the next backup', { vmid, error: e.message }));
  }
  tracedSync('backup.ledger-valid', () => {
    for (const j of jobs) markValid(opts, j, j.kind === 'fleece' ? qemu : undefined, j.kind === 'fleece' ? sinceEventId : undefined);
  });
  logger?.info('backup finished', { vmid, backupId: manifestId, disks: results });
  return { id: manifestId, vmid, disks: results, ...(freezeNote && agent ? { freezeNote } : {}) };
}

function markValid(opts: BackupVmOptions, j: DiskJob, qemu: QemuProcess | undefined, sinceEventId: number | undefined): void {
  const bitmap = newBitmapOf(j);
  if (!bitmap) return;
  const { vmid, ledger } = opts;
  const record = { vmid, disk: j.disk.key, format: j.disk.format, bitmapName: bitmap.name, generation: bitmap.generation, volid: j.disk.volid, path: j.disk.path };
  ledger.markValid({ ...record, qemuPid: qemu?.pid ?? null, qemuStartTime: qemu?.startTime ?? null }, sinceEventId === undefined ? {} : { sinceEventId });
}

/** A lost view (its reason) or the caller's abort says more than the read error it caused. */
function mapAbort(err: unknown, opts: BackupVmOptions, sources: readonly BackupSource[]): unknown {
  const lost = sources.find((s) => s.signal?.aborted && s.signal.reason instanceof Error);
  if (lost) return lost.signal?.reason;
  if (opts.signal?.aborted) return BackupAbortedError({ vmid: opts.vmid }, err);
  return err;
}
