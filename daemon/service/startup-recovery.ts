/**
 * What a daemon does before serving anything, so that a crash or kill of the previous daemon costs
 * nothing: replay the hooks' spool into the ledger (events while the daemon was down), remove
 * partial backups (no manifest), and in every running QEMU remove pve-cbt's leftover exports,
 * jobs and scratch nodes, settling bitmaps like the interrupted backup's commit or rollback.
 */
import fs from 'node:fs';
import { cleanupFleeceLeftovers } from '../backup/fleece-session';
import { replaySpool } from '../ipc/spool-replay';
import { qmpSocketPath, readQemuProcess } from '../pve/qemu-process';
import type { Services } from './services';
import { workDir } from './services';
import { listNodeVmids } from './select-vms';

export interface RecoveryReport {
  spoolApplied: number;
  spoolRejected: number;
  partialsRemoved: string[];
  qemuCleanups: { vmid: number; actions: string[] }[];
  qemuErrors: { vmid: number; error: string }[];
}

export async function recoverAtStartup(s: Services): Promise<RecoveryReport> {
  const spool = replaySpool(s.config.stateDir, (ev) => void s.ledger.recordEvent(ev), s.logger);
  const partialsRemoved = await s.repo.cleanupPartials();
  const work = workDir(s.config.stateDir);
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  const report: RecoveryReport = { spoolApplied: spool.applied, spoolRejected: spool.rejected, partialsRemoved, qemuCleanups: [], qemuErrors: [] };
  for (const vmid of listNodeVmids(s.config.qemuServerConfigDir)) {
    if (!readQemuProcess(s.config.qemuServerRunDir, vmid)) continue;
    const latest = (await s.repo.listBackups(vmid)).pop();
    const manifest = latest ? await s.repo.readManifest(latest.id) : undefined;
    try {
      const actions = await cleanupFleeceLeftovers({
        vmid,
        qmpSocket: qmpSocketPath(s.config.qemuServerRunDir, vmid),
        workDir: work,
        committedBitmap: (drive) => manifest?.disks.find((d) => d.name === drive)?.bitmap?.name,
        logger: s.logger,
      });
      if (actions.length) report.qemuCleanups.push({ vmid, actions });
    } catch (err) {
      // A VM whose QMP is busy now is cleaned at its next backup; it must not stop the daemon.
      report.qemuErrors.push({ vmid, error: (err as Error).message });
      s.logger.warn('startup cleanup of QEMU leftovers failed', { vmid, error: err });
    }
  }
  s.logger.info('startup recovery done', { ...report });
  return report;
}
