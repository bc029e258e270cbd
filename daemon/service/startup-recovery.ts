/**
 * What a daemon does before serving anything, so that a crash or kill of the previous daemon costs
 * nothing: replay the hooks' spool into the ledger (events while the daemon was down), remove
 * partial backups (no manifest), resolve live restores the previous daemon did not finish (the VM
 * stopped and its volumes freed, or the restore finished after its switch:
 * daemon/restore/live-restore-recovery.ts), and per VM stop leftover qemu-nbd exports and, in a running QEMU,
 * remove pve-cbt's exports, jobs and scratch nodes, settling bitmaps like the interrupted backup's
 * commit or rollback (daemon/backup/recover-vm.ts); last, jobs the previous daemon left running are
 * settled: a backup that had committed has its commit finished (catalog row, ledger), the others
 * are recorded as interrupted (interrupted-jobs.ts); finally stopped VMs' bitmaps are parked
 * (daemon/parking/parking-service.ts).
 */
import fs from 'node:fs';
import { recoverVm } from '../backup/recover-vm';
import { recoverLiveRestores, type RecoveredLiveRestore } from '../restore/live-restore-recovery';
import { replaySpool } from '../ipc/spool-replay';
import { parkAtStartup, parkingPaths } from '../parking/parking-service';
import { settleInterruptedJobs, type SettledJob } from './interrupted-jobs';
import type { Services } from './services';
import { workDir } from './services';
import { listNodeVmids } from './select-vms';

export interface RecoveryReport {
  spoolApplied: number;
  spoolRejected: number;
  partialsRemoved: string[];
  qemuCleanups: { vmid: number; actions: string[] }[];
  qemuErrors: { vmid: number; error: string }[];
  interruptedJobs: SettledJob[];
  /** Live restores the previous daemon left unfinished, finished or undone (live-restore-recovery.ts). */
  liveRestores: RecoveredLiveRestore[];
  /** The catalog was unreadable, set aside and rebuilt at this start (services.ts). */
  catalogRebuilt: boolean;
}

export async function recoverAtStartup(s: Services): Promise<RecoveryReport> {
  const spool = replaySpool(s.config.stateDir, (ev) => void s.ledger.recordEvent(ev), s.logger);
  const partialsRemoved = await s.repo.cleanupPartials();
  const work = workDir(s.config.stateDir);
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  const report: RecoveryReport = { spoolApplied: spool.applied, spoolRejected: spool.rejected, partialsRemoved, qemuCleanups: [], qemuErrors: [], interruptedJobs: [], liveRestores: [], catalogRebuilt: s.catalogRebuilt !== undefined };
  // First: a restored VM running on a dead export is stopped before anything asks its QMP, and its
  // task is recorded before the generic settling below would call it CBT_JOB_INTERRUPTED.
  report.liveRestores = await recoverLiveRestores(s);
  for (const vmid of listNodeVmids(s.config.qemuServerConfigDir)) {
    try {
      const actions = await recoverVm({ vmid, config: { qemuServerRunDir: s.config.qemuServerRunDir, workDir: work }, repo: s.repo, logger: s.logger });
      if (actions.length) report.qemuCleanups.push({ vmid, actions });
    } catch (err) {
      // A VM whose QMP is busy now is cleaned at its next backup; it must not stop the daemon.
      report.qemuErrors.push({ vmid, error: (err as Error).message });
      s.logger.warn('startup cleanup of an interrupted backup failed', { vmid, error: err });
    }
  }
  report.interruptedJobs = await settleInterruptedJobs(s);
  // Stopped VMs' images must not hold pve-cbt bitmaps (qm rollback); see daemon/parking.
  const parked = await parkAtStartup(parkingPaths(s.config), s.ledger, listNodeVmids(s.config.qemuServerConfigDir), s.logger);
  if (parked.length > 0) s.logger.info('bitmap parking at start', { parked });
  s.logger.info('startup recovery done', { ...report });
  return report;
}
