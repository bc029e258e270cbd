/**
 * The simulator's `qm rollback` and offline `qm snapshot` (daemon/sim/qm-rollback.ts) on real QEMU
 * without pve-cbt: the disk goes back byte-exact (its raw twin with it), a running VM is stopped
 * with pre-stop/post-stop and, with a vmstate, resumed; a persistent bitmap left in the image makes
 * the rollback fail exactly as Proxmox's does (the defect of issue 14); `qm start` and `qm rollback`
 * take Proxmox's per-VM flock.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { acquirePveLock } from '../../daemon/pve/pve-lock';
import { installLoggingHook } from '../../daemon/sim/logging-hook';
import type { SimVm } from '../../daemon/sim/pve-node';
import { offlineSnapshot, qmRollback, vmstateSnapshot } from '../../daemon/sim/qm-rollback';
import { SimIoError } from '../../daemon/sim/sim-errors';
import { usePveNode } from './jest-cleanup';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;
const sim = usePveNode();

async function imageBytes(vm: SimVm): Promise<Buffer> {
  const out = `${vm.disks[0].reference}.check`;
  try {
    await execFileP('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', vm.disks[0].path, out]);
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

describe('qm rollback and offline qm snapshot in the simulator', () => {
  let vm: SimVm;
  let log: ReturnType<typeof installLoggingHook>;
  beforeAll(async () => {
    vm = await sim.node.addVm({ vmid: 610, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
    log = installLoggingHook(sim.node, 'rb.sh');
    vm.setHookscript(log.volid);
    await vm.writeData('scsi0', 0, Buffer.alloc(65536, 1));
  });
  afterAll(async () => {
    if (vm.running()) await vm.stop();
  });

  test('stopped VM: snapshot, write, rollback: image and twin are back at the snapshot, no hooks run', async () => {
    await offlineSnapshot(vm, 'a');
    const atSnap = fs.readFileSync(vm.disks[0].reference);
    await vm.write('scsi0', { pattern: 0x22, offset: 1 * MiB, length: 65536 });
    const before = log.lines().length;
    expect(await qmRollback(vm, 'a')).toEqual({ stopped: false, resumed: false });
    expect(log.lines().slice(before)).toEqual([]);
    expect(fs.readFileSync(vm.disks[0].reference).equals(atSnap)).toBe(true);
    expect((await imageBytes(vm)).equals(atSnap)).toBe(true);
    expect(fs.readFileSync(vm.confPath, 'utf8')).not.toMatch(/^lock:/m);
  });

  test('running VM without vmstate: stopped (pre-stop, post-stop), rolled back, left stopped', async () => {
    await vm.start();
    await vm.write('scsi0', { pattern: 0x33, offset: 2 * MiB, length: 65536 });
    const before = log.lines().length;
    expect(await qmRollback(vm, 'a')).toEqual({ stopped: true, resumed: false });
    expect(log.lines().slice(before)).toEqual(['610 pre-stop', '610 post-stop']);
    expect(vm.running()).toBe(false);
    expect((await imageBytes(vm)).equals(fs.readFileSync(vm.disks[0].reference))).toBe(true);
  });

  test('running VM with vmstate: savevm, write, rollback resumes it from the vmstate', async () => {
    await vm.start();
    await vm.write('scsi0', { pattern: 0x44, offset: 3 * MiB, length: 65536 });
    await vmstateSnapshot(vm, 'ram');
    const atSnap = fs.readFileSync(vm.disks[0].reference);
    await vm.write('scsi0', { pattern: 0x45, offset: 3 * MiB, length: 65536 });
    const before = log.lines().length;
    expect(await qmRollback(vm, 'ram')).toEqual({ stopped: true, resumed: true });
    expect(log.lines().slice(before)).toEqual(['610 pre-stop', '610 post-stop', '610 pre-start', '610 post-start']);
    expect(vm.running()).toBe(true);
    await vm.stop();
    expect((await imageBytes(vm)).equals(atSnap)).toBe(true);
  });

  test('a persistent bitmap in the image makes qm rollback fail as on Proxmox VE', async () => {
    await execFileP('qemu-img', ['bitmap', '--add', vm.disks[0].path, 'pve-cbt-scsi0-g1']);
    try {
      await expect(qmRollback(vm, 'a')).rejects.toMatchObject({ code: SimIoError.code, details: { output: expect.stringMatching(/Device has active dirty bitmaps/) } });
    } finally {
      await execFileP('qemu-img', ['bitmap', '--remove', vm.disks[0].path, 'pve-cbt-scsi0-g1']);
    }
  });

  test('qm start waits for Proxmox per-VM lock held by someone else', async () => {
    const lock = await acquirePveLock(sim.node.lockDir, vm.vmid);
    let started = false;
    const start = vm.start().then(() => {
      started = true;
    });
    // Wait until the start is provably blocked: its pre-start has not run while the lock is held.
    const before = log.lines().length;
    await new Promise((r) => setTimeout(r, 300));
    expect(started).toBe(false);
    expect(log.lines().length).toBe(before);
    await lock.release();
    await start;
    expect(started).toBe(true);
    await vm.stop();
  });
});
