/**
 * `qm snapshot` and `qm delsnapshot` of a running VM (with and without vmstate) while pve-cbt's
 * persistent bitmaps are in the qcow2 images: QEMU accepts both, the snapshots are real (their bytes
 * and vmstate are read back), and since a snapshot writes no guest data the bitmap saw every write:
 * each next backup is an incremental, and every backup restores byte for byte. In both qemu-server
 * disk layouts; the stopped-VM forms (`qemu-img snapshot -c/-d`) are exercised at the end.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, transports } from 'winston';
import type { BackupResult } from '../../daemon/backup/backup-vm';
import { confEntries, confSet, snapshotNames } from '../../daemon/sim/conf-edit';
import type { DiskLayout } from '../../daemon/sim/pve-node';
import { qmDelsnapshot, qmSnapshot } from '../../daemon/sim/qm-snapshot';
import { createEngineEnv, type EngineEnv } from '../daemon/backup/backup-helpers';
import { usePveNode } from '../sim/jest-cleanup';
import { BackupLog, diskOf, exportSnapshot, imageBitmaps, imageSnapshots } from './pve-ops-helpers';

const sim = usePveNode();
let env: EngineEnv;
beforeAll(async () => {
  env = await createEngineEnv(sim.node);
});
afterAll(() => env.close());

const KiB = 1024;
const MiB = 1024 * KiB;
const KEYS = ['scsi0', 'scsi1'];

describe.each<[DiskLayout, number]>([
  ['drive', 300],
  ['blockdev', 301],
])('%s layout', (layout, vmid) => {
  test('snapshot and delsnapshot while running keep the incremental chain exact', async () => {
    const vm = await sim.node.addVm({ vmid, layout, disks: KEYS.map((key) => ({ key, format: 'qcow2' as const, sizeMiB: 8 })) });
    const log = new BackupLog();
    const incremental = async (label: string): Promise<void> => {
      const r = await env.backup(vmid);
      for (const k of KEYS) {
        expect([label, k, diskOf(r, k).mode, diskOf(r, k).reason]).toEqual([label, k, 'incremental', expect.stringMatching(/^bitmap-valid: /)]);
        expect(diskOf(r, k).bytesRead).toBeLessThanOrEqual(256 * KiB);
      }
      await log.record(env, vm, r);
    };
    await vm.start();
    await vm.write('scsi0', { pattern: 0x11, offset: 0, length: 1 * MiB });
    await vm.write('scsi1', { pattern: 0x12, offset: 3 * MiB, length: 512 * KiB });
    const full = await env.backup(vmid);
    expect(full.disks.map((d) => d.mode)).toEqual(['full', 'full']);
    await log.record(env, vm, full);

    // Without vmstate: blockdev-snapshot-internal-sync per disk, the bitmaps present.
    await vm.write('scsi0', { pattern: 0x21, offset: 2 * MiB, length: 64 * KiB });
    await qmSnapshot(vm, 'plain');
    expect(confEntries(fs.readFileSync(vm.confPath, 'utf8')).parent).toBe('plain');
    await vm.write('scsi1', { pattern: 0x22, offset: 5 * MiB, length: 64 * KiB });
    await incremental('after snapshot');

    // With vmstate: QEMU's snapshot-save job, the guest paused meanwhile.
    await vm.write('scsi0', { pattern: 0x31, offset: 4 * MiB, length: 64 * KiB });
    const atState = path.join(env.dir, `${vmid}-scsi0-at-withstate.raw`);
    fs.copyFileSync(vm.disks[0].reference, atState);
    await qmSnapshot(vm, 'withstate', { vmstate: true });
    expect(vm.running()).toBe(true);
    const info = await vm.qmp((q) => q.execute<string>('human-monitor-command', { 'command-line': 'info snapshots' }));
    expect(info).toMatch(/\bplain\b/);
    expect(info).toMatch(/\bwithstate\b/);
    await vm.write('scsi0', { pattern: 0x32, offset: 4 * MiB, length: 64 * KiB });
    await vm.write('scsi1', { pattern: 0x33, offset: 0, length: 64 * KiB });
    await incremental('after vmstate snapshot');

    // Delete the plain snapshot while running: blockdev-snapshot-delete-internal-sync.
    await qmDelsnapshot(vm, 'plain');
    const text = fs.readFileSync(vm.confPath, 'utf8');
    expect(snapshotNames(text)).toEqual(['before-upgrade', 'withstate']);
    expect(confEntries(text).parent).toBe('withstate');
    expect(confEntries(text).lock).toBeUndefined();
    await vm.write('scsi0', { pattern: 0x41, offset: 6 * MiB, length: 64 * KiB });
    await incremental('after delsnapshot');

    // Stopped: the vmstate snapshot is real (state saved, disk bytes of that moment), the bitmaps are
    // still in the images, and the stopped forms of delsnapshot and snapshot work beside them.
    await vm.stop();
    const snaps = await imageSnapshots(vm.disks[0].path);
    expect(snaps.map((s) => s.name)).toEqual(['withstate']);
    expect(snaps[0].vmStateSize).toBeGreaterThan(0);
    const exported = path.join(env.dir, `${vmid}-scsi0-withstate.raw`);
    await exportSnapshot(vm.disks[0].path, 'withstate', exported);
    expect(fs.readFileSync(exported).equals(fs.readFileSync(atState))).toBe(true);
    for (const d of vm.disks) expect((await imageBitmaps(d.path)).some((b) => b.startsWith(`pve-cbt-${d.key}-g`))).toBe(true);
    await qmDelsnapshot(vm, 'withstate');
    await qmSnapshot(vm, 'offline');
    for (const d of vm.disks) expect((await imageSnapshots(d.path)).map((s) => s.name)).toEqual(['offline']);
    await vm.write('scsi1', { pattern: 0x51, offset: 7 * MiB, length: 64 * KiB });
    await incremental('stopped, after offline snapshot');
    await qmDelsnapshot(vm, 'offline');
    await log.recheck(env);
  });
});

test('a VM with a raw disk cannot be snapshotted, as on PVE dir storage', async () => {
  const vm = await sim.node.addVm({ vmid: 302, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'raw', sizeMiB: 4 }] });
  await expect(qmSnapshot(vm, 'nope')).rejects.toMatchObject({ code: 'CBT_SIM_QM', message: expect.stringContaining('snapshot feature is not available') });
  expect(snapshotNames(fs.readFileSync(vm.confPath, 'utf8'))).toEqual(['before-upgrade']);
});

describe.each<[DiskLayout, number]>([
  ['drive', 303],
  ['blockdev', 304],
])('%s layout, with a pve-cbt backup at the same time', (layout, vmid) => {
  test('a backup waits while qemu-server holds lock: snapshot, so the snapshot succeeds; then it runs, incremental and exact', async () => {
    const vm = await sim.node.addVm({ vmid, layout, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }] });
    await vm.start();
    await vm.write('scsi0', { pattern: 0xb1, offset: 0, length: 2 * MiB });
    const log = new BackupLog();
    await log.record(env, vm, await env.backup(vmid));
    await vm.write('scsi0', { pattern: 0xb2, offset: 3 * MiB, length: 64 * KiB });
    const lines: string[] = [];
    const logger = createLogger({ transports: [new transports.Stream({ stream: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) })] });
    let backup: Promise<BackupResult> | undefined;
    await qmSnapshot(vm, 'locked', {
      whileLocked: async () => {
        backup = env.backup(vmid, { logger }, { configLockWaitMs: 20_000 });
        while (!lines.some((l) => l.includes('VM config is locked (snapshot), waiting'))) await new Promise((r) => setTimeout(r, 20));
      },
    });
    const r = await (backup as Promise<BackupResult>);
    expect(diskOf(r, 'scsi0').mode).toBe('incremental');
    await log.record(env, vm, r);
    expect(snapshotNames(fs.readFileSync(vm.confPath, 'utf8'))).toEqual(['before-upgrade', 'locked']);
    await log.recheck(env);
  });

  test('a config lock that stays ends the wait with CBT_BACKUP_CONFIG_LOCKED; nothing is lost', async () => {
    const vm = sim.node.vm(vmid);
    fs.writeFileSync(vm.confPath, confSet(fs.readFileSync(vm.confPath, 'utf8'), { lock: 'snapshot-delete' }));
    await expect(env.backup(vmid, {}, { configLockWaitMs: 300 })).rejects.toMatchObject({ code: 'CBT_BACKUP_CONFIG_LOCKED', details: { vmid, lock: 'snapshot-delete' } });
    fs.writeFileSync(vm.confPath, confSet(fs.readFileSync(vm.confPath, 'utf8'), { lock: undefined }));
    await vm.write('scsi0', { pattern: 0xb3, offset: 5 * MiB, length: 64 * KiB });
    const r = await env.backup(vmid);
    expect(diskOf(r, 'scsi0').mode).toBe('incremental');
    await env.expectRestoreEquals(r.id, 'scsi0', vm.disks[0].reference);
  });

  test('once a backup has begun, QEMU refuses internal snapshots on the drive its job holds: qm snapshot/delsnapshot fail cleanly and work after it', async () => {
    const vm = sim.node.vm(vmid);
    const log = new BackupLog();
    const during = async (op: () => Promise<void>): Promise<{ r: BackupResult; error: unknown }> => {
      await vm.write('scsi0', { pattern: 0xc1, offset: 6 * MiB, length: 64 * KiB });
      const atStart = await vm.snapshotReference('scsi0');
      let error: unknown;
      let ran = false;
      const r = await env.backup(vmid, {
        onProgress: async () => {
          if (ran) return;
          ran = true;
          error = await op().then(() => undefined, (e: unknown) => e);
          await vm.write('scsi0', { pattern: 0xc2, offset: 6 * MiB + 4 * KiB, length: 4 * KiB });
        },
      }, { nbdConnections: 1, nbdInFlight: 1, nbdRequestSize: 4 * KiB });
      expect(ran).toBe(true);
      expect(diskOf(r, 'scsi0').mode).toBe('incremental');
      await env.expectRestoreEquals(r.id, 'scsi0', atStart);
      return { r, error };
    };
    const refused = { message: expect.stringContaining('Need a root block node') };
    expect((await during(() => qmSnapshot(vm, 'mid'))).error).toMatchObject(refused);
    const text = fs.readFileSync(vm.confPath, 'utf8');
    expect(snapshotNames(text)).not.toContain('mid');
    expect(confEntries(text).lock).toBeUndefined();
    // QEMU's snapshot-save job (the simulator's vmstate snapshot) is not refused.
    expect((await during(() => qmSnapshot(vm, 'midstate', { vmstate: true }))).error).toBeUndefined();
    expect((await during(() => qmDelsnapshot(vm, 'midstate'))).error).toMatchObject(refused);
    expect(snapshotNames(fs.readFileSync(vm.confPath, 'utf8'))).toContain('midstate');
    // After the backup both work, and the chain stays incremental.
    await qmSnapshot(vm, 'mid');
    await qmDelsnapshot(vm, 'mid');
    await qmDelsnapshot(vm, 'midstate');
    const r = await env.backup(vmid);
    expect(diskOf(r, 'scsi0').mode).toBe('incremental');
    await log.record(env, vm, r);
  });
});
