/**
 * A real daemon process SIGKILLed right after a backup's manifest commit (the test-only kill point
 * `after-manifest-commit`: the manifest is in place, the catalog row, QEMU's bitmap settlement and
 * the ledger update are not). The backup exists, so the next daemon's startup recovery finishes the
 * commit: `pve-cbt backup` reports the outcome as unknown (not as a failure), the job is recorded ok
 * with its backup, the catalog lists it, the new bitmap is the one
 * QEMU keeps and the ledger trusts, and the next backup is an incremental, byte-exact.
 */
import fs from 'node:fs';
import { ExitCode } from '../../daemon/cli/exit-codes';
import { queryDisks } from '../../daemon/qmp/query-disks';
import { KILL_POINT_ENV } from '../../daemon/service/test-kill-point';
import type { SimVm } from '../../daemon/sim/pve-node';
import { addVm, createStack, runCli, diskOf, MiB, startChildDaemon, killChildDaemon, lastStartupRecovery, type ChildDaemon, type Stack } from './e2e-harness';

async function ownBitmaps(vm: SimVm): Promise<string[]> {
  return vm.qmp(async (q) => (await queryDisks(q))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-')).map((b) => b.name));
}


describe('a daemon killed right after the manifest commit', () => {
  let stack: Stack;
  let child: ChildDaemon | undefined;
  beforeAll(async () => {
    stack = await createStack();
  }, 60_000);
  afterAll(async () => {
    killChildDaemon(child);
    await stack?.cleanup();
  });

  test.each<['raw' | 'qcow2', number]>([
    ['raw', 851],
    ['qcow2', 852],
  ])('%s: recovery finishes the commit; the next backup is an incremental, byte-exact', async (format, vmid) => {
    const vm = await addVm(stack, vmid, format, { sizeMiB: 16 });
    await vm.start();
    await stack.startDaemon();
    expect(diskOf((await stack.backupAndCheck([vm])).get(vmid)).mode).toBe('full');
    await stack.stopDaemon();

    await vm.write('scsi0', { pattern: 0x61, offset: 3 * MiB, length: 2 * MiB });
    const reference = await vm.snapshotReference('scsi0');
    child = await startChildDaemon(stack, { env: { [KILL_POINT_ENV]: 'after-manifest-commit' } });
    // `pve-cbt backup` cannot know whether the commit happened, and says so instead of "failed".
    const cli = await runCli(['--config', stack.configFile, 'backup', String(vmid), '--json']);
    expect(cli.code).toBe(ExitCode.DaemonUnavailable);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_IPC_CONNECTION_LOST', details: { vmids: [vmid], outcome: 'unknown' } } });
    expect((await child.exited).signal).toBe('SIGKILL');
    child = undefined;

    const s = await stack.startDaemon();
    const backups = await s.repo.listBackups(vmid);
    expect(backups).toHaveLength(2);
    const committed = backups[1].id;
    // The interrupted job is settled as what it was: a committed backup.
    const settled = lastStartupRecovery<{ interruptedJobs: { jobId: string; backupId: string | null; bitmaps: { disk: string; valid: boolean }[] }[] }>(stack.config.logDir).interruptedJobs.find((j) => j.backupId === committed);
    expect(settled?.bitmaps).toEqual([{ disk: 'scsi0', bitmap: expect.any(String), valid: true }]);
    const job = s.catalog.listJobs({ vmid })[0];
    expect(job).toMatchObject({ status: 'ok', backupId: committed });
    expect(s.catalog.getBackup(committed)?.id).toBe(committed);
    // QEMU keeps only the committed backup's bitmap, and the ledger trusts exactly that one.
    const manifest = await s.repo.readManifest(committed);
    const bitmap = manifest.disks[0].bitmap!;
    expect(await ownBitmaps(vm)).toEqual([bitmap.name]);
    expect(s.ledger.get(vmid, 'scsi0')).toMatchObject({ state: 'valid', bitmapName: bitmap.name, generation: bitmap.generation });
    expect(await stack.compareRestore(committed, 'scsi0', reference)).toBe(-1);
    fs.rmSync(reference, { force: true });

    await vm.write('scsi0', { pattern: 0x62, offset: 8 * MiB, length: MiB });
    const next = diskOf((await stack.backupAndCheck([vm])).get(vmid));
    expect([next.mode, next.reason.split(':')[0]]).toEqual(['incremental', 'bitmap-valid']);
    await stack.stopDaemon();
  });
});
