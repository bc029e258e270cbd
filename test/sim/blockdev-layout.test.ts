import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { queryDisks } from '../../daemon/qmp/query-disks';
import { usePveNode } from './jest-cleanup';
import type { SimVm } from '../../daemon/sim/pve-node';
import { blockdevNodeName } from '../../daemon/sim/qemu-command';
import { SimSpecError } from '../../daemon/sim/sim-errors';
import { vmBitmap } from '../../daemon/sim/vm-bitmaps';

// The PVE 9 -blockdev layout launched for real: drive-KEY is a throttle node, bitmaps live on the
// format node below it, and queryDisks must find that node.
const execFileP = promisify(execFile);
const sim = usePveNode();
const GRAN = 64 * 1024;

it('names nodes like qemu-server Blockdev.pm', () => {
  // printf 'drive=scsi0,volid=local:100/vm-100-disk-0.qcow2' | sha256sum | cut -c1-30
  expect(blockdevNodeName('fmt', 'scsi0', 'local:100/vm-100-disk-0.qcow2')).toBe('f14746557d2a99c86b817f8f3ed7182');
  expect(blockdevNodeName('file', 'scsi0', 'local:100/vm-100-disk-0.qcow2')).toBe('e14746557d2a99c86b817f8f3ed7182');
});

describe('-blockdev layout (PVE 9)', () => {
  let vm: SimVm;
  beforeAll(async () => {
    vm = await sim.node.addVm({
      vmid: 900,
      layout: 'blockdev',
      disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }, { key: 'virtio1', format: 'raw', sizeMiB: 4 }],
    });
    await vm.start();
  });

  it('pins a machine version >= 10 in the config', () => {
    expect(fs.readFileSync(vm.confPath, 'utf8')).toMatch(/^machine: pc-i440fx-10\.0\+pve0$/m);
  });

  it('exposes throttle nodes drive-KEY over format nodes that queryDisks finds', async () => {
    const disks = await vm.qmp(queryDisks);
    expect(disks.map((d) => [d.drive, d.device, d.qdev, d.format, d.nodeName, d.file])).toEqual(
      vm.disks.map((d) => [d.key, `drive-${d.key}`, d.key, d.format, blockdevNodeName('fmt', d.key, d.volid), d.path]),
    );
    const blocks = await vm.qmp((q) => q.execute<{ device: string; inserted?: { drv: string } }[]>('query-block'));
    expect(blocks.filter((b) => b.inserted).map((b) => [b.device, b.inserted!.drv])).toEqual([['', 'throttle'], ['', 'throttle']]);
  });

  it('keeps a persistent bitmap on the qcow2 format node across stop/start and counts guest writes', async () => {
    const fmt = blockdevNodeName('fmt', 'scsi0', vm.disks[0].volid);
    await vm.qmp((q) => q.execute('block-dirty-bitmap-add', { node: fmt, name: 'pve-cbt-9', persistent: true }));
    await vm.write('scsi0', { pattern: 0x9a, offset: GRAN + 1, length: GRAN });
    expect(await vmBitmap(vm, 'scsi0', 'pve-cbt-9')).toMatchObject({ count: 2 * GRAN, persistent: true });
    await vm.stop();
    await vm.start();
    expect(await vmBitmap(vm, 'scsi0', 'pve-cbt-9')).toMatchObject({ count: 2 * GRAN, persistent: true, inconsistent: false });
  });

  it('refuses a persistent bitmap on the raw format node', async () => {
    const fmt = blockdevNodeName('fmt', 'virtio1', vm.disks[1].volid);
    await expect(vm.qmp((q) => q.execute('block-dirty-bitmap-add', { node: fmt, name: 'pve-cbt-9', persistent: true }))).rejects.toMatchObject({
      code: 'CBT_QMP_COMMAND',
      details: { errorClass: 'GenericError', desc: expect.stringContaining("Can't store persistent bitmaps") },
    });
  });

  it('guest writes match the reference twin', async () => {
    await vm.write('virtio1', { pattern: 0x3c, offset: 12345, length: 70000 });
    await vm.stop();
    for (const d of vm.disks) {
      await expect(execFileP('qemu-img', ['compare', '-f', d.format, '-F', 'raw', d.path, d.reference])).resolves.toBeDefined();
    }
  });

  it('rejects device-less disks, which the blockdev layout cannot show in query-block', async () => {
    await expect(sim.node.addVm({ vmid: 901, layout: 'blockdev', disks: [{ key: 'efidisk0', format: 'raw', sizeMiB: 1 }] })).rejects.toMatchObject({ code: SimSpecError.code });
  });
});
