/**
 * The simulator's RBD storage on the real test cluster: `pvesm path` prints RBDPlugin's form, `pvesm
 * alloc/free` create and remove images with `rbd`, QEMU opens the disk through librbd and reports it
 * in query-block as a json: pseudo-filename naming the same image; a stopped VM's writes go to the
 * image too (checked against the reference twin with qemu-img compare).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { rbdJson } from '../../daemon/proc/ceph-command';
import { parseRbdName, sameRbdImage } from '../../daemon/pve/rbd-volume';
import { queryDisks } from '../../daemon/qmp/query-disks';
import { usePveNode } from '../sim/jest-cleanup';
import { cephSpec } from './ceph-env';

const execFileP = promisify(execFile);
const sim = usePveNode({ ceph: cephSpec() });
const MiB = 1024 * 1024;

test('pvesm path prints rbd:POOL/NAMESPACE/IMAGE:conf=…:id=admin:keyring=…, as RBDPlugin does', async () => {
  const storage = sim.node.rbdStorage!;
  const { stdout } = await execFileP(sim.node.pvesmPath, ['path', 'ceph:vm-300-disk-0']);
  expect(stdout.trim()).toBe(`rbd:${storage.pool}/${storage.namespace}/vm-300-disk-0:conf=${sim.node.root}/etc/pve/ceph.conf:id=admin:keyring=${sim.node.root}/etc/pve/priv/ceph/ceph.keyring`);
  expect(fs.readFileSync(`${sim.node.root}/etc/pve/storage.cfg`, 'utf8')).toContain(`rbd: ceph\n\tcontent images\n\tkrbd 0\n\tpool ${storage.pool}\n\tnamespace ${storage.namespace}\n`);
});

test('alloc creates an image (a taken name is refused), free removes it with its snapshots', async () => {
  const storage = sim.node.rbdStorage!;
  const alloc = await execFileP(sim.node.pvesmPath, ['alloc', 'ceph', '301', 'vm-301-disk-5', '4096', '--format', 'raw']);
  expect(alloc.stdout.trim()).toBe("successfully created 'ceph:vm-301-disk-5'");
  await expect(execFileP(sim.node.pvesmPath, ['alloc', 'ceph', '301', 'vm-301-disk-5', '4096'])).rejects.toMatchObject({ stderr: expect.stringContaining("rbd image 'vm-301-disk-5' already exists") });
  await expect(execFileP(sim.node.pvesmPath, ['alloc', 'ceph', '301', 'vm-301-disk-6', '4096', '--format', 'qcow2'])).rejects.toMatchObject({ stderr: expect.stringContaining("unsupported format 'qcow2'") });
  const info = await rbdJson<{ size: number }>(storage.admin, ['info', `${storage.pool}/${storage.namespace}/vm-301-disk-5`]);
  expect(info.size).toBe(4 * MiB);
  await execFileP(sim.node.pvesmPath, ['free', 'ceph:vm-301-disk-5']);
  expect(await rbdJson<string[]>(storage.admin, ['ls', `${storage.pool}/${storage.namespace}`])).not.toContain('vm-301-disk-5');
});

test('QEMU opens the disk through librbd; query-block names the same image (json: form); writes reach the image', async () => {
  const vm = await sim.node.addVm({ vmid: 302, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 8, storage: 'ceph' }] });
  expect(vm.disks[0].volid).toBe('ceph:vm-302-disk-0');
  await vm.start();
  await vm.write('scsi0', { pattern: 0x5c, offset: 3 * MiB + 4096, length: 200 * 1024 });
  const [qd] = await vm.qmp((q) => queryDisks(q));
  expect(qd.file.startsWith('json:')).toBe(true);
  const reported = parseRbdName(qd.file);
  const configured = parseRbdName(vm.disks[0].path);
  expect(reported && configured && sameRbdImage(reported, configured)).toBe(true);
  await vm.stop();
  await vm.write('scsi0', { pattern: 0x5d, offset: 7 * MiB, length: 4096 });
  await execFileP('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', vm.disks[0].path, vm.disks[0].reference], { timeout: 60_000 });
});
