/**
 * One VM's backup as a queued task: the same path for `pve-cbt backup` and for scheduled jobs, so
 * both obey the queue's one-job-per-VM and concurrency rules. The task is recorded in the catalog's
 * jobs table (start, end, result or error) and its story is logged with vmid and taskId. A task
 * cancelled while still queued is recorded too (started = queued time), so `task list` shows it.
 */
import { errorJson } from '../../shared/errors/cbt-error';
import { backupVm, type BackupResult } from '../backup/backup-vm';
import type { JobHandle } from '../jobs/job-queue';
import { replaySpool } from '../ipc/spool-replay';
import { adoptMigratedBitmaps } from '../migration/adopt-migrated';
import { migrationDepsOf } from '../migration/migration-deps';
import { JobCancelledError } from '../jobs/job-errors';
import { createProgressLog } from '../log/progress-log';
import { notifyBackupTask } from './notify-events';
import { reconcileLedgerWithConfigs } from './reconcile-ledger';
import { workDir, type Services } from './services';
import { traced, tracedSync } from '../../shared/trace/trace-spans';

export function enqueueBackup(s: Services, vmid: number, opts: { jobId?: string; forceFull?: boolean } = {}): JobHandle<BackupResult> {
  const h = enqueue(s, vmid, opts);
  h.promise.catch((err: unknown) => {
    if (h.startedAt !== undefined || s.catalog.getJob(h.id)) return;
    try {
      s.catalog.recordJobStart({ id: h.id, kind: h.kind, vmid, startedAt: h.queuedAt });
      s.catalog.recordJobEnd(h.id, { status: 'cancelled', error: { code: errorJson(err).code, message: errorJson(err).message } });
    } catch (e) {
      s.logger.warn('could not record a task cancelled in the queue', { taskId: h.id, vmid, error: (e as Error).message });
    }
  });
  return h;
}

function enqueue(s: Services, vmid: number, opts: { jobId?: string; forceFull?: boolean }): JobHandle<BackupResult> {
  return s.queue.enqueue<BackupResult>({
    vmid,
    kind: 'backup',
    join: opts.jobId !== undefined,
    meta: opts.jobId ? { jobId: opts.jobId } : undefined,
    run: async (signal, progress, taskId) => {
      // Events a hook spooled while the daemon was unreachable must count before the mode decision.
      tracedSync('task.replay-spool', () => replaySpool(s.config.stateDir, (ev) => void s.ledger.recordEvent(ev), s.logger));
      // A VM live-migrated here takes over the bitmap records its source node handed over.
      await traced('task.adopt-migrated', () => adoptMigratedBitmaps(migrationDepsOf(s), vmid)).catch((err: Error) => s.logger.warn(`adopting migrated bitmap records failed: ${err.message}`, { vmid }));
      // Disks detached, removed or moved since the last job (no hook tells of them).
      await traced('task.reconcile-ledger', () => reconcileLedgerWithConfigs(s, [vmid]));
      const log = s.logger.child({ vmid, taskId, ...(opts.jobId ? { jobId: opts.jobId } : {}) });
      tracedSync('task.record-start', () => s.catalog.recordJobStart({ id: taskId, kind: 'backup', vmid }));
      const progressLogs = new Map<string, ReturnType<typeof createProgressLog>>();
      try {
        const result = await traced('task.backup-vm', () => backupVm({
          vmid,
          config: {
            qemuServerConfigDir: s.config.qemuServerConfigDir,
            qemuServerRunDir: s.config.qemuServerRunDir,
            qemuServerLockDir: s.config.qemuServerLockDir,
            stateDir: s.config.stateDir,
            pvesmPath: s.config.pvesmPath,
            ...(s.exec ? { pvesmExec: s.exec.exec } : {}),
            ...(s.config.chunkSize !== undefined ? { chunkSize: s.config.chunkSize } : {}),
            workDir: workDir(s.config.stateDir),
          },
          repo: s.repo,
          ledger: s.ledger,
          logger: log,
          signal,
          forceFull: opts.forceFull,
          onProgress: (p) => {
            progress({ done: p.bytesDone, total: p.bytesTotal, disk: p.disk, phase: p.mode, chunkBytes: p.chunkBytes, reusedBytes: p.reusedBytes });
            let logProgress = progressLogs.get(p.disk);
            if (!logProgress) progressLogs.set(p.disk, (logProgress = createProgressLog({ logger: log.child({ disk: p.disk }), message: 'backup progress' })));
            logProgress({ done: p.bytesDone, total: p.bytesTotal });
          },
        }));
        // The engine (given `log`) and the repository log the story: mode and reason per disk, bytes, commit.
        tracedSync('task.record-end', () => s.catalog.recordJobEnd(taskId, { status: 'ok', backupId: result.id, result }));
        // A job's run is notified as a whole (scheduled-job.ts); a backup on its own here.
        if (!opts.jobId) void notifyBackupTask(s, log, { vmid, taskId, result });
        return result;
      } catch (err) {
        const cancelled = signal.aborted || JobCancelledError.is(err);
        const { code, message } = errorJson(err);
        s.catalog.recordJobEnd(taskId, { status: cancelled ? 'cancelled' : 'failed', error: { code, message } });
        if (!opts.jobId && !cancelled) void notifyBackupTask(s, log, { vmid, taskId, error: err });
        throw err; // the queue logs the failure with the task's context
      }
    },
  });
}
