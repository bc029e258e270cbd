/**
 * Jobs a killed daemon left `running` in the catalog, settled at the next start (under the daemon
 * lock, so none of them is live). For a backup job the repository decides what happened:
 *
 * - a manifest of the job's VM, committed after the job started and claimed by no other job, is
 *   the job's backup: it committed and the daemon died in the bookkeeping after it. Recovery
 *   finishes that commit the way the engine would have (backup-vm.ts, after `writer.commit`): the
 *   catalog row is written, and each disk whose manifest names a new bitmap the ledger does not
 *   record yet is marked valid under that name and generation, applying every lifecycle event
 *   stored since the job started (Ledger.markValid with `sinceEventId`: a superset of what the
 *   engine would have applied, so a VM restarted meanwhile is not trusted). QEMU's own bitmaps were
 *   already settled by recoverVm (the old frozen bitmap dropped, as the manifest names the new one),
 *   and the next backup's mode decision still checks QEMU's view. The job is recorded `ok`.
 * - no such manifest: nothing was kept; the job is recorded `failed` with CBT_JOB_INTERRUPTED.
 *
 * This needs the ledger's history since the job started, which the job row itself proves is there:
 * a catalog rebuilt after damage has neither jobs nor ledger, so it settles nothing and every disk
 * gets a full-compare next.
 */
import { errorJson } from '../../shared/errors/cbt-error';
import { readQemuProcess } from '../pve/qemu-process';
import type { Manifest } from '../repository/manifest';
import { JobInterruptedError } from './service-errors';
import type { Services } from './services';

export interface SettledJob {
  jobId: string;
  vmid: number | null;
  /** The backup the job committed before the daemon died; null when it committed nothing. */
  backupId: string | null;
  /** Disks whose new bitmap recovery marked in the ledger (and the resulting state). */
  bitmaps: { disk: string; bitmap: string; valid: boolean }[];
}

type Stores = Pick<Services, 'config' | 'logger' | 'catalog' | 'ledger' | 'repo'>;

/** Whole seconds, as backup ids and manifest times are. */
function floorToSecond(iso: string): number {
  return Math.floor(Date.parse(iso) / 1000) * 1000;
}

async function committedBackupOf(s: Stores, vmid: number, startedAt: string): Promise<Manifest | null> {
  const claimed = new Set(s.catalog.listJobs({ vmid }).map((j) => j.backupId).filter((id): id is string => id !== null));
  const from = floorToSecond(startedAt);
  const candidates = (await s.repo.listBackups(vmid)).filter((b) => b.time.getTime() >= from && !claimed.has(b.id));
  if (candidates.length === 0) return null;
  return s.repo.readManifest(candidates[candidates.length - 1].id);
}

function settleBitmaps(s: Stores, m: Manifest, startedAt: string): SettledJob['bitmaps'] {
  const qemu = readQemuProcess(s.config.qemuServerRunDir, m.vmid);
  const sinceEventId = s.ledger.lastEventIdBefore(startedAt);
  const out: SettledJob['bitmaps'] = [];
  for (const d of m.disks) {
    if (!d.bitmap) continue;
    const rec = s.ledger.get(m.vmid, d.name);
    if (rec && rec.bitmapName === d.bitmap.name && rec.generation === d.bitmap.generation) continue;
    const valid = s.ledger.markValid(
      {
        vmid: m.vmid,
        disk: d.name,
        format: d.format,
        bitmapName: d.bitmap.name,
        generation: d.bitmap.generation,
        qemuPid: qemu?.pid ?? null,
        qemuStartTime: qemu?.startTime ?? null,
      },
      { sinceEventId },
    );
    out.push({ disk: d.name, bitmap: d.bitmap.name, valid });
  }
  return out;
}

export async function settleInterruptedJobs(s: Stores): Promise<SettledJob[]> {
  const settled: SettledJob[] = [];
  for (const job of s.catalog.listJobs().filter((j) => j.status === 'running').reverse()) {
    const m = job.kind === 'backup' && job.vmid !== null ? await committedBackupOf(s, job.vmid, job.startedAt) : null;
    if (!m) {
      const { code, message } = errorJson(JobInterruptedError({ jobId: job.id, kind: job.kind, vmid: job.vmid }));
      s.catalog.recordJobEnd(job.id, { status: 'failed', error: { code, message } });
      s.logger.warn('a job of the previous daemon was interrupted before it committed anything', { jobId: job.id, kind: job.kind, vmid: job.vmid });
      settled.push({ jobId: job.id, vmid: job.vmid, backupId: null, bitmaps: [] });
      continue;
    }
    s.catalog.recordBackup(m);
    const bitmaps = settleBitmaps(s, m, job.startedAt);
    s.catalog.recordJobEnd(job.id, { status: 'ok', backupId: m.id, result: { id: m.id, vmid: m.vmid, recovered: true, bitmaps } });
    s.logger.warn('the previous daemon stopped right after committing a backup: recovery finished its commit', {
      jobId: job.id,
      vmid: m.vmid,
      backupId: m.id,
      bitmaps,
    });
    settled.push({ jobId: job.id, vmid: m.vmid, backupId: m.id, bitmaps });
  }
  return settled;
}
