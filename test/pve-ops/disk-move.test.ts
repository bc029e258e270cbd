/**
 * `qm disk move` while the VM runs (drive-mirror, or blockdev-mirror in PVE 9's layout, then
 * block-job-complete) and while it is stopped (qemu-img convert into a new volume). No hook fires;
 * the engine sees the config's volume differ from the one the ledger recorded, and the next backup of
 * the disk is a full-compare against that disk key's previous backups (`volume-changed`): never a new
 * full, never an incremental. The one after it is incremental again on the new volume. Every backup
 * restores byte for byte, also after later moves.
 */
import fs from 'node:fs';
import { confEntries } from '../../daemon/sim/conf-edit';
import type { DiskLayout } from '../../daemon/sim/pve-node';
import { qmDiskMove } from '../../daemon/sim/qm-disk-move';
import { createEngineEnv, type EngineEnv } from '../daemon/backup/backup-helpers';
import { usePveNode } from '../sim/jest-cleanup';
import { BackupLog, diskOf, imageBitmaps } from './pve-ops-helpers';

const sim = usePveNode();
let env: EngineEnv;
beforeAll(async () => {
  env = await createEngineEnv(sim.node);
});
afterAll(() => env.close());

const KiB = 1024;
const MiB = 1024 * KiB;

describe.each<[DiskLayout, number]>([
  ['drive', 310],
  ['blockdev', 311],
])('%s layout', (layout, vmid) => {
  test('running move, then stopped move with format change and --delete: full-compare once, then incremental', async () => {
    const vm = await sim.node.addVm({ vmid, layout, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }, { key: 'scsi1', format: 'qcow2', sizeMiB: 4 }] });
    const log = new BackupLog();
    const conf = (): Record<string, string> => confEntries(fs.readFileSync(vm.confPath, 'utf8'));
    await vm.start();
    await vm.write('scsi0', { pattern: 0x61, offset: 0, length: 2 * MiB });
    await vm.write('scsi1', { pattern: 0x62, offset: MiB, length: 64 * KiB });
    const full = await env.backup(vmid);
    await log.record(env, vm, full);
    await vm.write('scsi0', { pattern: 0x63, offset: 3 * MiB, length: 64 * KiB });
    const inc = await env.backup(vmid);
    expect(diskOf(inc, 'scsi0').mode).toBe('incremental');
    await log.record(env, vm, inc);

    // Running move; the guest writes before and after it.
    const oldVolid = vm.disks[0].volid;
    const oldPath = vm.disks[0].path;
    await vm.write('scsi0', { pattern: 0x64, offset: 5 * MiB, length: 64 * KiB });
    // ... and while the mirror runs (writes go to both images until block-job-complete).
    const moved = await qmDiskMove(vm, 'scsi0', { whileMirroring: () => vm.write('scsi0', { pattern: 0x6a, offset: 4 * MiB, length: 64 * KiB }) });
    expect(moved.volid).not.toBe(oldVolid);
    expect(conf().scsi0).toBe(`${moved.volid},size=8M`);
    expect(conf()[moved.unusedKey as string]).toBe(oldVolid);
    expect(fs.existsSync(oldPath)).toBe(true);
    await vm.write('scsi0', { pattern: 0x65, offset: 6 * MiB, length: 64 * KiB });
    const afterMove = await env.backup(vmid);
    const d0 = diskOf(afterMove, 'scsi0');
    expect(d0).toMatchObject({ mode: 'full-compare', reason: expect.stringMatching(/^volume-changed: /) });
    expect(d0.reason).toContain(moved.volid);
    expect(d0.reason).toContain(oldVolid);
    // Read whole (every allocated byte, not a bitmap's dirty areas).
    expect(d0.bytesRead).toBeGreaterThanOrEqual(2 * MiB + 4 * 64 * KiB);
    // Compared with scsi0's earlier backups: only the three changed 64 KiB areas are new.
    expect(d0.bytesStored).toBeLessThanOrEqual(3 * 64 * KiB + 8 * KiB);
    // The disk that did not move is unaffected.
    expect(diskOf(afterMove, 'scsi1').mode).toBe('incremental');
    await log.record(env, vm, afterMove);

    await vm.write('scsi0', { pattern: 0x66, offset: 7 * MiB, length: 64 * KiB });
    const incNew = await env.backup(vmid);
    expect(diskOf(incNew, 'scsi0')).toMatchObject({ mode: 'incremental', reason: expect.stringMatching(/^bitmap-valid: /) });
    expect(diskOf(incNew, 'scsi0').bytesRead).toBeLessThanOrEqual(64 * KiB);
    await log.record(env, vm, incNew);
    expect(env.ledger.get(vmid, 'scsi0')).toMatchObject({ state: 'valid', volid: moved.volid, path: moved.path });

    // Stopped move to raw with --delete: qemu-img convert, the old volume goes.
    await vm.stop();
    const rawMove = await qmDiskMove(vm, 'scsi0', { format: 'raw', delete: true });
    expect(rawMove.unusedKey).toBeUndefined();
    expect(fs.existsSync(moved.path)).toBe(false);
    expect(conf().scsi0).toBe(`${rawMove.volid},size=8M`);
    expect(rawMove.volid).toMatch(/\.raw$/);
    await vm.write('scsi0', { pattern: 0x67, offset: 64 * KiB, length: 64 * KiB });
    const afterRaw = await env.backup(vmid);
    expect(diskOf(afterRaw, 'scsi0')).toMatchObject({ mode: 'full-compare', reason: expect.stringMatching(/^volume-changed: .*\.raw/) });
    expect(diskOf(afterRaw, 'scsi0').bytesStored).toBeLessThanOrEqual(64 * KiB + 8 * KiB);
    await log.record(env, vm, afterRaw);
    await log.recheck(env);
  });
});

test('stopped qcow2 move: the new image has no bitmap until the full-compare adds one, then incrementals follow', async () => {
  const vm = await sim.node.addVm({ vmid: 312, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
  const log = new BackupLog();
  await vm.write('scsi0', { pattern: 0x71, offset: 0, length: MiB });
  await log.record(env, vm, await env.backup(312));
  await vm.write('scsi0', { pattern: 0x72, offset: 2 * MiB, length: 64 * KiB });
  const moved = await qmDiskMove(vm, 'scsi0');
  expect(await imageBitmaps(moved.path)).toEqual([]);
  const fc = await env.backup(312);
  expect(diskOf(fc, 'scsi0')).toMatchObject({ mode: 'full-compare', reason: expect.stringMatching(/^volume-changed: /) });
  await log.record(env, vm, fc);
  expect((await imageBitmaps(moved.path)).length).toBe(1);
  await vm.write('scsi0', { pattern: 0x73, offset: 3 * MiB, length: 64 * KiB });
  const inc = await env.backup(312);
  expect(diskOf(inc, 'scsi0').mode).toBe('incremental');
  await log.record(env, vm, inc);
  await log.recheck(env);
});

test('--delete is refused while a snapshot uses the volume', async () => {
  const vm = await sim.node.addVm({ vmid: 313, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
  const { qmSnapshot } = await import('../../daemon/sim/qm-snapshot');
  await qmSnapshot(vm, 'keep');
  const before = fs.readFileSync(vm.confPath, 'utf8');
  await expect(qmDiskMove(vm, 'scsi0', { delete: true })).rejects.toMatchObject({ code: 'CBT_SIM_QM', message: expect.stringContaining("can't move a disk with snapshots") });
  expect(fs.readFileSync(vm.confPath, 'utf8')).toBe(before);
});
