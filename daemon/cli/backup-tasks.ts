/**
 * `pve-cbt backup` as Proxmox runs a task: the daemon starts one task per VM and answers with the
 * task ids at once (`backup` with `detach`); in the foreground the CLI then follows them
 * (`task-wait`, which streams their progress) until they have ended.
 *
 * Ctrl-C (SIGINT, or SIGTERM) in the foreground cancels them: the CLI asks the daemon to cancel its
 * tasks (`task-cancel`), which aborts each backup cleanly (no manifest, bitmaps rolled back) and
 * answers once they have settled; the command then says "cancelled" (CBT_CLI_CANCELLED) and exits 130. A second Ctrl-C
 * leaves at once (main.ts) and the daemon finishes the cancel alone. `--detach` returns right after
 * the start and leaves the tasks running (`pve-cbt task list|show|cancel`).
 */
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { REQUESTS, type BackupOutcome, type TaskProgress, type BackupRequest, type BackupResult, type BackupStarted } from '../service/requests';
import { TASK_REQUESTS, type TaskOutcome } from '../service/task-handlers';
import { TaskNoResultError } from '../service/task-errors';
import { CliCancelledError } from './cli-errors';
import type { CommandContext } from './command';

/** A backup may take hours; the daemon bounds its own steps. */
const FOLLOW_TIMEOUT_MS = 7 * 24 * 3600 * 1000;
const START_TIMEOUT_MS = 30_000;
const CANCEL_TIMEOUT_MS = 10 * 60 * 1000;
export const CTRL_C_REASON = 'Ctrl-C on pve-cbt backup';

type Ctx = CommandContext<unknown, unknown>;

/**
 * Starts the tasks. Not aborted by Ctrl-C: once the daemon may have queued them the CLI must learn
 * their ids, so a Ctrl-C meanwhile cancels them right after (followBackups sees the signal).
 */
export function startBackups(ctx: Ctx, request: BackupRequest): Promise<BackupStarted[]> {
  return ipcRequest<BackupStarted[]>(ctx.loadConfig().socketPath, REQUESTS.backup, { ...request, detach: true }, { timeoutMs: START_TIMEOUT_MS });
}

const CANCELLED_HINT = 'nothing was written (no manifest) and the dirty bitmaps keep every change; the next backup covers them';

function outcomeOf(t: TaskOutcome, vmid: number, byCtrlC: boolean): BackupOutcome {
  if (t.status === 'ok' && t.result) {
    const r = t.result as BackupResult;
    return { vmid, result: { id: r.id, vmid: r.vmid, disks: r.disks } };
  }
  if (t.status === 'cancelled' && byCtrlC) {
    return { vmid, error: CliCancelledError({ what: `backup of VM ${vmid}`, taskId: t.id, reason: CTRL_C_REASON, hint: CANCELLED_HINT }).toJSON() };
  }
  const error: NonNullable<TaskOutcome['error']> = t.error ?? TaskNoResultError({ taskId: t.id, status: t.status }).toJSON();
  const hint = t.status === 'cancelled' ? { hint: CANCELLED_HINT } : {};
  return { vmid, error: { code: error.code, message: error.message, details: { taskId: t.id, ...(error.details ?? {}), ...hint } } };
}

export interface FollowedBackups {
  outcomes: BackupOutcome[];
  /** Ctrl-C asked the daemon to cancel the tasks. */
  cancelled: boolean;
}

/** Follows started tasks to their end; Ctrl-C (ctx.signal) cancels them and still waits for the outcome. */
export async function followBackups(ctx: Ctx, started: BackupStarted[], onProgress: (p: TaskProgress) => void): Promise<FollowedBackups> {
  const socketPath = ctx.loadConfig().socketPath;
  const ids = started.map((s) => s.taskId);
  let cancelled = false;
  const onAbort = (): void => {
    cancelled = true;
    ctx.stderr.write(`\ncancelling ${ids.join(', ')}: the backup stops and its bitmaps roll back (Ctrl-C again leaves that to the daemon)\n`);
    // The outcome comes from task-wait either way; a failed cancel only means the tasks run on.
    ipcRequest(socketPath, TASK_REQUESTS.cancel, { ids, reason: CTRL_C_REASON, ifActive: true }, { timeoutMs: CANCEL_TIMEOUT_MS }).catch((err: Error) => {
      ctx.stderr.write(`pve-cbt: the cancel was not delivered (${err.message}); the backup goes on\n`);
    });
  };
  if (ctx.signal.aborted) onAbort();
  else ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const ended = await ipcRequest<TaskOutcome[]>(socketPath, TASK_REQUESTS.wait, { ids }, { timeoutMs: FOLLOW_TIMEOUT_MS, onProgress: (p) => onProgress(p as TaskProgress) });
    return { outcomes: ended.map((t, i) => outcomeOf(t, started[i].vmid, cancelled)), cancelled };
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
  }
}

/** `--detach`: the started tasks, for people and for --json. */
export function detachedText(started: BackupStarted[]): string {
  return started.map((s) => `VM ${s.vmid}: backup task ${s.taskId} started (pve-cbt task show ${s.taskId})`).join('\n');
}

