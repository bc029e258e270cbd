/**
 * Control-socket requests about tasks (queue entries and their history, task-records.ts):
 * - `task-list` `{ vmid?, limit? }` → TaskRecord[] (live ones first, then newest first);
 * - `task-show` `{ id }` → TaskRecord;
 * - `task-wait` `{ ids }` → streams the tasks' progress frames (TaskProgress) and answers with
 *   their outcomes once all have ended, errors with their details (`pve-cbt backup` in the
 *   foreground starts its tasks detached and follows them, so Ctrl-C can cancel them by id);
 * - `task-cancel` `{ ids, reason?, ifActive? }` → cancels queued or running tasks and answers once
 *   they have settled (a backup has then rolled back its bitmaps and written no manifest). A task
 *   that already ended is CBT_TASK_NOT_ACTIVE, or with `ifActive` answered as it is.
 */
import { errorJson } from '../../shared/errors/cbt-error';
import { VMID_MAX, VMID_MIN } from '../../shared/ipc/messages';
import type { JobHandle } from '../jobs/job-queue';
import type { IpcHandler, IpcHandlerContext } from '../ipc/ipc-server';
import type { TaskProgress } from './requests';
import type { Services } from './services';
import { TaskNotActiveError } from './task-errors';
import { getTask, listTasks, type TaskRecord } from './task-records';

export const TASK_REQUESTS = Object.freeze({
  list: 'task-list',
  show: 'task-show',
  wait: 'task-wait',
  cancel: 'task-cancel',
});

/** A task's end as `task-wait` and `task-cancel` answer it: the record, its error with details. */
export type TaskOutcome = Omit<TaskRecord, 'error'> & { error: { code: string; message: string; details?: Record<string, unknown> } | null };

/** Progress frames per task at most this often (plus the last one of each disk). */
const PROGRESS_INTERVAL_MS = 250;

const TASK_ID = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9:._-]+$' } as const;
const TASK_IDS = { type: 'array', items: TASK_ID, minItems: 1, maxItems: 1000, uniqueItems: true } as const;

function streamProgress(h: JobHandle<unknown>, ctx: IpcHandlerContext): () => void {
  let lastSent = 0;
  return h.onProgress((p) => {
    const now = Date.now();
    // A disk's last frame always goes out: its own bytes where the frame has them (a live restore's mirror).
    if (now - lastSent < PROGRESS_INTERVAL_MS && (p.diskDone ?? p.done) < (p.diskTotal ?? p.total)) return;
    lastSent = now;
    const frame: TaskProgress = { vmid: h.vmid, taskId: h.id, ...p };
    ctx.progress(frame);
  });
}

/** Waits for a live task to settle and answers its record, with the error's details. */
async function settled(s: Services, h: JobHandle<unknown>): Promise<TaskOutcome> {
  let error: TaskOutcome['error'] = null;
  await h.promise.catch((err: unknown) => {
    error = errorJson(err);
  });
  const t = getTask(s, h.id);
  return { ...t, error: error ?? t.error };
}

export function taskHandlers(s: Services): Record<string, IpcHandler> {
  return {
    [TASK_REQUESTS.list]: {
      schema: {
        type: 'object',
        additionalProperties: false,
        properties: { vmid: { type: 'integer', minimum: VMID_MIN, maximum: VMID_MAX }, limit: { type: 'integer', minimum: 1, maximum: 100000 } },
      },
      handle: async (req: { vmid?: number; limit?: number }): Promise<TaskRecord[]> => listTasks(s, req),
    },
    [TASK_REQUESTS.show]: {
      schema: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: TASK_ID } },
      handle: async (req: { id: string }): Promise<TaskRecord> => getTask(s, req.id),
    },
    [TASK_REQUESTS.wait]: {
      schema: { type: 'object', additionalProperties: false, required: ['ids'], properties: { ids: TASK_IDS } },
      handle: async (req: { ids: string[] }, ctx): Promise<TaskOutcome[]> => {
        const handles = req.ids.map((id) => s.queue.get(id));
        // An id that is not live any more has ended (or is unknown: CBT_TASK_NOT_FOUND).
        const ended = req.ids.map((id, i) => (handles[i] ? null : getTask(s, id)));
        const stops = handles.map((h) => (h ? streamProgress(h, ctx) : () => undefined));
        try {
          return await Promise.all(handles.map((h, i) => (h ? settled(s, h) : ended[i]!)));
        } finally {
          for (const stop of stops) stop();
        }
      },
    },
    [TASK_REQUESTS.cancel]: {
      schema: {
        type: 'object',
        additionalProperties: false,
        required: ['ids'],
        properties: { ids: TASK_IDS, reason: { type: 'string', minLength: 1, maxLength: 200 }, ifActive: { type: 'boolean' } },
      },
      handle: async (req: { ids: string[]; reason?: string; ifActive?: boolean }): Promise<TaskOutcome[]> => {
        const reason = req.reason ?? 'cancelled by request';
        const handles = req.ids.map((id) => s.queue.get(id));
        const ended = req.ids.map((id, i) => (handles[i] ? null : getTask(s, id)));
        const notActive = ended.find((t) => t !== null);
        if (notActive && !req.ifActive) throw TaskNotActiveError({ taskId: notActive.id, status: notActive.status });
        for (const h of handles) {
          if (!h) continue;
          s.logger.info('task cancel requested', { taskId: h.id, vmid: h.vmid, kind: h.kind, reason });
          h.cancel(reason);
        }
        return Promise.all(handles.map((h, i) => (h ? settled(s, h) : ended[i]!)));
      },
    },
  };
}
