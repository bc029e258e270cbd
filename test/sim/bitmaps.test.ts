import { QmpCommandError } from '../../daemon/qmp/qmp-errors';
import { usePveNode } from './jest-cleanup';
import { installLoggingHook } from '../../daemon/sim/logging-hook';
import type { SimVm } from '../../daemon/sim/pve-node';
import { vmBitmap, vmBitmaps } from '../../daemon/sim/vm-bitmaps';

// Acceptance of issue 2: QEMU dirty-bitmap behaviour the whole design relies on, on real QEMU 7.2.
const sim = usePveNode();
const KiB = 1024;
const GRAN = 64 * KiB;

function addBitmap(vm: SimVm, disk: string, name: string, persistent: boolean, granularity?: number): Promise<unknown> {
  return vm.qmp((q) =>
    q.execute('block-dirty-bitmap-add', { node: `drive-${disk}`, name, persistent, ...(granularity ? { granularity } : {}) }),
  );
}

describe('dirty bitmaps through the simulator', () => {
  let vm: SimVm;
  beforeAll(async () => {
    vm = await sim.node.addVm({
      vmid: 300,
      disks: [
        { key: 'scsi0', format: 'qcow2', sizeMiB: 16 },
        { key: 'virtio1', format: 'raw', sizeMiB: 8 },
        { key: 'sata0', format: 'vmdk', sizeMiB: 8 },
      ],
    });
  });
  beforeEach(async () => {
    if (!vm.running()) await vm.start();
  });

  it('a persistent bitmap on qcow2 survives stop/start with its count', async () => {
    await addBitmap(vm, 'scsi0', 'pve-cbt-keep', true);
    await vm.write('scsi0', { pattern: 0x11, offset: 3 * GRAN, length: 2 * GRAN });
    await vm.stop();
    await vm.start();
    expect(await vmBitmap(vm, 'scsi0', 'pve-cbt-keep')).toEqual({
      name: 'pve-cbt-keep', count: 2 * GRAN, granularity: GRAN, recording: true, busy: false, persistent: true, inconsistent: false,
    });
  });

  it('a bitmap on raw is transient: gone after stop/start', async () => {
    await addBitmap(vm, 'virtio1', 'pve-cbt-raw', false);
    expect(await vmBitmap(vm, 'virtio1', 'pve-cbt-raw')).toMatchObject({ persistent: false, recording: true });
    await vm.stop();
    await vm.start();
    expect(await vmBitmaps(vm, 'virtio1')).toEqual([]);
  });

  it.each([
    ['raw', 'virtio1'],
    ['vmdk', 'sata0'],
  ])('adding a persistent bitmap to %s fails with QEMU\'s error', async (_format, disk) => {
    const err = await addBitmap(vm, disk, 'pve-cbt-p', true).catch((e: unknown) => e);
    expect(QmpCommandError.is(err)).toBe(true);
    expect((err as { details: unknown }).details).toMatchObject({
      command: 'block-dirty-bitmap-add',
      errorClass: 'GenericError',
      desc: expect.stringMatching(new RegExp(`^Can't store persistent bitmaps to drive-${disk}: Operation not supported`)),
    });
    expect(await vmBitmap(vm, disk, 'pve-cbt-p')).toBeUndefined();
  });

  it('after a crash a stored qcow2 bitmap comes back inconsistent; one never stored is lost', async () => {
    await addBitmap(vm, 'scsi0', 'pve-cbt-crash', true);
    await vm.stop(); // stored in the image, in-use flag set again on the next open
    await vm.start();
    await addBitmap(vm, 'scsi0', 'pve-cbt-unstored', true);
    await vm.write('scsi0', { pattern: 0x22, offset: 0, length: GRAN });
    await vm.crash();
    await vm.start();
    expect(await vmBitmap(vm, 'scsi0', 'pve-cbt-crash')).toMatchObject({ persistent: true, inconsistent: true, recording: false });
    expect(await vmBitmap(vm, 'scsi0', 'pve-cbt-unstored')).toBeUndefined();
  });

  it('reset and a guest reboot run no hook, keep the QEMU process and the bitmap', async () => {
    const hook = installLoggingHook(sim.node, 'bitmap-reset.sh');
    vm.setHookscript(hook.volid);
    try {
      await addBitmap(vm, 'virtio1', 'pve-cbt-reset', false);
      await vm.write('virtio1', { pattern: 0x33, offset: 0, length: 4 * KiB });
      const pid = vm.pid();
      await vm.reset();
      await vm.guestReboot();
      expect(vm.pid()).toBe(pid);
      expect(hook.lines()).toEqual([]);
      expect(await vmBitmap(vm, 'virtio1', 'pve-cbt-reset')).toMatchObject({ count: GRAN, recording: true });
    } finally {
      vm.setHookscript(undefined);
    }
  });

  // Each case: writes (offset, length) into a fresh bitmap; count must equal the dirtied
  // granularity-aligned clusters, computed here independently of QEMU.
  const writeCases: { name: string; granularity: number; writes: [number, number][] }[] = [
    { name: 'one aligned cluster', granularity: GRAN, writes: [[GRAN, GRAN]] },
    { name: 'a 100-byte write across a cluster boundary', granularity: GRAN, writes: [[GRAN - 50, 100]] },
    { name: 'a single byte', granularity: GRAN, writes: [[5 * GRAN + 7, 1]] },
    { name: 'overlapping writes count once', granularity: GRAN, writes: [[0, 100 * KiB], [32 * KiB, 100 * KiB]] },
    { name: 'scattered writes, 1 MiB and small', granularity: GRAN, writes: [[1024 * KiB, 1024 * KiB], [7 * 1024 * KiB + 1, 512]] },
    { name: 'granularity 4 KiB', granularity: 4 * KiB, writes: [[0, 4 * KiB], [10 * KiB, 1], [1024 * KiB - 1, 2]] },
    { name: 'granularity 1 MiB', granularity: 1024 * KiB, writes: [[512 * KiB, 1024 * KiB]] },
  ];

  it.each(writeCases)('guest writes raise count by the bytes rounded to the granularity: $name', async ({ granularity, writes }) => {
    const name = `pve-cbt-count-${granularity}-${writes.length}-${writes[0][0]}`;
    await addBitmap(vm, 'scsi0', name, false, granularity);
    expect(await vmBitmap(vm, 'scsi0', name)).toMatchObject({ count: 0, granularity });
    const clusters = new Set<number>();
    for (const [offset, length] of writes) {
      await vm.write('scsi0', { pattern: 0x44, offset, length });
      for (let c = Math.floor(offset / granularity); c <= Math.floor((offset + length - 1) / granularity); c++) clusters.add(c);
    }
    expect((await vmBitmap(vm, 'scsi0', name))!.count).toBe(clusters.size * granularity);
    await vm.qmp((q) => q.execute('block-dirty-bitmap-remove', { node: 'drive-scsi0', name }));
  });
});
