/**
 * Issue 17 points 3 and 4 with the real daemon, real QEMU (simulator) and the compiled CLI:
 * - after a kill -9 of QEMU that no hook saw (hookscript not attached), the ledger still says
 *   `valid`; `status` asks QEMU (a running VM over QMP, a stopped one's image with qemu-img) through
 *   the engine's mode decision, so it shows `invalid` and the next backup's full-compare with the
 *   same reason code the backup then records;
 * - during a backup `status` shows the running task with its progress (and reuse);
 * - the backup's progress shows PBS-style reuse during the backup and in its final line: 100 % when
 *   what was read was already in the repository, less when it was new.
 * Every backup is restored and compared byte for byte.
 */
import { spawn } from 'node:child_process';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { REQUESTS, type TaskProgress, type BackupStarted } from '../../daemon/service/requests';
import { TASK_REQUESTS, type TaskOutcome } from '../../daemon/service/task-handlers';
import type { VmStatus } from '../../daemon/service/vm-status';
import { addVm, CLI, createStack, diskOf, MiB, type Stack } from './e2e-harness';

function run(stack: Stack, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args, '--config', stack.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('status asks QEMU; status during a backup; reuse in the progress', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await createStack();
    await stack.startDaemon();
  }, 60_000);
  afterAll(async () => {
    await stack?.cleanup();
  });

  test('kill -9 no hook saw: status says invalid with the reason the next backup then gives (qcow2 and raw, stopped and restarted)', async () => {
    const vms = [await addVm(stack, 921, 'qcow2', { attach: false }), await addVm(stack, 922, 'raw', { attach: false })];
    for (const vm of vms) await vm.start();
    await stack.backupAndCheck(vms);
    // (No guest write before the kill: QEMU would lose what it had not flushed, and the simulator's
    // reference would not know.)
    for (const vm of vms) {
      const d = (await stack.status(vm.vmid)).disks[0];
      expect(d).toMatchObject({ state: 'valid', ledgerState: 'valid', nextBackup: { mode: 'incremental', code: 'bitmap-valid' } });
    }

    for (const vm of vms) await vm.crash();
    // Stopped: the qcow2 image holds no usable bitmap (QEMU never closed it: missing, or in use); a raw disk kept none.
    const stopped = await Promise.all(vms.map((vm) => stack.status(vm.vmid)));
    expect(stopped.map((s) => s.running)).toEqual([false, false]);
    expect(stopped.map((s) => s.disks[0].ledgerState)).toEqual(['valid', 'valid']);
    expect(stopped.map((s) => s.disks[0].state)).toEqual(['invalid', 'invalid']);
    expect(stopped[0].disks[0].nextBackup?.code).toMatch(/^bitmap-(missing|inconsistent)$/);
    expect(stopped[1].disks[0].nextBackup?.code).toBe('stopped-transient');

    for (const vm of vms) await vm.start();
    for (const vm of vms) await vm.write('scsi0', { pattern: 0x62, offset: 3 * MiB, length: 65536 });
    const st = await Promise.all(vms.map((vm) => stack.status(vm.vmid)));
    expect(st.map((s) => s.disks[0].ledgerState)).toEqual(['valid', 'valid']);
    expect(st.map((s) => s.disks[0].state)).toEqual(['invalid', 'invalid']);
    expect(st.map((s) => s.disks[0].nextBackup?.mode)).toEqual(['full-compare', 'full-compare']);
    for (const s of st) expect(s.disks[0].reason).toMatch(/^(bitmap-missing|bitmap-inconsistent|qemu-restarted): ledger says valid/);

    // The CLI says it the same way, with ISO times.
    const text = await run(stack, ['status', '922']);
    expect(text.code).toBe(0);
    const row = text.stdout.split('\n').find((l) => l.startsWith('scsi0'))!;
    expect(row).toMatch(/^scsi0\s+raw\s+\S+\s+invalid\s+(-|\S+ \S+)\s+full-compare\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ full\s+(bitmap-missing|qemu-restarted): /);

    // The backups agree with what status said, and restore byte-exact.
    const done = await stack.backupAndCheck(vms);
    vms.forEach((vm, i) => {
      const d = diskOf(done.get(vm.vmid));
      expect(d.mode).toBe('full-compare');
      expect(d.reason.split(':')[0]).toBe(st[i].disks[0].nextBackup?.code);
    });
    for (const vm of vms) expect((await stack.status(vm.vmid)).disks[0]).toMatchObject({ state: 'valid', nextBackup: { mode: 'incremental' } });
  });

  test('status during a backup shows the running task and its progress; the progress shows reuse to the final line', async () => {
    const vm = await addVm(stack, 923, 'raw', { sizeMiB: 160 });
    await vm.start();
    await stack.backupAndCheck([vm]);
    // Dirty again, with the bytes the backup already holds (addVm wrote 256 KiB of vmid % 251 at 0): all reused ...
    await vm.write('scsi0', { pattern: 923 % 251, offset: 0, length: 256 * 1024 });
    const same = await run(stack, ['backup', '923']);
    expect(same.code).toBe(0);
    const sameLines = same.stderr.trim().split('\n');
    expect(sameLines[sameLines.length - 1]).toMatch(/^VM 923 scsi0 incremental: .*, reused 100%$/);
    expect(same.stdout).toMatch(/^scsi0\s+raw\s+incremental\s/m);

    // ... then 64 MiB of new bytes: during the backup status shows the task, its progress, its reuse.
    for (let i = 0; i < 8; i++) await vm.write('scsi0', { pattern: 0x90 + i, offset: (16 + i * 8) * MiB, length: 8 * MiB });
    const ref = await vm.snapshotReference('scsi0');
    const [started] = await stack.request<BackupStarted[]>(REQUESTS.backup, { vmids: [923], detach: true });
    const pid = vm.pid()!;
    let during: VmStatus | undefined;
    let last: TaskProgress | undefined;
    let stopped = false;
    const ended = ipcRequest<TaskOutcome[]>(stack.config.socketPath, TASK_REQUESTS.wait, { ids: [started.taskId] }, {
      timeoutMs: 300_000,
      onProgress: (p) => {
        last = p as TaskProgress;
        if (stopped || last.done === 0) return;
        stopped = true;
        process.kill(pid, 'SIGSTOP'); // holds the backup still while status is asked
      },
    });
    for (const end = Date.now() + 60_000; !stopped && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    let text: { code: number | null; stdout: string };
    try {
      during = await stack.status(923);
      text = await run(stack, ['status', '923']);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(during.task).toMatchObject({ id: started.taskId, kind: 'backup', status: 'running', startedAt: expect.any(String), progress: { disk: 'scsi0', phase: 'incremental', done: expect.any(Number), total: 64 * MiB } });
    expect(during.task!.progress!.done).toBeGreaterThan(0);
    expect(during.disks[0].nextBackup).toBeNull();
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^VM 923: running \\(pid ${pid}\\), backup task ${started.taskId} running since \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ: scsi0 incremental \\d+% \\S+ \\S+/64\\.0 MiB`, 'm'));

    const [end] = await ended;
    expect(end.status).toBe('ok');
    expect(await stack.compareRestore(end.backupId!, 'scsi0', ref)).toBe(-1);
    // The last frame comes once every insert settled: new bytes, little reuse (only the zero tail chunks, if any).
    expect(last).toMatchObject({ done: 64 * MiB, total: 64 * MiB, chunkBytes: 64 * MiB });
    expect(last!.reusedBytes).toBeLessThan(64 * MiB);
    expect(diskOf({ id: end.backupId!, vmid: 923, disks: (end.result as { disks: never[] }).disks }).mode).toBe('incremental');
  });
});
