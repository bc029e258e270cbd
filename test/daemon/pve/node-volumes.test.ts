import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configVolumes, nodeVolumes } from '../../../daemon/pve/node-volumes';

test('every volume of the current section: backup=0 and unused included, cdroms, none and snapshots not', () => {
  const conf = [
    'boot: order=scsi0',
    'scsi0: local:100/vm-100-disk-0.qcow2,size=4G',
    'scsi1: local-lvm:vm-100-disk-1,backup=0,size=8G',
    'virtio0: file=/dev/sdb,size=1T',
    'ide2: local:iso/debian.iso,media=cdrom',
    'ide3: none,media=cdrom',
    'sata0: none',
    'efidisk0: local-lvm:vm-100-disk-2,efitype=4m',
    'unused0: local-lvm:vm-100-disk-3',
    'net0: virtio=BC:24:11:00:00:01,bridge=vmbr0',
    '',
    '[before-upgrade]',
    'scsi0: local:100/vm-100-disk-9.qcow2,size=4G',
    'scsi5: local:100/vm-100-disk-8.qcow2,size=4G',
  ].join('\n');
  expect(configVolumes(100, conf)).toEqual([
    { vmid: 100, disk: 'scsi0', volid: 'local:100/vm-100-disk-0.qcow2' },
    { vmid: 100, disk: 'scsi1', volid: 'local-lvm:vm-100-disk-1' },
    { vmid: 100, disk: 'virtio0', volid: '/dev/sdb' },
    { vmid: 100, disk: 'efidisk0', volid: 'local-lvm:vm-100-disk-2' },
    { vmid: 100, disk: 'unused0', volid: 'local-lvm:vm-100-disk-3' },
  ]);
});

test('all VM configs of the dir, resolved through pvesm; a failing look-up is kept with its reason', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  try {
    const confDir = path.join(dir, 'qemu-server');
    fs.mkdirSync(confDir);
    fs.writeFileSync(path.join(confDir, '101.conf'), 'scsi0: local:101/vm-101-disk-0.raw\nvirtio1: nfs:101/vm-101-disk-1.raw\n');
    fs.writeFileSync(path.join(confDir, '100.conf'), 'sata0: local:100/vm-100-disk-0.qcow2\n');
    fs.writeFileSync(path.join(confDir, 'notes.txt'), 'scsi0: local:1/x.raw\n');
    const pvesm = path.join(dir, 'pvesm');
    fs.writeFileSync(pvesm, '#!/bin/sh\ncase "$2" in nfs:*) echo "storage nfs is not online" >&2; exit 2;; *) echo "/images/${2#*:}";; esac\n', { mode: 0o755 });
    expect(await nodeVolumes({ qemuServerConfigDir: confDir, pvesmPath: pvesm })).toEqual([
      { vmid: 100, disk: 'sata0', volid: 'local:100/vm-100-disk-0.qcow2', path: '/images/100/vm-100-disk-0.qcow2' },
      { vmid: 101, disk: 'scsi0', volid: 'local:101/vm-101-disk-0.raw', path: '/images/101/vm-101-disk-0.raw' },
      { vmid: 101, disk: 'virtio1', volid: 'nfs:101/vm-101-disk-1.raw', path: undefined, reason: expect.stringContaining('storage nfs is not online') },
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('with a cache, a second scan asks pvesm only about volumes it has not seen', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  try {
    const confDir = path.join(dir, 'qemu-server');
    fs.mkdirSync(confDir);
    fs.writeFileSync(path.join(confDir, '100.conf'), 'scsi0: local:100/a.raw\nscsi1: local:100/b.raw\n');
    const calls = path.join(dir, 'calls');
    const pvesm = path.join(dir, 'pvesm');
    fs.writeFileSync(pvesm, `#!/bin/sh\necho "$2" >> ${calls}\necho "/images/\${2#*:}"\n`, { mode: 0o755 });
    const cache = new Map();
    const opts = { qemuServerConfigDir: confDir, pvesmPath: pvesm };
    expect(await nodeVolumes(opts, cache)).toHaveLength(2);
    fs.writeFileSync(path.join(confDir, '101.conf'), 'virtio0: local:101/c.raw\n');
    const second = await nodeVolumes(opts, cache);
    expect(second.map((v) => v.path)).toEqual(['/images/100/a.raw', '/images/100/b.raw', '/images/101/c.raw']);
    expect(fs.readFileSync(calls, 'utf8').trim().split('\n')).toEqual(['local:100/a.raw', 'local:100/b.raw', 'local:101/c.raw']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
