/**
 * One firing of a scheduled job.
 * - A configured backup job: back up each selected VM through the queue (joining a backup of the
 *   same VM that is still waiting), then apply the job's retention to those VMs. A VM that fails
 *   does not stop the others; the job's outcome is logged per VM and recorded in the catalog.
 *   First the ledger is brought in step with the VM configs (reconcile-ledger.ts: destroyed VMs,
 *   detached or removed disks, moved volumes). A VM destroyed after it was selected, or left with
 *   no disk to back up, is skipped (logged), not failed: its backups stay in the repository.
 * - The verify job (`verify` in the config, monthly unless configured otherwise or disabled, as
 *   Proxmox Backup Server recommends re-verifying): re-reads every backup; bad blobs join the
 *   bad-blob registry, so the next backup of an affected disk re-sends them, and the result is
 *   kept as the repository's last verify, which `pve-cbt status` shows.
 */
import { InternalError } from '../../shared/errors/internal-errors';
import type { CbtConfig, JobConfig } from '../config/config-schema';
import type { LastVerify } from '../repository/verify-record';
import { BackupNoDisksError } from '../backup/backup-errors';
import { PveConfigMissingError } from '../pve/pve-errors';
import { enqueueBackup } from './backup-task';
import { withJobNotification } from './notify-events';
import { reconcileLedgerWithConfigs } from './reconcile-ledger';
import { selectVms } from './select-vms';
import type { Services } from './services';

export const VERIFY_JOB_ID = 'verify';

export interface VerifyJob {
  readonly kind: 'verify';
  readonly id: string;
  readonly schedule: string;
  readonly enabled: boolean;
}

export type ScheduledJob = JobConfig | VerifyJob;

export interface ScheduledRunReport {
  jobId: string;
  ok: number[];
  failed: { vmid: number; code: string; message?: string }[];
  /** VMs that vanished or have no disk to back up any more (not an error). */
  skipped: { vmid: number; code: string }[];
  pruned: string[];
}

/** Every job the daemon schedules: the configured backup jobs and the verify job. */
export function scheduledJobs(config: CbtConfig): ScheduledJob[] {
  return [...config.jobs, { kind: 'verify', id: VERIFY_JOB_ID, schedule: config.verify.schedule, enabled: config.verify.enabled }];
}

function isVerifyJob(job: ScheduledJob): job is VerifyJob {
  return (job as VerifyJob).kind === 'verify';
}

/** One firing; its outcome is notified as `notify` says (notify-events.ts). */
export function runScheduledJob(s: Services, job: ScheduledJob): Promise<ScheduledRunReport | LastVerify> {
  return withJobNotification<ScheduledRunReport | LastVerify>(s, job, () => (isVerifyJob(job) ? runVerifyJob(s, job) : runBackupJob(s, job)));
}

async function runBackupJob(s: Services, job: JobConfig): Promise<ScheduledRunReport> {
  const log = s.logger.child({ jobId: job.id });
  await reconcileLedgerWithConfigs(s);
  const vmids = selectVms(job.vms, s.config.qemuServerConfigDir);
  log.info('scheduled job fired', { vmids });
  const outcomes = await Promise.allSettled(vmids.map((vmid) => enqueueBackup(s, vmid, { jobId: job.id }).promise));
  const report: ScheduledRunReport = { jobId: job.id, ok: [], failed: [], skipped: [], pruned: [] };
  outcomes.forEach((o, i) => {
    if (o.status === 'fulfilled') report.ok.push(vmids[i]);
    else if (PveConfigMissingError.is(o.reason) || BackupNoDisksError.is(o.reason)) report.skipped.push({ vmid: vmids[i], code: o.reason.code });
    else report.failed.push({ vmid: vmids[i], code: (o.reason as { code?: string }).code ?? 'CBT_INTERNAL', message: (o.reason as Error).message });
  });
  if (Object.keys(job.retention).length > 0) {
    for (const vmid of report.ok) {
      const marks = await s.repo.prune({ ...job.retention, vmid, logger: log });
      report.pruned.push(...marks.filter((m) => !m.keep).map((m) => m.id));
    }
  }
  if (report.failed.length) log.warn('scheduled job finished with failures', { ...report });
  else log.info('scheduled job finished', { ...report });
  return report;
}

async function runVerifyJob(s: Services, job: VerifyJob): Promise<LastVerify> {
  const log = s.logger.child({ jobId: job.id });
  log.info('verify job started');
  await s.repo.verify();
  const last = await s.repo.lastVerify();
  if (!last) throw InternalError({ what: 'verify finished without writing verify-last.json', jobId: job.id });
  if (last.ok) log.info('verify job finished', { ...last });
  else log.error('verify job found damaged backups', { ...last });
  return last;
}
