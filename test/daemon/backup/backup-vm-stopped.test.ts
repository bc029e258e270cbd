/**
 * Stopped VMs back up from their config file through qemu-nbd (real qemu-nbd/qemu-img): cdrom and
 * backup=0 disks skipped, efidisk included; qcow2 continues with offline incrementals from its
 * persistent bitmap, raw falls back to full-compare; a running QEMU's images are never opened.
 * Also the PVE 9 `-blockdev` layout of a running VM (bitmaps on the format node below the throttle).
 */
import { FleeceSession } from '../../../daemon/backup/fleece-session';
import { assertVmStopped, ImageExport } from '../../../daemon/backup/image-export';
import { recoverVm } from '../../../daemon/backup/recover-vm';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import fs from 'node:fs';
import path from 'node:path';
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
const VMID = 200;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({
    vmid: VMID,
    disks: [
      { key: 'scsi0', format: 'qcow2', sizeMiB: 8 },
      { key: 'scsi1', format: 'raw', sizeMiB: 8 },
      { key: 'scsi2', format: 'raw', sizeMiB: 4, backup: false },
      { key: 'efidisk0', format: 'raw', sizeMiB: 1 },
    ],
  });
});
afterAll(() => env?.close());

const byDisk = (r: { disks: { disk: string }[] }, d: string) =>
  r.disks.find((x) => x.disk === d) as unknown as { mode: string; reason: string; bytesRead: number; bytesStored: number; consistency: string };

test('stopped VM: full from the config file, then offline incremental (qcow2) and full-compare (raw)', async () => {
  await vm.writeData('scsi0', 512 * KiB, Buffer.alloc(1 * MiB, 0x3a));
  await vm.writeData('scsi1', 2 * MiB, Buffer.alloc(300 * KiB, 0x3b));
  await vm.writeData('efidisk0', 0, Buffer.alloc(64 * KiB, 0x3c));
  const refs = { scsi0: await vm.snapshotReference('scsi0'), scsi1: await vm.snapshotReference('scsi1'), efidisk0: await vm.snapshotReference('efidisk0') };
  const full = await env.backup(VMID);
  expect(full.disks.map((d) => d.disk)).toEqual(['scsi0', 'scsi1', 'efidisk0']);
  for (const d of full.disks) expect(d).toMatchObject({ mode: 'full', consistency: 'offline' });
  expect(byDisk(full, 'scsi0').bytesRead).toBe(1 * MiB);
  for (const [k, ref] of Object.entries(refs)) await env.expectRestoreEquals(full.id, k, ref);

  const w0 = [{ offset: 4 * MiB, length: 64 * KiB }];
  await vm.writeData('scsi0', w0[0].offset, Buffer.alloc(w0[0].length, 0x4a));
  await vm.writeData('scsi1', 7 * MiB, Buffer.alloc(4 * KiB, 0x4b));
  const ref0 = await vm.snapshotReference('scsi0');
  const ref1 = await vm.snapshotReference('scsi1');
  const inc = await env.backup(VMID);
  expect(byDisk(inc, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w0) });
  expect(byDisk(inc, 'scsi1').mode).toBe('full-compare');
  expect(byDisk(inc, 'scsi1').reason).toMatch(/^no-bitmap-recorded: /);
  expect(byDisk(inc, 'scsi1').bytesStored).toBeLessThan(128 * KiB);
  await env.expectRestoreEquals(inc.id, 'scsi0', ref0);
  await env.expectRestoreEquals(inc.id, 'scsi1', ref1);
});

test('the persistent bitmap made offline carries into the running VM', async () => {
  await vm.start();
  expect(() => assertVmStopped(sim.node.runDir, VMID, 'scsi0', vm.disks[0].path)).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_IMAGE_IN_USE' }));
  const w0 = [{ offset: 1 * MiB, length: 128 * KiB }];
  await vm.write('scsi0', { pattern: 0x5a, ...w0[0] });
  const ref0 = await vm.snapshotReference('scsi0');
  const r = await env.backup(VMID);
  expect(byDisk(r, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w0), consistency: 'crash-consistent' });
  expect(byDisk(r, 'scsi1').mode).toBe('full-compare');
  await env.expectRestoreEquals(r.id, 'scsi0', ref0);
  await vm.stop();
});

test('PVE 9 -blockdev layout: full then incremental through the throttle node', async () => {
  const vm9 = await sim.node.addVm({ vmid: 201, layout: 'blockdev', disks: [{ key: 'virtio0', format: 'qcow2', sizeMiB: 8 }, { key: 'scsi0', format: 'raw', sizeMiB: 8 }] });
  await vm9.start();
  await vm9.write('virtio0', { pattern: 0x61, offset: 0, length: 1 * MiB });
  const full = await env.backup(201);
  expect(full.disks.map((d) => d.mode)).toEqual(['full', 'full']);
  const w = [{ offset: 3 * MiB, length: 64 * KiB }];
  await vm9.write('virtio0', { pattern: 0x62, ...w[0] });
  await vm9.write('scsi0', { pattern: 0x63, ...w[0] });
  const refs = { virtio0: await vm9.snapshotReference('virtio0'), scsi0: await vm9.snapshotReference('scsi0') };
  const inc = await env.backup(201);
  for (const d of inc.disks) expect(d).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w) });
  for (const [k, ref] of Object.entries(refs)) await env.expectRestoreEquals(inc.id, k, ref);
});

test('agent: 1 without an answering guest agent: bounded wait, continues crash-consistent and says so', async () => {
  const vma = await sim.node.addVm({ vmid: 202, agent: true, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }] });
  await vma.start();
  await vma.write('scsi0', { pattern: 0x71, offset: 0, length: 64 * KiB });
  const ref = await vma.snapshotReference('scsi0');
  const t0 = Date.now();
  const r = await env.backup(202, {}, { freezeTimeoutMs: 500 });
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(r.disks[0]).toMatchObject({ mode: 'full', consistency: 'crash-consistent' });
  expect(r.freezeNote).toMatch(/guest agent did not freeze/);
  expect((await env.repo.readManifest(r.id)).extra).toMatchObject({ freezeNote: expect.stringMatching(/did not answer/) });
  await env.expectRestoreEquals(r.id, 'scsi0', ref);
});

test('recoverVm: stops a leftover qemu-nbd of a stopped VM, settles an abandoned fleecing of a running one', async () => {
  const workDir = `${env.dir}/work`;
  const config = { qemuServerRunDir: sim.node.runDir, workDir };
  const abandonedNbd = await ImageExport.open({ vmid: VMID, drive: 'scsi0', file: vm.disks[0].path, format: 'qcow2', workDir });
  expect(abandonedNbd.socketPath).toBeTruthy();
  const done = await recoverVm({ vmid: VMID, config, repo: env.repo });
  expect(done).toEqual([expect.stringMatching(/^qemu-nbd pid \d+$/)]);
  expect(await recoverVm({ vmid: VMID, config, repo: env.repo })).toEqual([]);

  await vm.start();
  const [disk] = await vm.qmp((q) => queryDisks(q));
  const old = disk.bitmaps.find((b) => b.name.startsWith('pve-cbt-'))?.name as string;
  await FleeceSession.start({ vmid: VMID, qmpSocket: vm.qmpPath, workDir, jobPollMs: 60_000 }, [
    { drive: 'scsi0', device: disk.device, nodeName: disk.nodeName, size: disk.size, newBitmap: 'pve-cbt-scsi0-g99', persistent: true, granularity: 65536, readBitmap: old },
  ]);
  await vm.write('scsi0', { pattern: 0x7e, offset: 2 * MiB, length: 64 * KiB });
  const cleaned = await recoverVm({ vmid: VMID, config, repo: env.repo });
  expect(cleaned).toEqual(expect.arrayContaining([expect.stringMatching(/^export /), expect.stringMatching(/^job /), expect.stringMatching(/^node /), 'nbd server', `bitmap pve-cbt-scsi0-g99 merged back into ${old}`]));
  const [after] = await vm.qmp((q) => queryDisks(q));
  expect(after.bitmaps.filter((b) => b.name.startsWith('pve-cbt-'))).toEqual([expect.objectContaining({ name: old, recording: true, count: 64 * KiB })]);
  await vm.stop();
});

test('running VM with tpmstate0 (held by swtpm, not QEMU): read from its volume without a bitmap', async () => {
  const vmt = await sim.node.addVm({ vmid: 203, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }] });
  await vmt.start();
  const tpm = path.join(sim.node.storageDir, 'images/203/vm-203-disk-9.raw');
  fs.writeFileSync(tpm, Buffer.alloc(4 * MiB));
  const fd = fs.openSync(tpm, 'r+');
  fs.writeSync(fd, Buffer.alloc(64 * KiB, 0x7b), 0, 64 * KiB, 1 * MiB);
  fs.closeSync(fd);
  // Into the current section, above the config's [snapshot] section.
  fs.writeFileSync(vmt.confPath, `tpmstate0: local:203/vm-203-disk-9.raw,size=4M,version=v2.0\n${fs.readFileSync(vmt.confPath, 'utf8')}`);
  const full = await env.backup(203);
  expect(byDisk(full, 'tpmstate0')).toMatchObject({ mode: 'full', consistency: 'crash-consistent' });
  await env.expectRestoreEquals(full.id, 'tpmstate0', tpm);
  const again = await env.backup(203);
  expect(byDisk(again, 'tpmstate0')).toMatchObject({ mode: 'full-compare', bytesStored: 0 });
  expect(byDisk(again, 'tpmstate0').reason).toMatch(/^not-in-qemu: /);
  expect(byDisk(again, 'scsi0').mode).toBe('incremental');
});

test('vmdk: offline full, then running full-compare (transient bitmap started), then incremental', async () => {
  const vmv = await sim.node.addVm({ vmid: 204, disks: [{ key: 'sata0', format: 'vmdk', sizeMiB: 8 }] });
  await vmv.writeData('sata0', 1 * MiB, Buffer.alloc(256 * KiB, 0x2d));
  const off = await env.backup(204);
  expect(off.disks[0]).toMatchObject({ mode: 'full', consistency: 'offline', bytesRead: 256 * KiB });
  await env.expectRestoreEquals(off.id, 'sata0', await vmv.snapshotReference('sata0'));
  await vmv.start();
  const fc = await env.backup(204);
  expect(fc.disks[0]).toMatchObject({ mode: 'full-compare', bytesStored: 0 });
  const w = [{ offset: 5 * MiB, length: 64 * KiB }];
  await vmv.write('sata0', { pattern: 0x2e, ...w[0] });
  const ref = await vmv.snapshotReference('sata0');
  const inc = await env.backup(204);
  expect(inc.disks[0]).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w) });
  await env.expectRestoreEquals(inc.id, 'sata0', ref);
});
