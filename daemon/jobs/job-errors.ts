import { defineError } from '../../shared/errors/cbt-error';

/** A queued job was removed, or a running one aborted (cancel, SIGTERM). */
export const JobCancelledError = defineError<{ taskId: string; vmid: number; kind: string; reason: string }>(
  'CBT_JOB_CANCELLED',
  (d) => `${d.kind} of VM ${d.vmid} (${d.taskId}) was cancelled: ${d.reason}`,
);

/** The queue is shutting down and takes no new jobs. */
export const JobQueueClosedError = defineError<{ vmid: number; kind: string }>(
  'CBT_JOB_QUEUE_CLOSED',
  (d) => `cannot start ${d.kind} of VM ${d.vmid}: the daemon is shutting down`,
);
