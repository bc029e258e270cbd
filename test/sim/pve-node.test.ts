import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { queryDisks } from '../../daemon/qmp/query-disks';
import { usePveNode } from './jest-cleanup';
import { createPveNode, type SimDiskSpec } from '../../daemon/sim/pve-node';
import { isAlive } from '../../daemon/sim/process-reaper';
import { SimIoError, SimSpecError, SimStateError } from '../../daemon/sim/sim-errors';

const execFileP = promisify(execFile);
const sim = usePveNode();
const KiB = 1024;
const MiB = 1024 * KiB;

/** `qemu-img compare` exits 0 when the guest-visible contents are identical. */
async function sameContents(image: string, format: string, reference: string): Promise<boolean> {
  try {
    await execFileP('qemu-img', ['compare', '-f', format, '-F', 'raw', image, reference]);
    return true;
  } catch {
    return false;
  }
}

describe('node layout', () => {
  it('writes a config in qemu-server syntax with a cd-rom, an unused volume and a snapshot section', async () => {
    const vm = await sim.node.addVm({
      vmid: 600,
      name: 'db',
      agent: true,
      hookscript: 'local:snippets/h.sh',
      disks: [
        { key: 'scsi0', format: 'qcow2', sizeMiB: 8 },
        { key: 'virtio1', format: 'raw', sizeMiB: 2, backup: false },
        { key: 'efidisk0', format: 'raw', sizeMiB: 1 },
      ],
    });
    expect(vm.confPath).toBe(path.join(sim.node.configDir, '600.conf'));
    expect(sim.node.configDir).toBe(path.join(sim.node.root, 'etc/pve/qemu-server'));
    const conf = fs.readFileSync(vm.confPath, 'utf8');
    const [current, snapshot] = conf.split('\n[before-upgrade]\n');
    expect(current).toContain('scsi0: local:600/vm-600-disk-0.qcow2,size=8M\n');
    expect(current).toContain('virtio1: local:600/vm-600-disk-1.raw,size=2M,backup=0\n');
    expect(current).toContain('efidisk0: local:600/vm-600-disk-2.raw,size=1M\n');
    expect(current).toContain('ide2: none,media=cdrom\n');
    expect(current).toContain('unused0: local:600/vm-600-disk-99.raw\n');
    expect(current).toContain('hookscript: local:snippets/h.sh\n');
    expect(current).toContain('agent: 1\n');
    expect(current).toContain('name: db\n');
    expect(current).toContain('parent: before-upgrade\n');
    expect(snapshot).toContain('scsi30: local:600/vm-600-disk-98.qcow2,size=8M\n');
    expect(snapshot).toContain('snaptime: ');
    expect(snapshot).not.toContain('hookscript');
    const keys = current.trim().split('\n').map((l) => l.split(':')[0]);
    expect(keys).toEqual([...keys].sort());

    vm.setHookscript('local:snippets/other.sh');
    vm.setHookscript('local:snippets/third.sh');
    const after = fs.readFileSync(vm.confPath, 'utf8');
    expect(after.match(/^hookscript: .*$/gm)).toEqual(['hookscript: local:snippets/third.sh']);
    expect(after.split('\n[before-upgrade]\n')[1]).toBe(snapshot);
    vm.setHookscript(undefined);
    expect(fs.readFileSync(vm.confPath, 'utf8')).not.toContain('hookscript');

    expect(vm.disks.map((d) => [d.key, d.format, d.volid, d.sizeBytes])).toEqual([
      ['scsi0', 'qcow2', 'local:600/vm-600-disk-0.qcow2', 8 * MiB],
      ['virtio1', 'raw', 'local:600/vm-600-disk-1.raw', 2 * MiB],
      ['efidisk0', 'raw', 'local:600/vm-600-disk-2.raw', 1 * MiB],
    ]);
    expect(vm.qmpPath).toBe(path.join(sim.node.runDir, '600.qmp'));
    expect(vm.pidPath).toBe(path.join(sim.node.runDir, '600.pid'));
    expect(vm.qgaPath).toBe(path.join(sim.node.runDir, '600.qga'));
  });

  it('pvesm path resolves image, snippet and backup volids like Proxmox', async () => {
    const vm = sim.node.vm(600);
    const pvesm = (volid: string): Promise<string> => execFileP(sim.node.pvesmPath, ['path', volid]).then((r) => r.stdout.trim());
    expect(await pvesm(vm.disks[0].volid)).toBe(vm.disks[0].path);
    expect(vm.disks[0].path).toBe(path.join(sim.node.storageDir, 'images/600/vm-600-disk-0.qcow2'));
    expect(await pvesm('local:snippets/h.sh')).toBe(path.join(sim.node.snippetsDir, 'h.sh'));
    expect(await pvesm('local:backup/vzdump-qemu-600.vma.zst')).toBe(path.join(sim.node.dumpDir, 'vzdump-qemu-600.vma.zst'));
    await expect(execFileP(sim.node.pvesmPath, ['path', 'ceph:vm-600-disk-0'])).rejects.toMatchObject({ code: 255, stderr: "storage 'ceph' does not exist\n" });
  });

  it('starts QEMU with the qemu-server drive layout', async () => {
    const vm = sim.node.vm(600);
    await vm.start();
    try {
      const disks = await vm.qmp(queryDisks);
      expect(disks.map((d) => [d.drive, d.device, d.qdev, d.format, d.file, d.size])).toEqual(
        vm.disks.map((d) => [d.key, `drive-${d.key}`, d.key === 'efidisk0' ? undefined : d.key, d.format, d.path, d.sizeBytes]),
      );
      const blocks = await vm.qmp((q) => q.execute<{ device: string; removable: boolean; inserted?: unknown }[]>('query-block'));
      expect(blocks.find((b) => b.device === 'drive-ide2')).toMatchObject({ removable: true });
      expect(blocks.find((b) => b.device === 'drive-ide2')!.inserted).toBeUndefined();
      expect(Number(fs.readFileSync(vm.pidPath, 'utf8'))).toBe(vm.pid());
      // agent: 1 gives the guest-agent socket (nobody answers it: there is no guest).
      expect(fs.statSync(vm.qgaPath).isSocket()).toBe(true);
      expect(fs.readFileSync(`/proc/${vm.pid()}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['-daemonize', '-no-shutdown', '-pidfile', vm.pidPath]));
    } finally {
      await vm.stop();
    }
  });

  it('rejects invalid specs', async () => {
    await expect(sim.node.addVm({ vmid: 99, disks: [] })).rejects.toMatchObject({ code: SimSpecError.code });
    await expect(sim.node.addVm({ vmid: 600, disks: [] })).rejects.toMatchObject({ code: SimSpecError.code });
    await expect(sim.node.addVm({ vmid: 601, disks: [{ key: 'hdd0', format: 'raw', sizeMiB: 1 }] })).rejects.toMatchObject({ code: SimSpecError.code });
    await expect(sim.node.addVm({ vmid: 601, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 1 }, { key: 'scsi0', format: 'raw', sizeMiB: 1 }] })).rejects.toMatchObject({ code: SimSpecError.code });
    expect(() => sim.node.vm(4242)).toThrow(expect.objectContaining({ code: SimStateError.code }));
  });
});

describe('guest writes and reference twins', () => {
  const formats = ['qcow2', 'raw', 'vmdk'] as const;
  const keys = { qcow2: 'scsi0', raw: 'virtio1', vmdk: 'sata0' } as const;

  it('writes while running and while stopped land in both the image and its raw twin', async () => {
    const vm = await sim.node.addVm({
      vmid: 610,
      disks: [...formats.map((format): SimDiskSpec => ({ key: keys[format], format, sizeMiB: 8 })), { key: 'ide0', format: 'qcow2', sizeMiB: 4 }],
    });
    await vm.start();
    for (const d of vm.disks) {
      await vm.write(d.key, { pattern: 0xa5, offset: 0, length: 64 * KiB });
      await vm.write(d.key, { pattern: 0x5a, offset: 1 * MiB + 123, length: 300 * KiB + 7 });
      await vm.write(d.key, { pattern: 0x00, offset: 16 * KiB, length: 4 * KiB });
    }
    await vm.stop();
    for (const d of vm.disks) {
      await vm.write(d.key, { pattern: 0xee, offset: d.sizeBytes - 512, length: 512 });
      expect(await sameContents(d.path, d.format, d.reference)).toBe(true);
    }
    const ref = fs.readFileSync(vm.disks[0].reference);
    expect(ref.subarray(0, 16 * KiB).every((b) => b === 0xa5)).toBe(true);
    expect(ref.subarray(16 * KiB, 20 * KiB).every((b) => b === 0)).toBe(true);
    expect(ref[1 * MiB + 122]).toBe(0);
    expect(ref[1 * MiB + 123]).toBe(0x5a);
  });

  it('writeData puts arbitrary bytes on a stopped VM\'s disks and their twins', async () => {
    const vm = sim.node.vm(610);
    const data = crypto.randomBytes(200 * KiB + 13);
    for (const d of vm.disks) {
      await vm.writeData(d.key, 3 * MiB + 1, data);
      expect(await sameContents(d.path, d.format, d.reference)).toBe(true);
      const ref = fs.readFileSync(d.reference);
      expect(ref.subarray(3 * MiB + 1, 3 * MiB + 1 + data.length).equals(data)).toBe(true);
    }
    await vm.start();
    try {
      await expect(vm.writeData('scsi0', 0, data)).rejects.toMatchObject({ code: SimStateError.code });
    } finally {
      await vm.stop();
    }
  });

  it('snapshotReference freezes the expected bytes while later writes go on', async () => {
    const vm = sim.node.vm(610);
    const before = await vm.snapshotReference('scsi0');
    await vm.write('scsi0', { pattern: 0x77, offset: 2 * MiB, length: 64 * KiB });
    const live = fs.readFileSync(vm.disks[0].reference);
    const frozen = fs.readFileSync(before);
    expect(frozen.length).toBe(live.length);
    expect(frozen.subarray(2 * MiB, 2 * MiB + 64 * KiB).equals(live.subarray(2 * MiB, 2 * MiB + 64 * KiB))).toBe(false);
    expect(live.subarray(2 * MiB, 2 * MiB + 64 * KiB).every((b) => b === 0x77)).toBe(true);
    // Sparse: a mostly empty 8 MiB twin does not occupy 8 MiB.
    expect(fs.statSync(before).blocks * 512).toBeLessThan(4 * MiB);
  });

  it('guest writes work on a paused VM and while a backup job holds the disk', async () => {
    const vm = await sim.node.addVm({ vmid: 620, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
    await vm.start({ paused: true });
    await vm.write('scsi0', { pattern: 0x61, offset: 0, length: 128 * KiB });
    const scratch = path.join(sim.node.root, 'scratch-620.qcow2');
    await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', scratch, String(4 * MiB)]);
    await vm.qmp(async (q) => {
      await q.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'fleece', file: { driver: 'file', filename: scratch }, backing: 'drive-scsi0' });
      await q.execute('blockdev-backup', { device: 'drive-scsi0', target: 'fleece', sync: 'none', 'job-id': 'sim-job' });
    });
    await vm.write('scsi0', { pattern: 0x62, offset: 64 * KiB, length: 128 * KiB });
    const jobs = await vm.qmp((q) => q.execute<{ device: string; status: string }[]>('query-block-jobs'));
    expect(jobs).toMatchObject([{ device: 'sim-job', status: 'running' }]);
    await vm.qmp(async (q) => {
      await q.execute('block-job-cancel', { device: 'sim-job', force: true });
      const deadline = Date.now() + 30_000;
      while ((await q.execute<unknown[]>('query-block-jobs')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await q.execute('blockdev-del', { 'node-name': 'fleece' });
    });
    await vm.stop();
    expect(await sameContents(vm.disks[0].path, 'qcow2', vm.disks[0].reference)).toBe(true);
    const ref = fs.readFileSync(vm.disks[0].reference);
    expect(ref[64 * KiB - 1]).toBe(0x61);
    expect(ref[64 * KiB]).toBe(0x62);
  });

  it('refuses writes outside the disk or with a non-byte pattern', async () => {
    const vm = sim.node.vm(610);
    await expect(vm.write('scsi0', { pattern: 1, offset: 8 * MiB - 1, length: 2 })).rejects.toMatchObject({ code: SimIoError.code });
    await expect(vm.write('scsi0', { pattern: 256, offset: 0, length: 1 })).rejects.toMatchObject({ code: SimIoError.code });
    await expect(vm.write('scsi0', { pattern: 1, offset: 0, length: 0 })).rejects.toMatchObject({ code: SimIoError.code });
  });
});

describe('cleanup', () => {
  it('kills every QEMU it started and removes the node directory', async () => {
    const node = await createPveNode();
    try {
      const a = await node.addVm({ vmid: 700, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 1 }] });
      const b = await node.addVm({ vmid: 701, disks: [{ key: 'virtio0', format: 'raw', sizeMiB: 1 }] });
      await a.start();
      await b.start({ paused: true });
      const pids = [a.pid()!, b.pid()!];
      expect(pids.every(isAlive)).toBe(true);
      await node.cleanup();
      expect(pids.some(isAlive)).toBe(false);
      expect(fs.existsSync(node.root)).toBe(false);
    } finally {
      await node.cleanup();
    }
  });
});
