/**
 * Two nodes' daemons (separate processes, own stateDir and socket) back up different VMs into ONE
 * repository at the same moment, twice (fulls, then incrementals), with the same data written to
 * both VMs so that both insert the same chunks concurrently. Afterwards the whole repository
 * verifies clean and every backup restores byte-exact (checked right after each backup, and again
 * at the end from the finished repository).
 */
import { Repository } from '../../daemon/repository/repository';
import type { BackupResult } from '../../daemon/service/requests';
import { diskOf } from './e2e-harness';
import { addClusterVm, createClusterStack, startDaemons, type ClusterStack } from './cluster-harness';
import type { SimVm } from '../../daemon/sim/pve-node';

const MiB = 1024 * 1024;
let cs: ClusterStack;

beforeAll(async () => {
  cs = await createClusterStack();
  await startDaemons(cs);
});
afterAll(async () => {
  await cs?.cleanup();
});

async function writeBoth(vms: SimVm[], pattern: number, offsets: number[]): Promise<void> {
  for (const vm of vms) for (const off of offsets) await vm.write('scsi0', { pattern, offset: off * MiB, length: 512 * 1024 });
}

it('two daemons writing one repository concurrently never corrupt it; verify is clean and restores are byte-exact', async () => {
  const pve1 = cs.stack('pve1');
  const pve2 = cs.stack('pve2');
  const a = await addClusterVm(pve1, 811, [{ key: 'scsi0', format: 'qcow2', sizeMiB: 32 }]);
  const b = await addClusterVm(pve2, 812, [{ key: 'scsi0', format: 'raw', sizeMiB: 32 }]);
  await a.start();
  await b.start();
  await writeBoth([a, b], 0x5a, [8, 12, 16, 20]);
  const refs: Array<{ id: string; vm: SimVm; ref: string }> = [];
  const both = async (): Promise<BackupResult[]> => {
    const [ra, rb] = await Promise.all([pve1.backupAndCheck([a]), pve2.backupAndCheck([b])]);
    return [ra.get(811)!, rb.get(812)!];
  };

  const fulls = await both();
  expect(fulls.map((r) => diskOf(r).mode)).toEqual(['full', 'full']);
  await writeBoth([a, b], 0xa5, [9, 24]);
  const incs = await both();
  expect(incs.map((r) => diskOf(r).mode)).toEqual(['incremental', 'incremental']);
  for (const [r, vm] of [
    [incs[0], a],
    [incs[1], b],
  ] as const) {
    refs.push({ id: r.id, vm, ref: await vm.snapshotReference('scsi0') });
  }

  const repo = await Repository.open(cs.repository);
  const report = await repo.verify();
  expect(report.backups.flatMap((x) => x.problems)).toEqual([]);
  expect(report.ok).toBe(true);
  expect(report.backups).toHaveLength(4);
  expect((await repo.listBackups()).map((x) => x.vmid).sort()).toEqual([811, 811, 812, 812]);
  for (const r of refs) expect(await cs.compareRestore(r.id, 'scsi0', r.ref)).toBe(-1);
  expect(pve1.daemon?.proc.exitCode).toBeNull();
  expect(pve2.daemon?.proc.exitCode).toBeNull();
});
