/**
 * One firing of a configured job: back up each selected VM through the queue (joining a backup of
 * the same VM that is still waiting), then apply the job's retention to those VMs. A VM that
 * fails does not stop the others; the job's outcome is logged per VM and recorded in the catalog.
 */
import type { JobConfig } from '../config/config-schema';
import { enqueueBackup } from './backup-task';
import { selectVms } from './select-vms';
import type { Services } from './services';

export interface ScheduledRunReport {
  jobId: string;
  ok: number[];
  failed: { vmid: number; code: string }[];
  pruned: string[];
}

export async function runScheduledJob(s: Services, job: JobConfig): Promise<ScheduledRunReport> {
  const log = s.logger.child({ jobId: job.id });
  const vmids = selectVms(job.vms, s.config.qemuServerConfigDir);
  log.info('scheduled job fired', { vmids });
  const outcomes = await Promise.allSettled(vmids.map((vmid) => enqueueBackup(s, vmid, { jobId: job.id }).promise));
  const report: ScheduledRunReport = { jobId: job.id, ok: [], failed: [], pruned: [] };
  outcomes.forEach((o, i) => {
    if (o.status === 'fulfilled') report.ok.push(vmids[i]);
    else report.failed.push({ vmid: vmids[i], code: (o.reason as { code?: string }).code ?? 'CBT_INTERNAL' });
  });
  if (Object.keys(job.retention).length > 0) {
    for (const vmid of report.ok) {
      const marks = await s.repo.prune({ ...job.retention, vmid });
      report.pruned.push(...marks.filter((m) => !m.keep).map((m) => m.id));
    }
  }
  if (report.failed.length) log.warn('scheduled job finished with failures', { ...report });
  else log.info('scheduled job finished', { ...report });
  return report;
}
