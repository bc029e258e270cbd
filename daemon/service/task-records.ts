/**
 * The task list, like Proxmox's: every queue entry of this daemon (queued, running) and every task
 * the catalog's `jobs` table remembers (also from earlier daemons, so the history survives a
 * restart). A task the previous daemon left running is settled at start as CBT_JOB_INTERRUPTED
 * (interrupted-jobs.ts) and shown as `interrupted`.
 *
 * One record per task: id, VM, kind, status, queued/start/end times (ISO 8601 UTC), the backup it
 * made, its error, and the live progress while it runs. `mergeTasks` is pure (tested by a table):
 * a live entry wins over its catalog row for status and progress; the row adds end, backup, result.
 */
import type { CatalogJob } from '../catalog/backup-catalog';
import type { JobHandle, JobProgress, JobState } from '../jobs/job-queue';
import { JobInterruptedError } from './service-errors';
import type { Services } from './services';
import { TaskNotFoundError } from './task-errors';

export type TaskStatus = 'queued' | 'running' | 'ok' | 'failed' | 'cancelled' | 'interrupted';

export interface TaskRecord {
  id: string;
  vmid: number | null;
  kind: string;
  status: TaskStatus;
  queuedAt: string | null;
  startedAt: string | null;
  endedAt: string | null;
  backupId: string | null;
  error: { code: string; message: string } | null;
  progress: JobProgress | null;
  /** What the task returned (a backup's `{ id, vmid, disks }`); null while it runs or when it failed. */
  result: unknown;
}

/** What the queue tells of one live entry. */
export type LiveTask = Pick<JobHandle<unknown>, 'id' | 'vmid' | 'kind' | 'queuedAt' | 'startedAt' | 'progress'> & { state: JobState };

const LIVE_STATUS: Record<JobState, TaskStatus> = { queued: 'queued', running: 'running', done: 'ok', failed: 'failed', cancelled: 'cancelled' };

function rowStatus(row: CatalogJob): TaskStatus {
  if (row.status === 'failed' && row.errorCode === JobInterruptedError.code) return 'interrupted';
  return row.status;
}

function fromRow(row: CatalogJob): TaskRecord {
  return {
    id: row.id,
    vmid: row.vmid,
    kind: row.kind,
    status: rowStatus(row),
    queuedAt: null,
    startedAt: row.startedAt,
    endedAt: row.endedAt,
    backupId: row.backupId,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    progress: null,
    result: row.result,
  };
}

function withLive(base: TaskRecord | undefined, live: LiveTask): TaskRecord {
  const status = LIVE_STATUS[live.state];
  // Until the task's run has ended, the live view is the truth (the row may still say `running`).
  const active = live.state === 'queued' || live.state === 'running';
  return {
    ...(base ?? { endedAt: null, backupId: null, error: null, result: null }),
    id: live.id,
    vmid: live.vmid,
    kind: live.kind,
    status: active || !base ? status : base.status,
    queuedAt: live.queuedAt.toISOString(),
    startedAt: live.startedAt?.toISOString() ?? base?.startedAt ?? null,
    progress: active ? (live.progress ?? null) : null,
  } as TaskRecord;
}

/** Live entries first (running, then queued, as the queue lists them), then the history newest first. */
export function mergeTasks(live: readonly LiveTask[], rows: readonly CatalogJob[]): TaskRecord[] {
  const byId = new Map(rows.map((r) => [r.id, fromRow(r)]));
  const out = live.map((l) => withLive(byId.get(l.id), l));
  const seen = new Set(out.map((t) => t.id));
  for (const r of rows) if (!seen.has(r.id)) out.push(byId.get(r.id)!);
  return out;
}

function liveTasks(s: Pick<Services, 'queue'>, vmid?: number): LiveTask[] {
  return s.queue
    .list()
    .filter((h) => vmid === undefined || h.vmid === vmid)
    .map((h) => ({ id: h.id, vmid: h.vmid, kind: h.kind, state: h.state, queuedAt: h.queuedAt, startedAt: h.startedAt, progress: h.progress }));
}

export function listTasks(s: Pick<Services, 'queue' | 'catalog'>, filter: { vmid?: number; limit?: number } = {}): TaskRecord[] {
  const live = liveTasks(s, filter.vmid);
  const rows = s.catalog.listJobs({ ...(filter.vmid !== undefined ? { vmid: filter.vmid } : {}), ...(filter.limit !== undefined ? { limit: filter.limit } : {}) });
  const all = mergeTasks(live, rows);
  return filter.limit === undefined ? all : all.slice(0, Math.max(filter.limit, live.length));
}

export function getTask(s: Pick<Services, 'queue' | 'catalog'>, id: string): TaskRecord {
  const h = s.queue.get(id);
  const row = s.catalog.getJob(id);
  const live = h ? [{ id: h.id, vmid: h.vmid, kind: h.kind, state: h.state, queuedAt: h.queuedAt, startedAt: h.startedAt, progress: h.progress }] : [];
  const [t] = mergeTasks(live, row ? [row] : []);
  if (!t) throw TaskNotFoundError({ taskId: id });
  return t;
}
