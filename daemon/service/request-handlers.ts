/**
 * The daemon's handlers for control-socket requests: hooks' lifecycle events and the CLI's
 * backup, status and tasks requests. Payloads are validated by the IPC server against the schemas
 * here (unknown keys refused) before a handler runs.
 */
import { errorJson } from '../../shared/errors/cbt-error';
import { MESSAGE_TYPES, VMID_MAX, VMID_MIN } from '../../shared/ipc/messages';
import type { IpcHandler } from '../ipc/ipc-server';
import { lifecycleEventHandler } from '../ipc/lifecycle-event-handler';
import { migrationDepsOf } from '../migration/migration-deps';
import { publishClaim } from '../migration/publish-claim';
import { parkingOnEvent, parkingPaths } from '../parking/parking-service';
import { liveRestoreHandlers } from '../restore/live-restore-task';
import { enqueueBackup } from './backup-task';
import { resolveBackupSelection } from './backup-selection';
import { REQUESTS, type BackupOutcome, type TaskProgress, type BackupRequest, type BackupStarted, type TaskInfo } from './requests';
import type { Services } from './services';
import { taskHandlers } from './task-handlers';
import { singleFlight } from './single-flight';
import { nodeStatus } from './vm-status';

/** Progress frames per task at most this often (plus the last one of each disk). */
const PROGRESS_INTERVAL_MS = 250;

const VMID = { type: 'integer', minimum: VMID_MIN, maximum: VMID_MAX } as const;

function backupHandler(s: Services): IpcHandler {
  return {
    schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        vmids: { type: 'array', items: VMID, minItems: 1, maxItems: 1000, uniqueItems: true },
        all: { const: true },
        pool: { type: 'string', minLength: 1, maxLength: 200 },
        mode: { enum: ['auto', 'full'] },
        detach: { type: 'boolean' },
      },
    },
    // The backups keep running if the CLI goes away, like a PVE task does when its client closes.
    // `detach`: answers at once with the task ids (`task-wait`/`task-cancel` follow them).
    handle: async (req: BackupRequest, ctx): Promise<BackupOutcome[] | BackupStarted[]> => {
      const vmids = resolveBackupSelection(req, s.config.qemuServerConfigDir);
      const handles = vmids.map((vmid) => enqueueBackup(s, vmid, { forceFull: req.mode === 'full' }));
      if (req.detach) return handles.map((h) => ({ vmid: h.vmid, taskId: h.id }));
      return Promise.all(
        handles.map(async (h): Promise<BackupOutcome> => {
          let lastSent = 0;
          const stop = h.onProgress((p) => {
            const now = Date.now();
            if (now - lastSent < PROGRESS_INTERVAL_MS && p.done < p.total) return;
            lastSent = now;
            const frame: TaskProgress = { vmid: h.vmid, taskId: h.id, disk: p.disk, phase: p.phase, done: p.done, total: p.total, chunkBytes: p.chunkBytes, reusedBytes: p.reusedBytes };
            ctx.progress(frame);
          });
          try {
            const r = await h.promise;
            return { vmid: h.vmid, result: { id: r.id, vmid: r.vmid, disks: r.disks } };
          } catch (err) {
            return { vmid: h.vmid, error: errorJson(err) };
          } finally {
            stop();
          }
        }),
      );
    },
  };
}

function statusHandler(s: Services): IpcHandler {
  // Concurrent status requests for the same VM (or all) share one round of QEMU questions.
  const status = singleFlight((vmid: number | undefined) => nodeStatus(s, vmid));
  return {
    schema: { type: 'object', additionalProperties: false, properties: { vmid: VMID } },
    handle: async (req: { vmid?: number }) => status(req.vmid),
  };
}

function tasksHandler(s: Services): IpcHandler {
  return {
    schema: { type: 'object', additionalProperties: false, properties: {} },
    handle: async (): Promise<TaskInfo[]> =>
      s.queue.list().map((h) => ({
        id: h.id,
        vmid: h.vmid,
        kind: h.kind,
        state: h.state,
        queuedAt: h.queuedAt.toISOString(),
        startedAt: h.startedAt?.toISOString() ?? null,
        progress: h.progress ?? null,
      })),
  };
}

export function requestHandlers(s: Services): Record<string, IpcHandler> {
  return {
    [MESSAGE_TYPES.lifecycleEvent]: lifecycleEventHandler({
      ledger: s.ledger,
      stateDir: s.config.stateDir,
      logger: s.logger,
      afterRecord: (ev) => parkingOnEvent(parkingPaths(s.config), s.ledger, ev, s.logger),
      // A migrated pre-start claims the source node's bitmap records (daemon/migration/).
      onRecorded: (ev) => void publishClaim(migrationDepsOf(s), ev),
    }),
    [REQUESTS.backup]: backupHandler(s),
    [REQUESTS.status]: statusHandler(s),
    [REQUESTS.tasks]: tasksHandler(s),
    ...taskHandlers(s),
    ...liveRestoreHandlers(s),
  };
}
