/**
 * `pve-cbt task list|show|log|cancel`: the daemon's tasks, like the Proxmox task list. Every backup
 * (from `pve-cbt backup` or a scheduled job) is a task with an id (`task-<daemon start>-<n>`),
 * its VM, kind, status (queued, running, ok, failed, cancelled, interrupted: the daemon stopped
 * during it), start and end (ISO 8601 UTC). The history lives in the catalog, so it survives a
 * daemon restart. `--json` data: `list` is `{ tasks: TaskRecord[] }`, `show` and `cancel` one TaskRecord
 * (daemon/service/task-records.ts), `log` the task's log entries as JSON lines.
 */
import { formatLogLine, type LogEntry } from '../../log/log-entry';
import { readLog } from '../../log/read-log';
import { TaskLogEmptyError } from '../../service/task-errors';
import { TASK_REQUESTS, type TaskOutcome } from '../../service/task-handlers';
import type { TaskRecord } from '../../service/task-records';
import { defineCommand, type CommandDefinition } from '../command';
import { daemonRequest } from '../daemon-request';
import { parsePositiveInt, parseVmid } from '../option-parsers';
import { taskListText, taskShowText } from '../task-text';

/** A cancel waits until the task has cleaned up (bitmaps rolled back); that is bounded by the engine. */
const CANCEL_TIMEOUT_MS = 10 * 60 * 1000;

const ID_PARAM = { name: 'id', description: 'task id (see pve-cbt task list)', required: true } as const;

const listSub = defineCommand<{ vm?: number; limit: number }>({
  name: 'list',
  summary: 'list tasks: running and queued first, then the history newest first',
  options: [
    { flags: '--vm <vmid>', description: 'only tasks of this VM', parse: parseVmid },
    { flags: '--limit <n>', description: 'at most this many finished tasks', parse: parsePositiveInt, default: 50 },
  ],
  async run(ctx) {
    const list = await daemonRequest<TaskRecord[]>(ctx, TASK_REQUESTS.list, { ...(ctx.opts.vm !== undefined ? { vmid: ctx.opts.vm } : {}), limit: ctx.opts.limit });
    return { data: { tasks: list }, text: taskListText(list) };
  },
});

const showSub = defineCommand<Record<string, never>, { id: string }>({
  name: 'show',
  summary: 'show one task: status, times, progress, its backup or error',
  params: [ID_PARAM],
  async run(ctx) {
    const t = await daemonRequest<TaskRecord>(ctx, TASK_REQUESTS.show, { id: ctx.args.id });
    return { data: t, text: taskShowText(t) };
  },
});

const logSub = defineCommand<{ dir?: string }, { id: string }>({
  name: 'log',
  summary: "show the daemon log entries of one task (its taskId), oldest first",
  params: [ID_PARAM],
  options: [{ flags: '--dir <path>', description: 'read logs from this directory instead of the configured logDir' }],
  async run(ctx) {
    const logDir = ctx.opts.dir ?? ctx.loadConfig().logDir;
    const entries: LogEntry[] = readLog(logDir, { taskId: ctx.args.id });
    if (entries.length === 0) throw TaskLogEmptyError({ taskId: ctx.args.id, logDir });
    for (const e of entries) {
      if (ctx.json) ctx.out.json(e);
      else ctx.out.line(formatLogLine(e, { timestamp: true }));
    }
  },
});

const cancelSub = defineCommand<Record<string, never>, { id: string }>({
  name: 'cancel',
  summary: 'cancel a queued or running task; returns once it has cleaned up',
  params: [ID_PARAM],
  async run(ctx) {
    const [t] = await daemonRequest<TaskOutcome[]>(ctx, TASK_REQUESTS.cancel, { ids: [ctx.args.id], reason: 'cancelled with pve-cbt task cancel' }, { timeoutMs: CANCEL_TIMEOUT_MS });
    return { data: t, text: `task ${t.id} (${t.kind} of VM ${t.vmid ?? '-'}): ${t.status}` };
  },
});

export const taskCommand = defineCommand({
  name: 'task',
  summary: 'list, show, log or cancel daemon tasks (no subcommand: list)',
  examples: ['pve-cbt task list', 'pve-cbt task show task-mi8x2k-3', 'pve-cbt task log task-mi8x2k-3', 'pve-cbt task cancel task-mi8x2k-3'],
  subcommands: [listSub, showSub, logSub, cancelSub],
  run: listSub.run as CommandDefinition['run'],
});
