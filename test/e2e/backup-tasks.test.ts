/**
 * Issue 17 point 2 with the real daemon, real QEMU (simulator), real SQLite and the compiled CLI as
 * a child process, as an admin runs it:
 * - Ctrl-C (SIGINT) on a foreground `pve-cbt backup` cancels the daemon's task: the CLI says
 *   "cancelled" and exits 130, no manifest is written, QEMU keeps the old bitmap with every change,
 *   and the next backup is an incremental that restores byte-exact;
 * - `--detach` answers at once with the task id and the backup runs on (restored byte-exact);
 * - `task list|show|log|cancel`: the Proxmox-like list with ISO times, one task's log, cancel of a
 *   running task (and refusal for an ended or unknown one), and the history after a daemon restart.
 *
 * The cancel (Ctrl-C, `task cancel`) is sent on the first progress frame of the backup (followed
 * with `task-wait`), and QEMU is stopped (SIGSTOP) at that frame until the daemon has logged the
 * cancel request, so the cancel always lands while the backup runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { readLog } from '../../daemon/log/read-log';
import { queryDisks } from '../../daemon/qmp/query-disks';
import type { SimVm } from '../../daemon/sim/pve-node';
import { TASK_REQUESTS, type TaskOutcome } from '../../daemon/service/task-handlers';
import type { TaskRecord } from '../../daemon/service/task-records';
import { addVm, CLI, createStack, diskOf, MiB, type Stack } from './e2e-harness';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

interface Cli {
  proc: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function cli(stack: Stack, args: string[]): Cli {
  const proc = spawn(process.execPath, [CLI, ...args, '--config', stack.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => proc.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { proc, done };
}

const run = (stack: Stack, args: string[]) => cli(stack, args).done;

async function ownBitmaps(vm: SimVm): Promise<{ name: string; count: number; recording: boolean }[]> {
  return vm.qmp(async (q) => (await queryDisks(q))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-')));
}

/** 128 MiB of guest writes from `fromMiB` on, in 8 MiB pieces of different bytes. */
async function bigChange(vm: SimVm, seed: number, fromMiB = 8): Promise<void> {
  for (let i = 0; i < 16; i++) await vm.write('scsi0', { pattern: (seed + i) & 0xff, offset: (fromMiB + i * 8) * MiB, length: 8 * MiB });
}

/** The running backup task of a VM, once the daemon lists it. */
async function runningTask(stack: Stack, vmid: number): Promise<TaskRecord> {
  for (const end = Date.now() + 60_000; Date.now() < end; ) {
    const t = (await stack.request<TaskRecord[]>(TASK_REQUESTS.list, { vmid })).find((x) => x.status === 'running' || x.status === 'queued');
    if (t) return t;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no task of VM ${vmid} appeared`);
}

/** Resolves once the daemon has logged `message` for the task. */
async function untilLogged(stack: Stack, taskId: string, message: string): Promise<void> {
  for (const end = Date.now() + 60_000; Date.now() < end; ) {
    if (readLog(stack.config.logDir, { taskId }).some((e) => e.message === message)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the daemon never logged "${message}" for ${taskId}`);
}

/**
 * Holds a running backup still: QEMU stops (SIGSTOP) on the task's first progress frame, so the
 * task cannot end before the test's cancel arrives; `resume` lets QEMU go on (SIGCONT).
 */
async function holdOnFirstFrame(stack: Stack, vm: SimVm, taskId: string, alsoThen: () => void = () => undefined): Promise<{ ended: Promise<TaskOutcome[]>; resume(): void }> {
  const pid = vm.pid()!;
  let held!: () => void;
  const holding = new Promise<void>((r) => (held = r));
  const ended = follow(stack, taskId, () => {
    process.kill(pid, 'SIGSTOP');
    alsoThen();
    held();
  });
  await Promise.race([holding, ended]);
  return { ended, resume: () => process.kill(pid, 'SIGCONT') };
}

/** Follows a task; `onFirstFrame` runs on its first progress frame with bytes read. */
function follow(stack: Stack, id: string, onFirstFrame: () => void): Promise<TaskOutcome[]> {
  let fired = false;
  return ipcRequest<TaskOutcome[]>(stack.config.socketPath, TASK_REQUESTS.wait, { ids: [id] }, {
    timeoutMs: 300_000,
    onProgress: (p) => {
      if (fired || (p as { done: number }).done === 0) return;
      fired = true;
      onFirstFrame();
    },
  });
}

describe('backup tasks: Ctrl-C, --detach, task list/show/log/cancel', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await createStack();
    await stack.startDaemon();
  }, 60_000);
  afterAll(async () => {
    await stack?.cleanup();
  });

  test('Ctrl-C on a foreground backup cancels it: "cancelled", exit 130, no manifest, bitmap kept, next incremental byte-exact', async () => {
    const vm = await addVm(stack, 901, 'raw', { sizeMiB: 160 });
    await vm.start();
    expect(diskOf((await stack.backupAndCheck([vm])).get(901)).mode).toBe('full');
    const before = await ownBitmaps(vm);
    expect(before).toHaveLength(1);
    await bigChange(vm, 0x30);

    const c = cli(stack, ['backup', '901']);
    const task = await runningTask(stack, 901);
    const hold = await holdOnFirstFrame(stack, vm, task.id, () => c.proc.kill('SIGINT'));
    try {
      await untilLogged(stack, task.id, 'task cancel requested');
    } finally {
      hold.resume();
    }
    const followed = hold.ended;
    const r = await c.done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/cancelling task-/);
    expect(r.stderr).toMatch(/pve-cbt: backup of VM 901 cancelled \(Ctrl-C on pve-cbt backup, task task-/);
    expect(r.stderr).toMatch(/nothing was written/);
    expect(r.stderr).toMatch(/\(CBT_CLI_CANCELLED\)/);
    const [outcome] = await followed;
    expect(outcome).toMatchObject({ id: task.id, status: 'cancelled', backupId: null, endedAt: expect.stringMatching(ISO) });

    // Nothing committed; QEMU keeps the old bitmap, recording, with every change; no leftovers.
    expect(await stack.services.repo.listBackups(901)).toHaveLength(1);
    const after = await ownBitmaps(vm);
    expect(after.map((b) => b.name)).toEqual(before.map((b) => b.name));
    expect(after[0].recording).toBe(true);
    expect(after[0].count).toBeGreaterThanOrEqual(128 * MiB);
    const shown = await run(stack, ['task', 'show', task.id, '--json']);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: task.id, vmid: 901, kind: 'backup', status: 'cancelled', startedAt: expect.stringMatching(ISO) });

    const next = diskOf((await stack.backupAndCheck([vm])).get(901));
    expect(next.mode).toBe('incremental');
    expect(next.bytesRead).toBeGreaterThanOrEqual(128 * MiB);
  });

  test('--detach returns at once with the task id; the backup runs on and is byte-exact; task list/show/log/cancel', async () => {
    const vm = await addVm(stack, 902, 'qcow2', { sizeMiB: 160 });
    let bId = '';
    await vm.start();
    const ref = await vm.snapshotReference('scsi0');
    const d = await run(stack, ['backup', '902', '--detach', '--json']);
    expect(d.code).toBe(0);
    const started = (JSON.parse(d.stdout) as { tasks: { vmid: number; taskId: string }[] }).tasks;
    expect(started).toEqual([{ vmid: 902, taskId: expect.stringMatching(/^task-/) }]);
    const id = started[0].taskId;
    const [end] = await stack.request<TaskOutcome[]>(TASK_REQUESTS.wait, { ids: [id] }, 300_000);
    expect(end).toMatchObject({ id, status: 'ok', backupId: expect.any(String) });
    expect(await stack.compareRestore(end.backupId!, 'scsi0', ref)).toBe(-1);

    // Text: the Proxmox-like columns, ISO times, the backup it made.
    const listed = await run(stack, ['task', 'list', '--vm', '902']);
    expect(listed.code).toBe(0);
    const [head, row] = listed.stdout.trim().split('\n');
    expect(head.split(/\s+/)).toEqual(['ID', 'VM', 'KIND', 'STATUS', 'START', 'END', 'INFO']);
    expect(row.split(/\s+/)).toEqual([id, '902', 'backup', 'ok', expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), end.backupId]);

    // `pve-cbt task` alone is the list.
    const bare = await run(stack, ['task']);
    expect(bare.code).toBe(0);
    expect(bare.stdout).toMatch(new RegExp(`^${id}\\s+902\\s+backup\\s+ok\\s`, 'm'));

    // Its log: only this task's entries, the whole story.
    const log = await run(stack, ['task', 'log', id, '--json']);
    expect(log.code).toBe(0);
    const entries = log.stdout.trim().split('\n').map((l) => JSON.parse(l) as { taskId?: string; message: string });
    expect(entries.every((e) => e.taskId === id)).toBe(true);
    expect(entries.map((e) => e.message)).toEqual(expect.arrayContaining(['backup started', 'disk backed up', 'backup finished']));
    expect((await run(stack, ['task', 'log', id])).stdout).toMatch(/^\d{4}-\d\d-\d\dT\S+ info /m);

    // An ended task cannot be cancelled; an unknown one is named so.
    const again = await run(stack, ['task', 'cancel', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not queued or running \(it is ok\).*\n.*CBT_TASK_NOT_ACTIVE/);
    const nosuch = await run(stack, ['task', 'show', 'task-nosuch-1', '--json']);
    expect(nosuch.code).toBe(1);
    expect(JSON.parse(nosuch.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_TASK_NOT_FOUND' } });

    // `task cancel` of a running task (A) and of one queued behind it (B, same VM): both end
    // cancelled, nothing is committed. A is held still (QEMU stopped) until its cancel arrived.
    await bigChange(vm, 0x60);
    const [a] = (JSON.parse((await run(stack, ['backup', '902', '--detach', '--json'])).stdout) as { tasks: { taskId: string }[] }).tasks;
    const hold = await holdOnFirstFrame(stack, vm, a.taskId);
    let cancelA: Promise<{ code: number | null; stdout: string }>;
    try {
      const [b] = (JSON.parse((await run(stack, ['backup', '902', '--detach', '--json'])).stdout) as { tasks: { taskId: string }[] }).tasks;
      bId = b.taskId;
      expect(JSON.parse((await run(stack, ['task', 'show', b.taskId, '--json'])).stdout)).toMatchObject({ id: b.taskId, status: 'queued', startedAt: null });
      const cancelB = await run(stack, ['task', 'cancel', b.taskId, '--json']);
      expect(cancelB.code).toBe(0);
      expect(JSON.parse(cancelB.stdout)).toMatchObject({ id: b.taskId, status: 'cancelled', startedAt: expect.stringMatching(ISO), endedAt: expect.stringMatching(ISO) });
      cancelA = run(stack, ['task', 'cancel', a.taskId, '--json']);
      await untilLogged(stack, a.taskId, 'task cancel requested');
    } finally {
      hold.resume();
    }
    const ca = await cancelA;
    expect(ca.code).toBe(0);
    expect(JSON.parse(ca.stdout)).toMatchObject({ id: a.taskId, status: 'cancelled' });
    expect((await hold.ended)[0].status).toBe('cancelled');
    expect(await stack.services.repo.listBackups(902)).toHaveLength(1);

    // The history survives a daemon restart.
    await stack.stopDaemon();
    await stack.startDaemon();
    const history = (JSON.parse((await run(stack, ['task', 'list', '--vm', '902', '--json'])).stdout) as { tasks: TaskRecord[] }).tasks;
    expect(history.map((t) => [t.id, t.status]).sort()).toEqual(
      [
        [a.taskId, 'cancelled'],
        [bId, 'cancelled'],
        [id, 'ok'],
      ].sort(),
    );
    const next = diskOf((await stack.backupAndCheck([vm])).get(902));
    expect(next.mode).toBe('incremental');
    expect(next.bytesRead).toBeGreaterThanOrEqual(128 * MiB);
  });
});
