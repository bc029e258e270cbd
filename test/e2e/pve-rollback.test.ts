/**
 * Issue 14 points 1-3 acceptance: Proxmox VE's offline operations on a stopped VM's qcow2 image work
 * with pve-cbt installed (its bitmaps are parked outside the image while no QEMU holds it), and the
 * first backup after each restores byte-exact and says why it is a full-compare. Real daemon, real
 * compiled hooks, real QEMU, qemu-img, qemu-io and SQLite through the simulator (`qm rollback` and
 * offline `qm snapshot` as daemon/sim/qm-rollback.ts runs them).
 *
 * Steps run in order on one VM; each ends with a backup checked byte for byte (backupAndCheck).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BackupResult } from '../../daemon/backup/backup-vm';
import type { SimVm } from '../../daemon/sim/pve-node';
import { offlineSnapshot, qmRollback, vmstateSnapshot } from '../../daemon/sim/qm-rollback';
import { addVm, createStack, diskOf, MiB, type Stack } from './e2e-harness';

const execFileP = promisify(execFile);

async function ownBitmapsInImage(vm: SimVm): Promise<string[]> {
  const { stdout } = await execFileP('qemu-img', ['info', '--output=json', '-U', vm.disks[0].path]);
  const info = JSON.parse(stdout) as { 'format-specific'?: { data?: { bitmaps?: { name: string }[] } } };
  return (info['format-specific']?.data?.bitmaps ?? []).map((b) => b.name).filter((n) => n.startsWith('pve-cbt-'));
}

async function qemuImg(args: string[]): Promise<void> {
  await execFileP('qemu-img', args);
}

describe('living with Proxmox VE offline operations (issue 14 points 1-3)', () => {
  let stack: Stack;
  let vm: SimVm;
  const backup = async (): Promise<ReturnType<typeof diskOf>> => diskOf(((await stack.backupAndCheck([vm])) as Map<number, BackupResult>).get(vm.vmid));

  beforeAll(async () => {
    stack = await createStack();
    await stack.startDaemon();
    vm = await addVm(stack, 501, 'qcow2');
    await vm.start();
    expect((await backup()).mode).toBe('full');
    await vm.write('scsi0', { pattern: 0x51, offset: 1 * MiB, length: 65536 });
    expect((await backup()).mode).toBe('incremental');
  }, 120_000);
  afterAll(async () => {
    await stack?.cleanup();
  });

  test('qm stop parks the bitmap outside the image; qm start puts it back and the next backup is incremental', async () => {
    // Written before the stop: only the parked and restored bitmap knows this block changed.
    await vm.write('scsi0', { pattern: 0x5a, offset: 7 * MiB, length: 65536 });
    await vm.stop();
    expect(await ownBitmapsInImage(vm)).toEqual([]);
    expect(fs.existsSync(path.join(stack.config.stateDir, 'parked', '501', 'scsi0.json'))).toBe(true);
    await vm.start();
    await vm.write('scsi0', { pattern: 0x52, offset: 2 * MiB, length: 65536 });
    const d = await backup();
    expect(d.mode).toBe('incremental');
    expect(d.reason).toMatch(/^bitmap-valid/);
  });

  test('stopped VM: offline backups are incremental from the parked bitmap and leave it parked', async () => {
    await vm.write('scsi0', { pattern: 0x5b, offset: 6 * MiB, length: 65536 });
    await vm.stop();
    const d = await backup();
    expect(d.mode).toBe('incremental');
    expect(d.bytesRead).toBeGreaterThan(0);
    expect(d.consistency).toBe('offline');
    expect(await ownBitmapsInImage(vm)).toEqual([]);
    expect((await backup()).mode).toBe('incremental');
  });

  test('offline qm snapshot (qemu-img snapshot -c) succeeds; the next backup is a full-compare naming the snapshot table', async () => {
    await offlineSnapshot(vm, 'before');
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/^ledger-invalid: .*image changed while the VM was stopped: snapshot count changed from 0 to 1/);
    expect(await ownBitmapsInImage(vm)).toEqual([]);
  });

  test('an offline write through qemu-io is seen: full-compare naming the change', async () => {
    await vm.write('scsi0', { pattern: 0x53, offset: 3 * MiB, length: 65536 });
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/image changed while the VM was stopped: .*file modified \(mtime changed\)/);
  });

  test('qm rollback of a stopped VM succeeds; the next backup is a full-compare that restores the rolled-back disk', async () => {
    await vm.write('scsi0', { pattern: 0x54, offset: 4 * MiB, length: 65536 });
    await backup();
    const r = await qmRollback(vm, 'before');
    expect(r).toEqual({ stopped: false, resumed: false });
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/image changed while the VM was stopped: .*active L1 table changed/);
  });

  test('qm rollback of a running VM (no vmstate): PVE stops it, applies the snapshot; full-compare after', async () => {
    await vm.start();
    await vm.write('scsi0', { pattern: 0x55, offset: 5 * MiB, length: 65536 });
    await backup();
    const from = stack.node.hookLog.length;
    const r = await qmRollback(vm, 'before');
    expect(r).toEqual({ stopped: true, resumed: false });
    expect(vm.running()).toBe(false);
    expect(stack.node.hookLog.slice(from).filter((h) => h.kind === 'guest').map((h) => [h.phase, h.exitCode])).toEqual([
      ['pre-stop', 0],
      ['post-stop', 0],
    ]);
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/image changed while the VM was stopped/);
    // Nothing changed since that backup: the start puts the bitmap back.
    await vm.start();
    expect((await backup()).mode).toBe('incremental');
  });

  test('qm rollback of a running VM with vmstate: stopped, applied, resumed from the vmstate; full-compare after', async () => {
    await vmstateSnapshot(vm, 'ram');
    await vm.write('scsi0', { pattern: 0x56, offset: 6 * MiB, length: 65536 });
    await backup();
    const r = await qmRollback(vm, 'ram');
    expect(r).toEqual({ stopped: true, resumed: true });
    expect(vm.running()).toBe(true);
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/^ledger-invalid: .*image changed while the VM was stopped/);
    await vm.stop();
  });

  test('qemu-img snapshot -d, amend and check -r on the stopped image succeed; each change is named, an unchanged image stays incremental', async () => {
    const img = vm.disks[0].path;
    await qemuImg(['snapshot', '-d', 'ram', img]);
    let d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/snapshot count changed from 2 to 1/);

    await qemuImg(['amend', '-f', 'qcow2', '-o', 'lazy_refcounts=on', img]);
    d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/qcow2 header changed/);

    // A clean image: check -r finds nothing to repair and writes nothing, so it is provably unchanged.
    await qemuImg(['check', '-r', 'all', '-f', 'qcow2', img]);
    d = await backup();
    expect(d.mode).toBe('incremental');
  });

  test('offline resize (qemu-img resize): full-compare for the new size', async () => {
    const disk = vm.disks[0];
    await qemuImg(['resize', '-f', 'qcow2', disk.path, String(disk.sizeBytes + 4 * MiB)]);
    disk.sizeBytes += 4 * MiB;
    fs.truncateSync(disk.reference, disk.sizeBytes);
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/^disk-resized/);
    expect(d.size).toBe(disk.sizeBytes);
  });

  test('a restore over the volume (file replaced by another, new inode) is seen', async () => {
    const img = vm.disks[0].path;
    const copy = `${img}.restored`;
    await qemuImg(['convert', '-f', 'qcow2', '-O', 'qcow2', img, copy]);
    fs.renameSync(copy, img);
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/volume file replaced \(inode/);
  });

  test('daemon down while the VM stops: the hook removes the bitmap itself, qm rollback works, the next backup is a full-compare saying why', async () => {
    if (vm.running()) await vm.stop();
    await offlineSnapshot(vm, 'down');
    await vm.start();
    await vm.write('scsi0', { pattern: 0x57, offset: 7 * MiB, length: 65536 });
    await backup();
    await vm.write('scsi0', { pattern: 0x58, offset: 1 * MiB, length: 65536 });
    await stack.stopDaemon();
    await vm.stop();
    expect(await ownBitmapsInImage(vm)).toEqual([]);
    await qmRollback(vm, 'down');
    await stack.startDaemon();
    const d = await backup();
    expect(d.mode).toBe('full-compare');
    expect(d.reason).toMatch(/post-stop hook removed pve-cbt-scsi0-g\d+ from the image itself because the daemon was not running/);
  });
});
