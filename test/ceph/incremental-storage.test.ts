/**
 * Mode incremental-storage (issue 18 point 2) on real Ceph and QEMU: every backup of an RBD disk
 * takes one pve-cbt RBD snapshot (the previous one goes after the commit); when the QEMU bitmap is
 * gone (restart, stopped VM) the next backup reads only `rbd diff --from-snap PREV`; Proxmox's
 * snapshots are left alone; after a `qm rollback` the next backup is a full-compare. Before each
 * such backup `status` (service/vm-status.ts) says what it will do: state `storage` and next
 * `incremental-storage` with the same reason, or the rollback's full-compare. Every restore is
 * compared byte for byte with the disk at backup time.
 */
import { usePveNode } from '../sim/jest-cleanup';
import { createEngineEnv, KiB, MiB, type EngineEnv } from '../daemon/backup/backup-helpers';
import type { SimVm } from '../../daemon/sim/pve-node';
import { qmRbdRollback, qmRbdSnapshot, rbdSnapshotNames } from '../../daemon/sim/qm-rbd-snapshot';
import { cephSpec } from './ceph-env';
import winston from 'winston';
import { BackupCatalog } from '../../daemon/catalog/backup-catalog';
import type { Services } from '../../daemon/service/services';
import { vmStatus, type DiskStatus } from '../../daemon/service/vm-status';

const sim = usePveNode({ ceph: cephSpec() });
let env: EngineEnv;
let vm: SimVm;
const VMID = 320;
const OBJECT = 4 * MiB;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 32, storage: 'ceph' }] });
});
afterAll(() => env?.close());

type Disk = { mode: string; reason: string; bytesRead: number; consistency: string };
const scsi0 = (r: { disks: { disk: string }[] }) => r.disks.find((x) => x.disk === 'scsi0') as unknown as Disk;
const ownSnapshots = async () => (await rbdSnapshotNames(vm.disks[0])).filter((n) => n.startsWith('pve-cbt-'));
/** `status` of scsi0 as the daemon computes it, over this test's repository, catalog and ledger. */
async function status(): Promise<DiskStatus> {
  const services = {
    config: { qemuServerConfigDir: sim.node.configDir, qemuServerRunDir: sim.node.runDir, pvesmPath: sim.node.pvesmPath },
    logger: winston.createLogger({ silent: true }),
    db: env.db,
    catalog: new BackupCatalog(env.db),
    ledger: env.ledger,
    repo: env.repo,
    queue: { list: () => [] },
  } as unknown as Services;
  return (await vmStatus(services, VMID)).disks.find((d) => d.disk === 'scsi0')!;
}
const manifestSnapshot = async (id: string) => ((await env.repo.readManifest(id)).extra.storageSnapshots as Record<string, string>).scsi0;

test('running VM: full, restart, then only the RBD diff is read (exactly one pve-cbt snapshot per image)', async () => {
  await vm.start();
  // every object of the first 24 MiB exists at the snapshot: the diff of overwrites is exact
  await vm.write('scsi0', { pattern: 0x21, offset: 0, length: 24 * MiB });
  const ref = await vm.snapshotReference('scsi0');
  const full = await env.backup(VMID);
  expect(scsi0(full).mode).toBe('full');
  await env.expectRestoreEquals(full.id, 'scsi0', ref);
  expect(await ownSnapshots()).toEqual([await manifestSnapshot(full.id)]);

  await vm.reboot(); // a new QEMU: the transient bitmap of the raw disk is gone
  const writes = [
    { offset: 3 * MiB + 4 * KiB, length: 100 * KiB },
    { offset: 17 * MiB, length: 64 * KiB },
  ];
  for (const [i, w] of writes.entries()) await vm.write('scsi0', { pattern: 0x30 + i, ...w });
  const ref2 = await vm.snapshotReference('scsi0');
  const said = await status();
  expect(said).toMatchObject({ state: 'storage', ledgerState: 'valid', nextBackup: { mode: 'incremental-storage', code: 'storage-delta' } });
  expect(said.reason).toMatch(/^storage-delta: QEMU's bitmap cannot be used \((qemu-restarted|bitmap-missing): .*rbd diff --from-snap pve-cbt-/);
  const inc = await env.backup(VMID);
  expect(scsi0(inc).mode).toBe('incremental-storage');
  expect(scsi0(inc).reason).toBe(said.reason);
  expect(scsi0(inc).reason).toMatch(/^storage-delta: QEMU's bitmap cannot be used \((qemu-restarted|bitmap-missing): /);
  expect(scsi0(inc).bytesRead).toBe(writes.reduce((s, w) => s + w.length, 0));
  await env.expectRestoreEquals(inc.id, 'scsi0', ref2);
  expect(await ownSnapshots()).toEqual([await manifestSnapshot(inc.id)]);

  // the bitmap the storage-delta backup started carries the next incremental
  await vm.write('scsi0', { pattern: 0x40, offset: 9 * MiB, length: 64 * KiB });
  const ref3 = await vm.snapshotReference('scsi0');
  const next = await env.backup(VMID);
  expect(scsi0(next)).toMatchObject({ mode: 'incremental', bytesRead: 64 * KiB });
  await env.expectRestoreEquals(next.id, 'scsi0', ref3);
});

test('stopped VM: read from the new snapshot itself, only the diff; a region new since the snapshot is object-rounded', async () => {
  await vm.stop();
  await vm.write('scsi0', { pattern: 0x50, offset: 5 * MiB, length: 8 * KiB });
  // 28 MiB + 64 KiB has never been written: its RADOS object is new, so the diff starts at the object
  await vm.write('scsi0', { pattern: 0x51, offset: 28 * MiB + 64 * KiB, length: 128 * KiB });
  const ref = await vm.snapshotReference('scsi0');
  const said = await status();
  expect(said).toMatchObject({ state: 'storage', nextBackup: { mode: 'incremental-storage', code: 'storage-delta' } });
  expect(said.reason).toMatch(/^storage-delta: .*stopped-transient/);
  const r = await env.backup(VMID);
  expect(scsi0(r)).toMatchObject({ mode: 'incremental-storage', consistency: 'offline' });
  expect(scsi0(r).reason).toBe(said.reason);
  expect(scsi0(r).reason).toMatch(/^storage-delta: .*stopped-transient/);
  expect(scsi0(r).bytesRead).toBe(8 * KiB + (28 * MiB + 192 * KiB - 7 * OBJECT));
  await env.expectRestoreEquals(r.id, 'scsi0', ref);
  expect(await ownSnapshots()).toEqual([await manifestSnapshot(r.id)]);
});

test('a failed backup removes its new snapshot; the last backup\'s stays and serves the next one', async () => {
  const before = await ownSnapshots();
  expect(before).toHaveLength(1);
  await vm.write('scsi0', { pattern: 0x55, offset: 11 * MiB, length: 16 * KiB });
  const ac = new AbortController();
  await expect(env.backup(VMID, { signal: ac.signal, onProgress: async () => ac.abort() })).rejects.toMatchObject({ code: 'CBT_BACKUP_ABORTED' });
  expect(await ownSnapshots()).toEqual(before);
  const ref = await vm.snapshotReference('scsi0');
  const r = await env.backup(VMID);
  expect(scsi0(r)).toMatchObject({ mode: 'incremental-storage', bytesRead: 16 * KiB });
  await env.expectRestoreEquals(r.id, 'scsi0', ref);
  expect(await ownSnapshots()).toEqual([await manifestSnapshot(r.id)]);
});

test('qm snapshot is left alone; after qm rollback the next backup is a full-compare, byte-exact', async () => {
  await qmRbdSnapshot(vm, 'before-upgrade');
  await vm.write('scsi0', { pattern: 0x60, offset: 1 * MiB, length: 64 * KiB });
  const ref = await vm.snapshotReference('scsi0');
  const a = await env.backup(VMID);
  expect(scsi0(a).mode).toBe('incremental-storage');
  await env.expectRestoreEquals(a.id, 'scsi0', ref);
  await vm.start();
  await vm.write('scsi0', { pattern: 0x61, offset: 2 * MiB, length: 64 * KiB });
  await qmRbdRollback(vm, 'before-upgrade'); // stops the VM, rolls the image back
  const refBack = await vm.snapshotReference('scsi0');
  expect(await status()).toMatchObject({ state: 'invalid', nextBackup: { mode: 'full-compare', code: 'storage-rolled-back' } });
  const b = await env.backup(VMID);
  expect(scsi0(b).mode).toBe('full-compare');
  expect(scsi0(b).reason).toMatch(/^storage-rolled-back: the VM generation id changed since the last backup \(vmgenid \S+ -> \S+: qm rollback\)/);
  await env.expectRestoreEquals(b.id, 'scsi0', refBack);
  const names = await rbdSnapshotNames(vm.disks[0]);
  expect(names.filter((n) => !n.startsWith('pve-cbt-'))).toEqual(['before-upgrade']);
  expect(names.filter((n) => n.startsWith('pve-cbt-'))).toEqual([await manifestSnapshot(b.id)]);
  // and the storage tracks again from there
  await vm.write('scsi0', { pattern: 0x62, offset: 6 * MiB, length: 4 * KiB });
  const ref2 = await vm.snapshotReference('scsi0');
  const c = await env.backup(VMID);
  expect(scsi0(c)).toMatchObject({ mode: 'incremental-storage', bytesRead: 4 * KiB });
  await env.expectRestoreEquals(c.id, 'scsi0', ref2);
});
