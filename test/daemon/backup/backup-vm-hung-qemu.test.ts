/**
 * A QEMU that stops answering in the middle of a backup (SIGSTOP, as a hung or overloaded host
 * would look): the NBD read gives up after its bound, the backup fails with a clear error and no
 * manifest, and the next backup (once QEMU answers again) cleans up what the hung one left and
 * merges the bitmaps, so it reads exactly what changed since the last committed backup.
 */
import { queryDisks } from '../../../daemon/qmp/query-disks';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
const VMID = 320;
let env: EngineEnv;
afterAll(() => env?.close());

test('QEMU hangs mid-read: bounded failure, no manifest, bitmap keeps every change, next incremental exact', async () => {
  env = await createEngineEnv(sim.node);
  const vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 32 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x21, offset: 0, length: 8 * MiB });
  expect((await env.backup(VMID)).disks[0].mode).toBe('full');

  const writes = [{ offset: 1 * MiB, length: 4 * MiB }, { offset: 20 * MiB, length: 4 * MiB }, { offset: 30 * MiB, length: 64 * KiB }];
  for (const w of writes) await vm.write('scsi0', { pattern: 0x42, ...w });
  const pid = vm.pid()!;
  let stoppedAt = 0;
  let resume: NodeJS.Timeout | undefined;
  const started = Date.now();
  const failed = env
    .backup(VMID, {
      onProgress: () => {
        if (stoppedAt) return;
        stoppedAt = Date.now();
        process.kill(pid, 'SIGSTOP');
        // The host recovers a few seconds later; by then the read has already given up.
        resume = setTimeout(() => process.kill(pid, 'SIGCONT'), 4000);
      },
    }, { nbdTimeoutMs: 1500, nbdRequestSize: 64 * KiB, nbdInFlight: 1, nbdConnections: 1 })
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  const err = (await failed) as { code?: string };
  clearTimeout(resume);
  process.kill(pid, 'SIGCONT');
  expect(stoppedAt).toBeGreaterThan(0);
  expect(err?.code).toMatch(/^CBT_(NBD_TIMEOUT|BACKUP_READ)$/);
  expect(Date.now() - started).toBeLessThan(60_000);

  expect((await env.repo.listBackups(VMID)).length).toBe(1);
  // QEMU was still stopped when the teardown ran, so the export and the frozen old bitmap may still
  // be there: the old bitmap holds every change up to the failed backup, a newer one records since.
  const own = (await vm.qmp((q) => queryDisks(q)))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-'));
  expect(own.some((b) => b.recording)).toBe(true);
  expect(Math.max(...own.map((b) => b.count))).toBeGreaterThanOrEqual(dirtyBytes(writes));

  const ref = await vm.snapshotReference('scsi0');
  const next = await env.backup(VMID);
  expect(next.disks[0]).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(writes) });
  await env.expectRestoreEquals(next.id, 'scsi0', ref);
  // The next backup cleaned up what the hung one left: one recording bitmap again.
  const after = (await vm.qmp((q) => queryDisks(q)))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-'));
  expect(after).toHaveLength(1);
  expect(after[0]).toMatchObject({ recording: true, busy: false, count: 0 });
});
