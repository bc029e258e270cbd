import { defineError } from '../../shared/errors/cbt-error';

/** No task of that id: not in the queue and not in the catalog's task history. */
export const TaskNotFoundError = defineError<{ taskId: string }>(
  'CBT_TASK_NOT_FOUND',
  (d) => `no task ${d.taskId} (see pve-cbt task list)`,
);

/** The task already ended, so it cannot be cancelled any more. */
export const TaskNotActiveError = defineError<{ taskId: string; status: string }>(
  'CBT_TASK_NOT_ACTIVE',
  (d) => `task ${d.taskId} is not queued or running (it is ${d.status}); nothing was cancelled`,
);

/** `pve-cbt task log`: the log directory holds no entry of that task (unknown id, or rotated away). */
export const TaskLogEmptyError = defineError<{ taskId: string; logDir: string }>(
  'CBT_TASK_LOG_EMPTY',
  (d) => `no log entries of task ${d.taskId} in ${d.logDir}`,
);

/** A task ended without the result its caller waits for (e.g. its catalog row lost the result). */
export const TaskNoResultError = defineError<{ taskId: string; status: string }>(
  'CBT_TASK_NO_RESULT',
  (d) => `task ${d.taskId} ended ${d.status} without a result; see pve-cbt task show ${d.taskId}`,
);
