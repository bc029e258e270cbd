/**
 * One S3 repository (radosgw) for two nodes: both nodes' daemons (separate processes) back up
 * their VMs into it at the same time, with the same data so that both store the same chunks, while
 * this process runs GC and verify against the same bucket. Then prune and GC again. Verify stays
 * clean, every remaining backup restores byte-exact, and `pve-cbt list` on either node lists the
 * backups of both.
 */
import { Repository } from '../../daemon/repository/repository';
import type { BackupResult } from '../../daemon/service/requests';
import type { SimVm } from '../../daemon/sim/pve-node';
import { addClusterVm } from '../e2e/cluster-harness';
import { diskOf, runCli } from '../e2e/e2e-harness';
import { s3Env, storageOf } from './s3-test-env';
import { s3ClusterStack } from './s3-cluster-stack';

const env = s3Env();
const MiB = 1024 * 1024;
const s3 = s3ClusterStack(env);

async function writeBoth(vms: SimVm[], pattern: number, offsets: number[]): Promise<void> {
  for (const vm of vms) for (const off of offsets) await vm.write('scsi0', { pattern, offset: off * MiB, length: 512 * 1024 });
}

it('two daemons back up into one bucket at once next to GC and verify; prune and GC keep the rest byte-exact; both nodes list everything', async () => {
  const pve1 = s3.cs.stack('pve1');
  const pve2 = s3.cs.stack('pve2');
  const a = await addClusterVm(pve1, 821, [{ key: 'scsi0', format: 'qcow2', sizeMiB: 32 }]);
  const b = await addClusterVm(pve2, 822, [{ key: 'scsi0', format: 'raw', sizeMiB: 32 }]);
  await a.start();
  await b.start();
  const repo = await Repository.open('s3', { storage: storageOf(env, s3.bucket) });
  await writeBoth([a, b], 0x5a, [4, 8, 12, 16, 20]);
  const both = async (): Promise<BackupResult[]> => {
    const [ra, rb] = await Promise.all([pve1.backupAndCheck([a]), pve2.backupAndCheck([b])]);
    return [ra.get(821)!, rb.get(822)!];
  };
  const fulls = await both();
  expect(fulls.map((r) => diskOf(r).mode)).toEqual(['full', 'full']);

  await writeBoth([a, b], 0xa5, [9, 24]);
  // The incrementals run while this process collects garbage and verifies the same bucket.
  const [incs] = await Promise.all([both(), repo.gc({ graceMs: 0 }), repo.verify()]);
  expect(incs.map((r) => diskOf(r).mode)).toEqual(['incremental', 'incremental']);
  const refs = [
    { id: incs[0]!.id, ref: await a.snapshotReference('scsi0') },
    { id: incs[1]!.id, ref: await b.snapshotReference('scsi0') },
  ];

  const report = await repo.verify();
  expect(report.backups.flatMap((x) => x.problems)).toEqual([]);
  expect(report.backups).toHaveLength(4);

  const marks = await repo.prune({ keepLast: 1 });
  expect(marks.filter((m) => !m.keep).map((m) => m.id).sort()).toEqual([fulls[0]!.id, fulls[1]!.id].sort());
  await repo.gc({ graceMs: 0 });
  const after = await repo.verify();
  expect(after.backups.flatMap((x) => x.problems)).toEqual([]);
  expect(after.ok).toBe(true);
  for (const r of refs) expect(await s3.cs.compareRestore(r.id, 'scsi0', r.ref)).toBe(-1);

  for (const node of [pve1, pve2]) {
    const out = await runCli(['list', '--all', '--json', '--config', node.configFile]);
    expect(out.code).toBe(0);
    const ids = (JSON.parse(out.stdout) as { backups: { id: string }[] }).backups.map((x) => x.id);
    expect(ids.length).toBe(2);
  }
  expect(pve1.daemon?.proc.exitCode).toBeNull();
  expect(pve2.daemon?.proc.exitCode).toBeNull();
});
