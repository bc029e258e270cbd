/**
 * VM disks on RBD, backed up and restored byte for byte (real Ceph, real QEMU): a running VM through
 * the fleecing view over librbd, a stopped VM through qemu-nbd on the rbd name; a whole-VM restore
 * onto the RBD storage (pvesm alloc, written through librbd), compared byte for byte; a restore onto
 * an image a running QEMU holds is refused.
 */
import fs from 'node:fs';
import { restoreVm } from '../../daemon/restore/restore-vm';
import { parseVmConfig } from '../../daemon/pve/vm-config';
import { pvesmPath } from '../../daemon/pve/pvesm';
import { expectRbdEquals } from './rbd-compare';
import { usePveNode } from '../sim/jest-cleanup';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from '../daemon/backup/backup-helpers';
import type { SimVm } from '../../daemon/sim/pve-node';
import { cephSpec } from './ceph-env';

const sim = usePveNode({ ceph: cephSpec() });
let env: EngineEnv;
let vm: SimVm;
const VMID = 310;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 16, storage: 'ceph' }, { key: 'scsi1', format: 'qcow2', sizeMiB: 8 }] });
});
afterAll(() => env?.close());

const disk = (r: { disks: { disk: string }[] }, d: string) => r.disks.find((x) => x.disk === d) as unknown as { mode: string; reason: string; bytesRead: number; consistency: string };

test('running VM on RBD: full, then incremental from the QEMU bitmap; every restore byte-exact', async () => {
  await vm.start();
  await vm.write('scsi0', { pattern: 0x11, offset: 0, length: 2 * MiB });
  await vm.write('scsi0', { pattern: 0x12, offset: 9 * MiB + 4 * KiB, length: 300 * KiB });
  const ref = await vm.snapshotReference('scsi0');
  const full = await env.backup(VMID);
  expect(disk(full, 'scsi0')).toMatchObject({ mode: 'full', consistency: 'crash-consistent' });
  await env.expectRestoreEquals(full.id, 'scsi0', ref);

  const w = [{ offset: 5 * MiB, length: 64 * KiB }];
  await vm.write('scsi0', { pattern: 0x13, ...w[0] });
  const ref2 = await vm.snapshotReference('scsi0');
  const inc = await env.backup(VMID);
  expect(disk(inc, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w) });
  await env.expectRestoreEquals(inc.id, 'scsi0', ref2);
});

test('stopped VM on RBD: read with qemu-nbd on the rbd name', async () => {
  await vm.stop();
  await vm.write('scsi0', { pattern: 0x14, offset: 12 * MiB, length: 128 * KiB });
  const ref = await vm.snapshotReference('scsi0');
  const r = await env.backup(VMID);
  expect(disk(r, 'scsi0').consistency).toBe('offline');
  await env.expectRestoreEquals(r.id, 'scsi0', ref);
});

test('restore of the whole VM onto the RBD storage: volumes allocated there, written byte-exact', async () => {
  const ref0 = await vm.snapshotReference('scsi0');
  const ref1 = await vm.snapshotReference('scsi1');
  const r = await env.backup(VMID);
  const node = { qemuServerConfigDir: sim.node.configDir, qemuServerRunDir: sim.node.runDir, pvesmPath: sim.node.pvesmPath };
  const res = await restoreVm({ backupId: r.id, vmid: 311, storage: 'ceph', format: 'raw', force: false, unique: false }, { repo: env.repo, node });
  expect(res.disks.map((d) => d.volid)).toEqual(['ceph:vm-311-disk-0.raw', 'ceph:vm-311-disk-1.raw']);
  const conf = parseVmConfig(311, fs.readFileSync(`${sim.node.configDir}/311.conf`, 'utf8'));
  expect(conf.disks.map((d) => d.volid)).toEqual(['ceph:vm-311-disk-0.raw', 'ceph:vm-311-disk-1.raw']);
  await expectRbdEquals(await pvesmPath(sim.node.pvesmPath, 'ceph:vm-311-disk-0.raw'), ref0);
  await expectRbdEquals(await pvesmPath(sim.node.pvesmPath, 'ceph:vm-311-disk-1.raw'), ref1);
});

test('a restore onto the RBD image of a running VM is refused (even with --force), nothing written', async () => {
  const r = await env.backup(VMID);
  await vm.start();
  const node = { qemuServerConfigDir: sim.node.configDir, qemuServerRunDir: sim.node.runDir, pvesmPath: sim.node.pvesmPath };
  await expect(env.repo.restoreDisk(r.id, 'scsi0', { path: vm.disks[0].path, format: 'raw' }, { beforeCommit: async () => {
    const { restoreTargetGuard } = await import('../../daemon/restore/restore-target-guard');
    await restoreTargetGuard(vm.disks[0].path, node, { force: true })();
  } })).rejects.toMatchObject({ code: 'CBT_RESTORE_TARGET_VM_RUNNING' });
  await vm.stop();
  await expectRbdEquals(vm.disks[0].path, vm.disks[0].reference);
});

test('QEMU holding another RBD image than the config names is CBT_BACKUP_DISK_MISMATCH (both spellings compared)', async () => {
  const other = await sim.node.addVm({ vmid: 312, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 8, storage: 'ceph' }] });
  await other.start();
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  await promisify(execFile)(sim.node.pvesmPath, ['alloc', 'ceph', '312', 'vm-312-disk-9', '8192']);
  const conf = fs.readFileSync(other.confPath, 'utf8');
  fs.writeFileSync(other.confPath, conf.replace(/^scsi0: ceph:vm-312-disk-0,/m, 'scsi0: ceph:vm-312-disk-9,'));
  try {
    await expect(env.backup(312)).rejects.toMatchObject({
      code: 'CBT_BACKUP_DISK_MISMATCH',
      details: { disk: 'scsi0', reason: expect.stringMatching(/^QEMU holds json:\{.*"image": "vm-312-disk-0".*, not the RBD image rbd\/cbt-[0-9a-f]+\/vm-312-disk-9 of the config$/) },
    });
  } finally {
    fs.writeFileSync(other.confPath, conf);
    await other.stop();
  }
});

test('an RBD image some other librbd client has open (a watcher) is never a restore target, even with --force', async () => {
  const { execFile, spawn } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { restoreTargetGuard } = await import('../../daemon/restore/restore-target-guard');
  await promisify(execFile)(sim.node.pvesmPath, ['alloc', 'ceph', '313', 'vm-313-disk-0', '16384']);
  const target = await pvesmPath(sim.node.pvesmPath, 'ceph:vm-313-disk-0');
  const node = { qemuServerConfigDir: sim.node.configDir, qemuServerRunDir: sim.node.runDir, pvesmPath: sim.node.pvesmPath };
  await restoreTargetGuard(target, node, { force: true })(); // nobody has it open: allowed
  const sock = `${env.dir}/holder.sock`;
  const holder = spawn('qemu-nbd', ['-f', 'raw', '-k', sock, target], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(sock)).toBe(true);
    await expect(restoreTargetGuard(target, node, { force: true })()).rejects.toMatchObject({
      code: 'CBT_RESTORE_TARGET_IN_USE',
      details: { pid: 0, command: expect.stringMatching(/^librbd client\.\d+ at /) },
    });
  } finally {
    if (holder.exitCode === null && holder.signalCode === null) {
      const gone = new Promise((r) => holder.once('exit', r));
      holder.kill('SIGTERM');
      await gone;
    }
  }
});
