/**
 * A real `pve-cbt daemon` process (the compiled CLI, as systemd runs it) interrupted in the middle of
 * a backup: by SIGTERM (graceful: the backup is cancelled, no manifest, the bitmap keeps every change,
 * the process exits 0) and by SIGKILL (nothing graceful: the next daemon's startup recovery removes the
 * partial backup and pve-cbt's leftovers in QEMU and settles the bitmaps). Either way the next backup
 * is an incremental that restores byte-exact.
 *
 * The signal is sent on the first progress frame the daemon streams for the backup, with QEMU frozen
 * (SIGSTOP) just before and thawed only once the signal took effect (the process gone, or the daemon's
 * "daemon stopping" logged), so it always lands while the backup runs (qemu-hold.ts).
 */
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { queryDisks } from '../../daemon/qmp/query-disks';
import { REQUESTS, type BackupOutcome } from '../../daemon/service/requests';
import type { SimVm } from '../../daemon/sim/pve-node';
import { TASK_REQUESTS } from '../../daemon/service/task-handlers';
import type { TaskRecord } from '../../daemon/service/task-records';
import { freezeQemu, logBarrier, type QemuFreeze } from './qemu-hold';
import { addVm, createStack, diskOf, MiB, startChildDaemon, killChildDaemon, lastStartupRecovery, type ChildDaemon, type Stack } from './e2e-harness';

async function ownBitmaps(vm: SimVm): Promise<{ name: string; count: number; recording: boolean }[]> {
  return vm.qmp(async (q) => (await queryDisks(q))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-')));
}

/** What pve-cbt may have left in QEMU: block jobs, extra block nodes (fleecing images), NBD exports. */
async function qemuLeftovers(vm: SimVm): Promise<{ jobs: unknown[]; nodes: string[]; exports: unknown[] }> {
  return vm.qmp(async (q) => {
    const jobs = (await q.execute('query-block-jobs')) as unknown[];
    const nodes = ((await q.execute('query-named-block-nodes')) as { 'node-name': string; file: string }[]).filter((n) => /scratch|fleece|pve-cbt/i.test(`${n['node-name']} ${n.file}`)).map((n) => n['node-name']);
    const exports = (await q.execute('query-block-exports')) as unknown[];
    return { jobs, nodes, exports };
  });
}


describe('a real daemon process interrupted during a backup', () => {
  let stack: Stack;
  let child: ChildDaemon | undefined;
  beforeAll(async () => {
    stack = await createStack();
  }, 60_000);
  afterAll(async () => {
    killChildDaemon(child);
    await stack?.cleanup();
  });

  const interruptedBackup = async (vm: SimVm, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    child = await startChildDaemon(stack);
    const exited = child.exited;
    const stopping = logBarrier(stack.config.logDir, 'daemon stopping');
    let freeze: QemuFreeze | undefined;
    try {
      await ipcRequest<BackupOutcome[]>(stack.config.socketPath, REQUESTS.backup, { vmids: [vm.vmid] }, {
        timeoutMs: 120_000,
        onProgress: () => {
          if (freeze) return;
          // QEMU is frozen before the signal, so the backup cannot finish its reads (and commit)
          // however slowly a loaded machine delivers the signal. It thaws once the signal took
          // effect: SIGKILL when the process is gone, SIGTERM when the daemon logged its stop
          // (the next statements cancel the running tasks; their teardown needs QEMU).
          freeze = freezeQemu(vm.pid()!);
          child!.proc.kill(signal);
          const took = signal === 'SIGKILL' ? exited.then(() => undefined) : stopping.reached(60_000);
          took.then(() => setTimeout(() => freeze!.thaw(), 500), () => freeze!.thaw());
        },
      }).catch(() => undefined);
      expect(freeze).toBeDefined();
      return await exited;
    } finally {
      freeze?.thaw();
      child = undefined;
    }
  };

  test.each<[NodeJS.Signals, number]>([
    ['SIGTERM', 801],
    ['SIGKILL', 802],
  ])('%s: no manifest, bitmap keeps every change, next backup incremental and byte-exact', async (signal, vmid) => {
    const vm = await addVm(stack, vmid, 'raw', { sizeMiB: 16 });
    await vm.start();
    await stack.startDaemon();
    expect(diskOf((await stack.backupAndCheck([vm])).get(vmid)).mode).toBe('full');
    const before = await ownBitmaps(vm);
    expect(before).toHaveLength(1);
    await stack.stopDaemon();

    // 12 MiB of changes, so the incremental is still reading when the signal arrives.
    for (let i = 0; i < 12; i++) await vm.write('scsi0', { pattern: 0x80 + i, offset: (2 + i) * MiB, length: MiB });
    const exit = await interruptedBackup(vm, signal);
    if (signal === 'SIGTERM') expect(exit).toEqual({ code: 0, signal: null });
    else expect(exit.signal).toBe('SIGKILL');

    const s = await stack.startDaemon();
    // Only the first backup is committed; the interrupted one left no manifest (or was removed at start).
    expect((await s.repo.listBackups(vmid)).length).toBe(1);
    // The interrupted job is on record as what it was: cancelled by the stop, or cut off by the kill.
    const job = s.catalog.listJobs({ vmid })[0];
    if (signal === 'SIGTERM') expect(job).toMatchObject({ status: 'cancelled', backupId: null });
    else expect(job).toMatchObject({ status: 'failed', backupId: null, errorCode: 'CBT_JOB_INTERRUPTED' });
    // `pve-cbt task list` (the catalog's history, from the previous daemon) shows it as such.
    const [task] = await stack.request<TaskRecord[]>(TASK_REQUESTS.list, { vmid, limit: 1 });
    expect(task).toMatchObject({ id: job.id, vmid, kind: 'backup', status: signal === 'SIGTERM' ? 'cancelled' : 'interrupted', endedAt: expect.any(String) });
    // A graceful stop cleaned up itself; after a SIGKILL the next daemon's recovery had work to do.
    const recovery = lastStartupRecovery<{ qemuCleanups: { vmid: number; actions: string[] }[] }>(stack.config.logDir);
    const cleaned = recovery.qemuCleanups.find((c) => c.vmid === vmid)?.actions ?? [];
    if (signal === 'SIGTERM') expect(cleaned).toEqual([]);
    else expect(cleaned.length).toBeGreaterThan(0);
    // After startup recovery QEMU holds nothing of the interrupted backup ...
    expect(await qemuLeftovers(vm)).toEqual({ jobs: [], nodes: [], exports: [] });
    // ... and one pve-cbt bitmap that recorded at least every change since the committed backup.
    const after = await ownBitmaps(vm);
    expect(after).toHaveLength(1);
    expect(after[0].recording).toBe(true);
    expect(after[0].count).toBeGreaterThanOrEqual(12 * MiB);

    const next = diskOf((await stack.backupAndCheck([vm])).get(vmid));
    expect(next.mode).toBe('incremental');
    expect(next.bytesRead).toBeGreaterThanOrEqual(12 * MiB);
    await stack.stopDaemon();
  });
});
