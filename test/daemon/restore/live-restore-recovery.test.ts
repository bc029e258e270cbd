/**
 * A live restore is a task of the daemon, which serves the export: here a real `pve-cbt daemon`
 * process (dist/, as systemd runs it) is killed with SIGKILL in the middle of one, and the next
 * daemon's start resolves it (daemon/restore/live-restore-recovery.ts):
 *
 * - killed while the data moves (each mirror job held at 1 KiB/s): before the restart the VM is
 *   provably still running on its overlays over an export nobody serves; after it the VM is stopped,
 *   the allocated volumes freed, no config written, nothing of the export left, and the task is
 *   recorded failed with CBT_RESTORE_LIVE_INTERRUPTED (`task list`, `task show`);
 * - killed after the switch (test kill points: right after the jobs concluded, before the switch is
 *   checked; and once the export is closed, before the config): the restore is finished — the VM
 *   runs on, on its volumes, the config is written with the new volids, the task is `ok` — and
 *   each volume equals the backup byte for byte.
 *
 * The backup is made through an in-process daemon; QEMU is the simulator's (real, TCG).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ipcRequest } from '../../../shared/ipc/ipc-client';
import { readQemuProcess } from '../../../daemon/pve/qemu-process';
import { stopLiveVm } from '../../../daemon/restore/live-restore-launch';
import { journalFile, liveRestoreJournalDir } from '../../../daemon/restore/live-restore-journal';
import type { RecoveredLiveRestore } from '../../../daemon/restore/live-restore-recovery';
import { LIVE_RESTORE_REQUEST, type LiveRestoreStarted } from '../../../daemon/restore/live-restore-task';
import type { JobProgress } from '../../../daemon/jobs/job-queue';
import type { DiskLayout } from '../../../daemon/sim/qemu-command';
import { TASK_REQUESTS } from '../../../daemon/service/task-handlers';
import type { TaskRecord } from '../../../daemon/service/task-records';
import { KILL_POINT_ENV } from '../../../daemon/service/test-kill-point';
import { createStack, killChildDaemon, lastStartupRecovery, MiB, startChildDaemon, type ChildDaemon, type Stack } from '../../e2e/e2e-harness';

const execFileP = promisify(execFile);
const KiB = 1024;
let stack: Stack;
let child: ChildDaemon | undefined;
const backups: Record<DiskLayout, { id: string; refs: Record<string, Buffer> }> = {} as never;
const started: number[] = [];

beforeAll(async () => {
  stack = await createStack({ installHooks: false });
  for (const [vmid, layout] of [[500, 'drive'], [510, 'blockdev']] as const) {
    const vm = await stack.node.addVm({ vmid, layout, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'raw', sizeMiB: 4 }] });
    await vm.start();
    await vm.write('scsi0', { pattern: 0x61, offset: 0, length: 1536 * KiB });
    await vm.write('scsi0', { pattern: 0x62, offset: 3 * MiB, length: 192 * KiB });
    await vm.write('scsi1', { pattern: 0x63, offset: 256 * KiB, length: 3 * MiB });
    await vm.stop();
    const refs = { scsi0: fs.readFileSync(await vm.snapshotReference('scsi0')), scsi1: fs.readFileSync(await vm.snapshotReference('scsi1')) };
    await stack.startDaemon();
    const id = (await stack.backupAndCheck([vm])).get(vmid)!.id;
    await stack.stopDaemon();
    backups[layout] = { id, refs };
  }
}, 180_000);

afterEach(async () => {
  killChildDaemon(child);
  child = undefined;
  await stack.stopDaemon();
  for (const vmid of started.splice(0)) await stopLiveVm(stack.node.runDir, vmid, path.join(stack.node.runDir, `${vmid}.qmp`), 5_000);
});
afterAll(async () => {
  await stack?.cleanup();
});

const confOf = (vmid: number): string => path.join(stack.node.configDir, `${vmid}.conf`);
const images = (vmid: number): string[] => {
  const dir = path.join(stack.node.storageDir, 'images', String(vmid));
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
};
const volPath = (volid: string): string => path.join(stack.node.storageDir, 'images', volid.replace(/^local:/, ''));
const liveDirs = (vmid: number): string[] => fs.readdirSync(stack.node.runDir).filter((n) => n.startsWith(`${vmid}.live-restore-`));
const journal = (vmid: number): string => journalFile(liveRestoreJournalDir(stack.config.stateDir), vmid);

/** The newest startup recovery's live restores, once the in-process daemon's log has reached the file. */
async function recoveredLive(): Promise<RecoveredLiveRestore[]> {
  for (let end = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 100))) {
    const got = lastStartupRecovery<{ liveRestores: RecoveredLiveRestore[] }>(stack.config.logDir).liveRestores;
    if (got.length > 0 || Date.now() > end) return got;
  }
}

async function contents(image: string, format: string): Promise<Buffer> {
  const out = path.join(stack.work, `contents-${path.basename(image)}.raw`);
  await execFileP('qemu-img', ['convert', '-U', '-f', format, '-O', 'raw', image, out]);
  const data = fs.readFileSync(out);
  fs.rmSync(out);
  return data;
}

/** Starts a live restore in a child daemon and SIGKILLs it when `killWhen` says so (or lets a kill point do it). */
async function restoreAndKill(vmid: number, layout: DiskLayout, opts: { speed?: number; killPoint?: string; killWhen?: (p: JobProgress) => boolean }): Promise<{ taskId: string; frames: JobProgress[] }> {
  child = await startChildDaemon(stack, { env: opts.killPoint ? { [KILL_POINT_ENV]: opts.killPoint } : {} });
  started.push(vmid);
  const { taskId } = await ipcRequest<LiveRestoreStarted>(stack.config.socketPath, LIVE_RESTORE_REQUEST, { backupId: backups[layout].id, vmid, storage: 'local', speed: opts.speed ?? 0 }, { timeoutMs: 30_000 });
  const frames: JobProgress[] = [];
  let sent = false;
  const waited = await ipcRequest(stack.config.socketPath, TASK_REQUESTS.wait, { ids: [taskId] }, {
    timeoutMs: 120_000,
    onProgress: (p) => {
      frames.push(p as JobProgress);
      if (!sent && opts.killWhen?.(p as JobProgress)) {
        sent = true;
        child!.proc.kill('SIGKILL');
      }
    },
  }).then(
    () => 'answered',
    (e: { code?: string }) => e.code,
  );
  expect(waited).toBe('CBT_IPC_CONNECTION_LOST');
  expect((await child.exited).signal).toBe('SIGKILL');
  child = undefined;
  return { taskId, frames };
}

test('kill -9 of the daemon while the data moves: the next start stops the VM, frees the volumes, writes no config, records CBT_RESTORE_LIVE_INTERRUPTED', async () => {
  const vmid = 900;
  const { taskId, frames } = await restoreAndKill(vmid, 'drive', { speed: 1024, killWhen: (p) => p.phase === 'mirror' && p.done > 0 });
  expect(frames.some((f) => f.message?.startsWith(`VM ${vmid} runs on the backup`))).toBe(true);
  // The state the recovery is for: the VM runs on, half on an export no process serves.
  const qemu = readQemuProcess(stack.node.runDir, vmid);
  expect(qemu).toBeDefined();
  expect(images(vmid)).toEqual([`vm-${vmid}-disk-0.qcow2`, `vm-${vmid}-disk-1.raw`]);
  expect(liveDirs(vmid)).toHaveLength(1);
  expect(JSON.parse(fs.readFileSync(journal(vmid), 'utf8'))).toMatchObject({ vmid, taskId, phase: 'mirror', qemu: { pid: qemu!.pid } });
  expect(fs.existsSync(confOf(vmid))).toBe(false);

  await stack.startDaemon();
  expect(readQemuProcess(stack.node.runDir, vmid)).toBeUndefined();
  expect(images(vmid)).toEqual([]);
  expect(fs.existsSync(confOf(vmid))).toBe(false);
  expect(liveDirs(vmid)).toEqual([]);
  expect(fs.existsSync(journal(vmid))).toBe(false);
  expect(await recoveredLive()).toEqual([
    { vmid, taskId, phase: 'mirror', vm: 'on-export', outcome: 'undone', vmStopped: true, freed: [`local:${vmid}/vm-${vmid}-disk-0.qcow2`, `local:${vmid}/vm-${vmid}-disk-1.raw`], leftover: [] },
  ]);
  const [task] = await stack.request<TaskRecord[]>(TASK_REQUESTS.list, { vmid });
  expect(task).toMatchObject({ id: taskId, vmid, kind: 'live-restore', status: 'failed', endedAt: expect.any(String), error: { code: 'CBT_RESTORE_LIVE_INTERRUPTED' } });
  expect(task.error!.message).toContain('the VM was stopped');
  expect(task.error!.message).toContain('no config was written');
  expect(await stack.request<TaskRecord>(TASK_REQUESTS.show, { id: taskId })).toMatchObject({ status: 'failed', error: { code: 'CBT_RESTORE_LIVE_INTERRUPTED' } });
});

test.each([
  ['right after the jobs concluded (switch not yet checked)', 'live-restore-after-switch', 901, 'drive', 'switch'],
  ['once the export is closed (config not yet written)', 'live-restore-export-closed', 911, 'blockdev', 'config'],
] as const)('kill -9 of the daemon %s: the next start finishes the restore, byte-exact', async (_when, killPoint, vmid, layout, phase) => {
  const { taskId, frames } = await restoreAndKill(vmid, layout, { killPoint });
  // A step's frame carries the bytes moved of the total over the disks (what `pve-cbt tasks` shows),
  // not 0/0: after the last switch (reached before the export-closed point only), all of it.
  if (killPoint === 'live-restore-export-closed') {
    const lastSwitch = frames.filter((f) => f.message !== undefined && f.phase === 'switched').pop();
    expect(lastSwitch?.total).toBeGreaterThan(0);
    expect(lastSwitch?.done).toBe(lastSwitch?.total);
  }
  const qemu = readQemuProcess(stack.node.runDir, vmid);
  expect(qemu).toBeDefined();
  expect(fs.existsSync(confOf(vmid))).toBe(false);
  expect(JSON.parse(fs.readFileSync(journal(vmid), 'utf8'))).toMatchObject({ vmid, taskId, phase });

  await stack.startDaemon();
  expect(await recoveredLive()).toEqual([{ vmid, taskId, phase, vm: 'on-volumes', outcome: 'finished', vmStopped: false, freed: [], leftover: [] }]);
  // The VM runs on, on its volumes; the config names them; nothing of the export is left.
  expect(readQemuProcess(stack.node.runDir, vmid)).toEqual(qemu);
  const conf = fs.readFileSync(confOf(vmid), 'utf8');
  expect(conf).toContain(`scsi0: local:${vmid}/vm-${vmid}-disk-0.qcow2,`);
  expect(conf).toContain(`scsi1: local:${vmid}/vm-${vmid}-disk-1.raw,`);
  expect(liveDirs(vmid)).toEqual([]);
  expect(fs.existsSync(journal(vmid))).toBe(false);
  const [task] = await stack.request<TaskRecord[]>(TASK_REQUESTS.list, { vmid });
  expect(task).toMatchObject({ id: taskId, kind: 'live-restore', status: 'ok', error: null, result: { vmid, conf: confOf(vmid), live: { state: 'complete', recovered: true } } });

  expect(await stopLiveVm(stack.node.runDir, vmid, path.join(stack.node.runDir, `${vmid}.qmp`))).toBe(true);
  const { refs } = backups[layout];
  expect((await contents(volPath(`local:${vmid}/vm-${vmid}-disk-0.qcow2`), 'qcow2')).equals(refs.scsi0)).toBe(true);
  expect((await contents(volPath(`local:${vmid}/vm-${vmid}-disk-1.raw`), 'raw')).equals(refs.scsi1)).toBe(true);
  // The finished VM starts from its config.
  const vm = await stack.node.adoptVm(vmid);
  await vm.start();
  await vm.stop();
});
