/**
 * Issue 18 point 4, migration on one S3 repository (radosgw): a VM with a qcow2 and a raw disk,
 * backed up by node pve1's daemon into the bucket, live-migrated to pve2 (QEMU carries both
 * bitmaps), then backed up by pve2's daemon as an INCREMENTAL on both disks: pve1 handed its ledger
 * records over through the bucket (the handoff object, daemon/migration/handoff-store.ts) and pve2
 * adopted them. As test/e2e/live-migration.test.ts does it on a shared directory. Every backup is
 * restored from the bucket and compared byte for byte; both nodes' `list` show the whole chain.
 */
import { handoffKey } from '../../daemon/migration/handoff-format';
import { addClusterVm, eventually } from '../e2e/cluster-harness';
import { diskOf, runCli } from '../e2e/e2e-harness';
import { s3Env, storageOf } from './s3-test-env';
import { s3ClusterStack } from './s3-cluster-stack';

const env = s3Env();
const MiB = 1024 * 1024;
const s3 = s3ClusterStack(env);

it('a live-migrated VM continues with incrementals from the target node on the same bucket, qcow2 and raw, restores byte-exact', async () => {
  const pve1 = s3.cs.stack('pve1');
  const pve2 = s3.cs.stack('pve2');
  const vmid = 831;
  const vm = await addClusterVm(pve1, vmid, [
    { key: 'scsi0', format: 'qcow2', sizeMiB: 16 },
    { key: 'scsi1', format: 'raw', sizeMiB: 16 },
  ], 'blockdev');
  await vm.start();
  const full = (await pve1.backupAndCheck([vm])).get(vmid);
  expect([diskOf(full, 'scsi0').mode, diskOf(full, 'scsi1').mode]).toEqual(['full', 'full']);
  await vm.write('scsi0', { pattern: 0x41, offset: 3 * MiB, length: 256 * 1024 });
  await vm.write('scsi1', { pattern: 0x42, offset: 5 * MiB, length: 256 * 1024 });
  const inc1 = (await pve1.backupAndCheck([vm])).get(vmid);
  expect([diskOf(inc1, 'scsi0').mode, diskOf(inc1, 'scsi1').mode]).toEqual(['incremental', 'incremental']);

  await vm.write('scsi0', { pattern: 0x51, offset: 7 * MiB, length: 128 * 1024 });
  await vm.write('scsi1', { pattern: 0x52, offset: 9 * MiB, length: 128 * 1024 });
  const moved = await s3.cs.cluster.migrate(vmid, 'pve2');
  await moved.write('scsi0', { pattern: 0x61, offset: 11 * MiB, length: 64 * 1024 });
  await moved.write('scsi1', { pattern: 0x62, offset: 13 * MiB, length: 64 * 1024 });

  // pve1's daemon hands its records over through the bucket.
  const storage = storageOf(env, s3.bucket);
  const handoff = await eventually('the handoff object from pve1', async () => {
    const raw = await storage.read(handoffKey(vmid));
    return raw ? JSON.parse(raw.toString('utf8')) : undefined;
  });
  expect(handoff).toMatchObject({ vmid, from: 'pve1', to: 'pve2' });

  const inc2 = (await pve2.backupAndCheck([moved])).get(vmid);
  expect([diskOf(inc2, 'scsi0').mode, diskOf(inc2, 'scsi1').mode]).toEqual(['incremental', 'incremental']);
  expect(diskOf(inc2, 'scsi0').bytesRead).toBe(192 * 1024);
  expect(diskOf(inc2, 'scsi1').bytesRead).toBe(192 * 1024);
  expect(await storage.read(handoffKey(vmid))).toBeNull();

  await moved.write('scsi1', { pattern: 0x71, offset: 1 * MiB, length: 64 * 1024 });
  const inc3 = (await pve2.backupAndCheck([moved])).get(vmid);
  expect([diskOf(inc3, 'scsi0').mode, diskOf(inc3, 'scsi1').mode]).toEqual(['incremental', 'incremental']);

  // The whole chain, written by both nodes, is seen from either.
  expect([full, inc1, inc2, inc3].every((r) => r !== undefined)).toBe(true);
  for (const node of ['pve1', 'pve2']) {
    const out = await runCli(['list', '--all', '--json', '--config', s3.cs.stack(node).configFile]);
    expect(out.code).toBe(0);
    expect((JSON.parse(out.stdout) as { backups: { id: string }[] }).backups).toHaveLength(4);
  }
  expect(pve1.daemon?.proc.exitCode).toBeNull();
  expect(pve2.daemon?.proc.exitCode).toBeNull();
});
