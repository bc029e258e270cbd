/**
 * A live restore as a daemon task, as Proxmox runs `qmrestore --live-restore` in a task worker: the
 * control-socket request `restore-live` `{ backupId, vmid, storage, format?, force?, unique?,
 * speed? }` enqueues one task of kind `live-restore` for the new VMID (the queue's one-job-per-VM
 * rule keeps a backup of that VMID out meanwhile) and answers at once with `{ vmid, taskId }`; the
 * CLI follows it with `task-wait` and cancels it with `task-cancel` (daemon/service/task-handlers.ts).
 * The restore lives in the daemon, which serves the export: the CLI going away (a closed terminal, a
 * kill) changes nothing; `pve-cbt task list|show` tell how it goes and how it ended.
 *
 * The task is recorded in the catalog's jobs table (start, end, the LiveRestoreResult or the error)
 * and keeps the restore's journal in `<stateDir>/live-restore/` (live-restore-journal.ts), so a
 * daemon that dies mid-restore has it resolved at its next start (live-restore-recovery.ts). A
 * cancel (Ctrl-C in the CLI, `task cancel`, or the daemon stopping: SIGTERM cancels every task) is a
 * failure of the restore: the VM is stopped, its volumes freed, no config written.
 *
 * Progress frames: per disk `{ disk, phase: 'mirror', done, total }` while its data moves, and one
 * frame `{ done, total, phase, message }` per step (the lines the CLI prints), with the bytes moved
 * of the total summed over the disks (0/0 before any data moved).
 */
import { errorJson } from '../../shared/errors/cbt-error';
import { VMID_MAX, VMID_MIN } from '../../shared/ipc/messages';
import type { IpcHandler } from '../ipc/ipc-server';
import { JobCancelledError } from '../jobs/job-errors';
import type { JobHandle, ProgressFn } from '../jobs/job-queue';
import { normalizeBackupId } from '../repository/backup-id';
import type { Services } from '../service/services';
import { liveRestore, type LiveRestoreEvent, type LiveRestoreResult } from './live-restore';
import { liveRestoreJournalDir } from './live-restore-journal';

export const LIVE_RESTORE_REQUEST = 'restore-live';
export const LIVE_RESTORE_KIND = 'live-restore';

export interface LiveRestoreTaskRequest {
  backupId: string;
  vmid: number;
  storage: string;
  format?: 'raw' | 'qcow2';
  force?: boolean;
  unique?: boolean;
  /** Bytes per second per mirror job; 0 or absent: unlimited. */
  speed?: number;
}

export interface LiveRestoreStarted {
  vmid: number;
  taskId: string;
}

/** The line a person reads for a step; undefined for the steps only the progress bars show. */
export function liveEventLine(vmid: number, e: LiveRestoreEvent): string | undefined {
  switch (e.type) {
    case 'allocated':
      return `${e.disk} -> ${e.volid}`;
    case 'serving':
      return `serving ${e.disk} at ${e.uri}`;
    case 'running':
      return `VM ${vmid} runs on the backup (pid ${e.pid}, ${(e.ms / 1000).toFixed(1)} s after the start); moving the data into its volumes`;
    case 'switched':
      return `${e.disk} is on ${e.volid}`;
    case 'export-closed':
      return 'export closed, overlays removed';
    case 'config':
      return `config written: ${e.conf}`;
    case 'failed':
      return `FAILED while ${e.phase}: ${e.reason}`;
    case 'stopped':
      return e.stopped ? `VM ${vmid} stopped` : `VM ${vmid} could NOT be stopped`;
    default:
      return undefined;
  }
}

/**
 * Every frame carries the bytes moved of the total over every disk so far (QMP query-jobs
 * current/total-progress), so the task's last progress, which `pve-cbt tasks` shows, is the whole
 * restore's: not 0/0 after a step, not one disk's while several move. A mirror frame also carries
 * its disk's own bytes (`diskDone`/`diskTotal`, the CLI's bar per disk).
 */
export function progressOf(vmid: number, progress: ProgressFn): (e: LiveRestoreEvent) => void {
  const moved = new Map<string, { done: number; total: number }>();
  const sum = (k: 'done' | 'total'): number => [...moved.values()].reduce((n, m) => n + m[k], 0);
  return (e) => {
    if (e.type === 'progress') {
      moved.set(e.disk, { done: e.done, total: e.total });
      progress({ done: sum('done'), total: sum('total'), disk: e.disk, diskDone: e.done, diskTotal: e.total, phase: 'mirror' });
      return;
    }
    if (e.type === 'switched' && 'disk' in e) {
      const m = moved.get(e.disk);
      if (m) m.done = m.total;
    }
    const message = liveEventLine(vmid, e);
    if (message !== undefined) progress({ done: sum('done'), total: sum('total'), phase: e.type, ...('disk' in e ? { disk: e.disk } : {}), message });
  };
}

export function enqueueLiveRestore(s: Services, req: LiveRestoreTaskRequest): JobHandle<LiveRestoreResult> {
  const h = s.queue.enqueue<LiveRestoreResult>({
    vmid: req.vmid,
    kind: LIVE_RESTORE_KIND,
    meta: { backupId: req.backupId },
    run: async (signal, progress, taskId) => {
      const log = s.logger.child({ vmid: req.vmid, taskId });
      s.catalog.recordJobStart({ id: taskId, kind: LIVE_RESTORE_KIND, vmid: req.vmid });
      try {
        const result = await liveRestore(
          { backupId: req.backupId, vmid: req.vmid, storage: req.storage, format: req.format, force: req.force === true, unique: req.unique === true, speed: req.speed ?? 0 },
          {
            repo: s.repo,
            repositoryDir: s.config.repository,
            node: s.config,
            logger: log,
            signal,
            onEvent: progressOf(req.vmid, progress),
            journalDir: liveRestoreJournalDir(s.config.stateDir),
            taskId,
          },
        );
        s.catalog.recordJobEnd(taskId, { status: 'ok', result });
        return result;
      } catch (err) {
        const { code, message } = errorJson(err);
        s.catalog.recordJobEnd(taskId, { status: signal.aborted || JobCancelledError.is(err) ? 'cancelled' : 'failed', error: { code, message } });
        throw err;
      }
    },
  });
  h.promise.catch((err: unknown) => {
    // Cancelled while queued: recorded too, so `task list` shows it.
    if (h.startedAt !== undefined || s.catalog.getJob(h.id)) return;
    try {
      s.catalog.recordJobStart({ id: h.id, kind: LIVE_RESTORE_KIND, vmid: req.vmid, startedAt: h.queuedAt });
      s.catalog.recordJobEnd(h.id, { status: 'cancelled', error: { code: errorJson(err).code, message: errorJson(err).message } });
    } catch (e) {
      s.logger.warn('could not record a task cancelled in the queue', { taskId: h.id, vmid: req.vmid, error: (e as Error).message });
    }
  });
  return h;
}

export function liveRestoreHandlers(s: Services): Record<string, IpcHandler> {
  return {
    [LIVE_RESTORE_REQUEST]: {
      schema: {
        type: 'object',
        additionalProperties: false,
        required: ['backupId', 'vmid', 'storage'],
        properties: {
          backupId: { type: 'string', minLength: 1, maxLength: 200 },
          vmid: { type: 'integer', minimum: VMID_MIN, maximum: VMID_MAX },
          storage: { type: 'string', minLength: 1, maxLength: 100, pattern: '^[A-Za-z][A-Za-z0-9._-]*$' },
          format: { enum: ['raw', 'qcow2'] },
          force: { type: 'boolean' },
          unique: { type: 'boolean' },
          speed: { type: 'integer', minimum: 0 },
        },
      },
      handle: async (req: LiveRestoreTaskRequest): Promise<LiveRestoreStarted> => {
        const h = enqueueLiveRestore(s, { ...req, backupId: normalizeBackupId(req.backupId) });
        return { vmid: h.vmid, taskId: h.id };
      },
    },
  };
}
