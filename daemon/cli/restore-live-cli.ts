/**
 * The live side of `pve-cbt restore`: `restore BACKUP --vmid ID --storage STORAGE --live
 * [--bwlimit KIB/S] [--format F] [--force] [--unique] [--detach]`. The restore is a task of the
 * daemon (daemon/restore/live-restore-task.ts), as `qmrestore --live-restore` is a Proxmox task: the
 * daemon serves the export and moves the data, so the CLI going away does not touch it. In the
 * foreground the CLI follows the task (`task-wait`) until the VM is on its volumes.
 *
 * - Ctrl-C (SIGINT, or SIGTERM) cancels the restore: the CLI asks the daemon to cancel the task, the
 *   VM is stopped, its volumes freed, no config written (as any failure), and the command ends with
 *   CBT_CLI_CANCELLED (exit 130) once that is done. A second Ctrl-C leaves at once and the daemon
 *   finishes the cancel alone.
 * - A closed terminal (SIGHUP), a killed CLI or `--detach` leave the restore running in the daemon:
 *   `pve-cbt task list|show TASK` tell how it goes and how it ended, `pve-cbt task cancel TASK` stops it.
 * - The daemon not running: CBT_IPC_UNAVAILABLE (exit 4), nothing done. The daemon dying during the
 *   restore: CBT_IPC_CONNECTION_LOST (exit 4); its next start resolves the restore
 *   (live-restore-recovery.ts) and records the outcome in the task.
 *
 * Progress on stderr (not with --json): one line per step (volumes, export, the VM running, the
 * switch, the config) and one progress display per disk while its data moves. `--json`: the
 * LiveRestoreResult, `live.state: "complete"`, with the timeline and `taskId`; a failure is
 * CBT_RESTORE_LIVE_FAILED naming the phase, whether the VM was stopped and what was freed.
 */
import { CbtError } from '../../shared/errors/cbt-error';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { IpcConnectionLostError, IpcUnavailableError } from '../../shared/ipc/ipc-errors';
import type { JobProgress } from '../jobs/job-queue';
import type { LiveRestoreResult } from '../restore/live-restore';
import { LIVE_RESTORE_REQUEST, type LiveRestoreStarted, type LiveRestoreTaskRequest } from '../restore/live-restore-task';
import { TASK_REQUESTS, type TaskOutcome } from '../service/task-handlers';
import { TaskNoResultError } from '../service/task-errors';
import { CliCancelledError } from './cli-errors';
import type { CommandContext, CommandResult } from './command';
import { formatDuration, type ProgressReporter } from './progress';
import type { RestoreVmCliOptions } from './restore-vm-cli';

/** A live restore of a large VM may take long; the daemon bounds its own steps. */
const FOLLOW_TIMEOUT_MS = 7 * 24 * 3600 * 1000;
const START_TIMEOUT_MS = 30_000;
const CANCEL_TIMEOUT_MS = 10 * 60 * 1000;
const CTRL_C_REASON = 'Ctrl-C on pve-cbt restore --live';
const CANCELLED_HINT = 'the VM was stopped and its volumes freed; no config was written';

type Ctx = CommandContext<RestoreVmCliOptions & { detach?: boolean }, { backup: string }>;

async function start(ctx: Ctx, request: LiveRestoreTaskRequest): Promise<LiveRestoreStarted> {
  try {
    // Not aborted by Ctrl-C: once the daemon may have queued the task the CLI must learn its id.
    return await ipcRequest<LiveRestoreStarted>(ctx.loadConfig().socketPath, LIVE_RESTORE_REQUEST, request, { timeoutMs: START_TIMEOUT_MS });
  } catch (err) {
    if (!IpcUnavailableError.is(err)) throw err;
    throw new CbtError(err.code, err.message, { ...err.details, hint: 'a live restore runs as a task of the pve-cbt daemon (it serves the export): start it (systemctl start pve-cbt) and try again; nothing was done' }, { cause: err });
  }
}

export async function runLiveRestore(ctx: Ctx, vmid: number, storage: string): Promise<CommandResult> {
  const request: LiveRestoreTaskRequest = {
    backupId: ctx.args.backup,
    vmid,
    storage,
    ...(ctx.opts.format ? { format: ctx.opts.format } : {}),
    force: ctx.opts.force === true,
    unique: ctx.opts.unique === true,
    speed: (ctx.opts.bwlimit ?? 0) * 1024,
  };
  const started = await start(ctx, request);
  const { taskId } = started;
  if (ctx.opts.detach) {
    return { data: { task: started }, text: `VM ${vmid}: live restore task ${taskId} started (pve-cbt task show ${taskId})` };
  }
  if (!ctx.json) ctx.stderr.write(`live restore: task ${taskId} (Ctrl-C stops the VM and frees its volumes; a closed terminal leaves the restore to the daemon)\n`);

  const socketPath = ctx.loadConfig().socketPath;
  const bars = new Map<string, ProgressReporter>();
  const onProgress = (p: JobProgress): void => {
    if (p.message !== undefined) {
      if (p.phase === 'switched' && p.disk) bars.get(p.disk)?.finish();
      if (p.phase === 'failed') for (const b of bars.values()) b.finish('failed');
      if (!ctx.json) ctx.stderr.write(`live restore: ${p.message}\n`);
      return;
    }
    if (p.phase !== 'mirror' || p.disk === undefined) return;
    const done = p.diskDone ?? p.done;
    const total = p.diskTotal ?? p.total;
    let bar = bars.get(p.disk);
    if (!bar) bars.set(p.disk, (bar = ctx.progress(`live restore ${p.disk}`, total)));
    bar.update(done, total);
  };
  let cancelled = false;
  const onAbort = (): void => {
    cancelled = true;
    ctx.stderr.write(`\ncancelling ${taskId}: the VM is stopped and its volumes freed (Ctrl-C again leaves that to the daemon)\n`);
    ipcRequest(socketPath, TASK_REQUESTS.cancel, { ids: [taskId], reason: CTRL_C_REASON, ifActive: true }, { timeoutMs: CANCEL_TIMEOUT_MS }).catch((err: Error) => {
      ctx.stderr.write(`pve-cbt: the cancel was not delivered (${err.message}); the restore goes on\n`);
    });
  };
  if (ctx.signal.aborted) onAbort();
  else ctx.signal.addEventListener('abort', onAbort, { once: true });
  let outcome: TaskOutcome;
  try {
    [outcome] = await ipcRequest<TaskOutcome[]>(socketPath, TASK_REQUESTS.wait, { ids: [taskId] }, { timeoutMs: FOLLOW_TIMEOUT_MS, onProgress: (p) => onProgress(p as JobProgress) });
  } catch (err) {
    for (const b of bars.values()) b.finish('failed');
    if (!IpcConnectionLostError.is(err)) throw err;
    const hint = `the daemon stopped during the live restore; its next start resolves it (the VM stopped and its volumes freed, or the restore finished if it had switched to the volumes): pve-cbt task show ${taskId}`;
    throw new CbtError(err.code, err.message, { ...err.details, taskId, vmid, hint }, { cause: err });
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
  }
  if (outcome.status !== 'ok' || !outcome.result) {
    for (const b of bars.values()) b.finish('failed');
    if (outcome.status === 'cancelled' && cancelled) {
      throw CliCancelledError({ what: `live restore of VM ${vmid}`, taskId, reason: CTRL_C_REASON, hint: CANCELLED_HINT });
    }
    const e = outcome.error ?? TaskNoResultError({ taskId, status: outcome.status }).toJSON();
    throw new CbtError(e.code, e.message, { taskId, ...(e.details ?? {}) });
  }
  const result = outcome.result as LiveRestoreResult;
  const lines = [
    `restored VM ${vmid} live from ${result.backup}: ${result.disks.map((d) => `${d.disk}=${d.volid}`).join(', ')}`,
    `the guest ran after ${formatDuration(result.live.guestRunningMs)}, on its volumes after ${formatDuration(result.live.totalMs)} (QEMU pid ${result.live.pid}, still running)`,
    `config: ${result.conf}`,
    ...result.dropped.map((l) => `not restored: ${l.key}: ${l.value} (${l.reason})`),
    ...result.freed.map((v) => `freed old volume ${v}`),
    ...result.leftover.map((l) => `warning: could not free old volume ${l.volid}: ${l.reason}`),
  ];
  return { data: { ...result, taskId }, text: lines.join('\n') };
}
