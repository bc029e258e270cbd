/**
 * Detach and re-attach (`unusedN`), disk removal and `qm destroy`, each followed by the next run of a
 * scheduled job through the daemon's services (real queue, catalog, ledger, repository): the job
 * succeeds for every VM still on the node, the ledger drops the records of what is gone, the backups
 * stay and restore byte for byte, and a re-attached disk's next backup is a full-compare against
 * its earlier backups (its record was dropped: the bitmap in the image is not trusted alone).
 * The volume a disk leaves behind (detached, or a disk move's kept source) loses pve-cbt's bitmaps
 * at the next job, so that `qemu-img snapshot -a` (`qm rollback`) works on it again.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLogger, transports } from 'winston';
import { validateConfig } from '../../daemon/config/load-config';
import { runScheduledJob, type ScheduledRunReport } from '../../daemon/service/scheduled-job';
import { openServices, type Services } from '../../daemon/service/services';
import { confEntries } from '../../daemon/sim/conf-edit';
import type { DiskLayout } from '../../daemon/sim/pve-node';
import { qmDestroy, qmDiskAttach, qmDiskDetach, qmDiskRemove } from '../../daemon/sim/qm-disk-config';
import { qmDiskMove } from '../../daemon/sim/qm-disk-move';
import { qmSnapshot } from '../../daemon/sim/qm-snapshot';
import { imageBitmaps } from './pve-ops-helpers';
import { usePveNode } from '../sim/jest-cleanup';

const sim = usePveNode();
const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;
let s: Services;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-ops-'));
  const config = validateConfig(
    {
      qemuServerConfigDir: sim.node.configDir,
      qemuServerRunDir: sim.node.runDir,
      pvesmPath: sim.node.pvesmPath,
      stateDir: path.join(dir, 'state'),
      repository: path.join(dir, 'state', 'repo'),
      jobs: [{ id: 'nightly', vms: 'all', schedule: 'daily 02:00' }],
    },
    path.join(dir, 'config.json'),
  );
  s = await openServices(config, createLogger({ transports: [new transports.Console({ silent: true })] }));
});
afterAll(() => {
  s.db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function runJobOn(vms: number[]): Promise<ScheduledRunReport> {
  return (await runScheduledJob(s, { ...s.config.jobs[0], vms })) as ScheduledRunReport;
}

/** The newest backup of a VM, with each disk's mode and reason from its manifest. */
async function latest(vmid: number): Promise<{ id: string; disks: Record<string, { mode: string; reason: string }> }> {
  const list = await s.repo.listBackups(vmid);
  const m = await s.repo.readManifest(list[list.length - 1].id);
  return { id: m.id, disks: Object.fromEntries(m.disks.map((d) => [d.name, { mode: d.mode, reason: d.reason }])) };
}

async function expectRestore(backupId: string, disk: string, reference: string): Promise<void> {
  const out = path.join(dir, `restore-${backupId.replace(/\W/g, '_')}-${disk}.raw`);
  await s.repo.restoreDisk(backupId, disk, { path: out, format: 'raw' });
  const same = fs.readFileSync(out).equals(fs.readFileSync(reference));
  fs.rmSync(out);
  expect([backupId, disk, same]).toEqual([backupId, disk, true]);
}

const ledgerDisks = (vmid: number): string[] => s.ledger.list(vmid).map((r) => r.disk);

describe.each<[DiskLayout, number, number]>([
  ['drive', 320, 321],
  ['blockdev', 330, 331],
])('%s layout', (layout, vmid, otherId) => {
  test('detach, re-attach, removal and destroy: jobs keep succeeding, backups stay, ledger rows go', async () => {
    const runJob = (): Promise<ScheduledRunReport> => runJobOn([vmid, otherId]);
    const vm = await sim.node.addVm({ vmid, layout, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'qcow2', sizeMiB: 4 }] });
    const other = await sim.node.addVm({ vmid: otherId, layout, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
    await vm.start();
    await vm.write('scsi0', { pattern: 0x81, offset: 0, length: MiB });
    await vm.write('scsi1', { pattern: 0x82, offset: MiB, length: 256 * KiB });
    await other.write('scsi0', { pattern: 0x83, offset: 0, length: 512 * KiB });
    expect(await runJob()).toMatchObject({ ok: [vmid, otherId], failed: [], skipped: [] });
    const first = await latest(vmid);
    const scsi1AtFirst = await vm.snapshotReference('scsi1');
    const otherFirst = await latest(otherId);
    const otherRef = await other.snapshotReference('scsi0');
    expect(ledgerDisks(vmid)).toEqual(['scsi0', 'scsi1']);

    // Detach scsi1 while running (hot-unplug): it becomes unused, its record goes, the job succeeds.
    const { unusedKey, volid } = await qmDiskDetach(vm, 'scsi1');
    expect(confEntries(fs.readFileSync(vm.confPath, 'utf8'))[unusedKey]).toBe(volid);
    await vm.write('scsi0', { pattern: 0x84, offset: 2 * MiB, length: 64 * KiB });
    expect(await runJob()).toMatchObject({ ok: [vmid, otherId], failed: [] });
    const detached = await latest(vmid);
    expect(Object.keys(detached.disks)).toEqual(['scsi0']);
    expect(detached.disks.scsi0.mode).toBe('incremental');
    expect(ledgerDisks(vmid)).toEqual(['scsi0']);
    await expectRestore(detached.id, 'scsi0', vm.disks[0].reference);

    // Re-attach it (hot-plug) and write: full-compare against scsi1's earlier backup, then incremental.
    await qmDiskAttach(vm, 'scsi1', volid);
    await vm.write('scsi1', { pattern: 0x85, offset: 3 * MiB, length: 64 * KiB });
    expect(await runJob()).toMatchObject({ ok: [vmid, otherId], failed: [] });
    const back = await latest(vmid);
    expect(back.disks.scsi1).toMatchObject({ mode: 'full-compare', reason: expect.stringMatching(/^ledger-no-record: /) });
    const scsi1 = vm.disks.find((d) => d.key === 'scsi1');
    await expectRestore(back.id, 'scsi1', scsi1!.reference);
    await vm.write('scsi1', { pattern: 0x86, offset: 0, length: 64 * KiB });
    expect(await runJob()).toMatchObject({ ok: [vmid, otherId], failed: [] });
    const again = await latest(vmid);
    expect(again.disks.scsi1.mode).toBe('incremental');
    await expectRestore(again.id, 'scsi1', scsi1!.reference);
    const scsi1Last = await vm.snapshotReference('scsi1');

    // Remove it: detach, then delete the unused volume.
    const gone = await qmDiskDetach(vm, 'scsi1');
    await qmDiskRemove(vm, gone.unusedKey);
    expect(fs.existsSync(scsi1!.path)).toBe(false);
    expect(confEntries(fs.readFileSync(vm.confPath, 'utf8'))[gone.unusedKey]).toBeUndefined();
    expect(await runJob()).toMatchObject({ ok: [vmid, otherId], failed: [] });
    expect(ledgerDisks(vmid)).toEqual(['scsi0']);
    expect(Object.keys((await latest(vmid)).disks)).toEqual(['scsi0']);

    // Destroy the other VM: it is no longer selected, its records go, its backups stay.
    expect(ledgerDisks(otherId)).toEqual(['scsi0']);
    await qmDestroy(other);
    expect(fs.existsSync(other.confPath)).toBe(false);
    const report = await runJob();
    expect(report).toMatchObject({ ok: [vmid], failed: [], skipped: [] });
    expect(ledgerDisks(otherId)).toEqual([]);
    expect(s.ledger.activity(otherId)).toBeUndefined();
    expect((await s.repo.listBackups(otherId)).length).toBe(5);

    // Every backup of what is gone still restores.
    await expectRestore(first.id, 'scsi1', scsi1AtFirst);
    await expectRestore(again.id, 'scsi1', scsi1Last);
    await expectRestore(otherFirst.id, 'scsi0', otherRef);
  });
});

test('a job naming only destroyed VMs, or a VM left without disks, runs without error', async () => {
  const vm = await sim.node.addVm({ vmid: 322, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
  await vm.write('scsi0', { pattern: 0x91, offset: 0, length: 64 * KiB });
  const job = { ...s.config.jobs[0], id: 'only-322', vms: [322] };
  const firstRun = (await runScheduledJob(s, job)) as ScheduledRunReport;
  expect(firstRun).toMatchObject({ ok: [322], failed: [] });
  const ref = await vm.snapshotReference('scsi0');
  const { unusedKey } = await qmDiskDetach(vm, 'scsi0');
  const noDisks = (await runScheduledJob(s, job)) as ScheduledRunReport;
  expect(noDisks).toMatchObject({ ok: [], failed: [], skipped: [{ vmid: 322, code: 'CBT_BACKUP_NO_DISKS' }] });
  expect(ledgerDisks(322)).toEqual([]);
  await qmDiskRemove(vm, unusedKey);
  await qmDestroy(vm);
  expect(await runScheduledJob(s, job)).toMatchObject({ ok: [], failed: [], skipped: [] });
  const [b] = await s.repo.listBackups(322);
  await expectRestore(b.id, 'scsi0', ref);
});


const execFileP = promisify(execFile);

test('the source a running disk move keeps, and a detached volume, lose pve-cbt bitmaps at the next job: snapshot -a works on them', async () => {
  const vmid = 340;
  const vm = await sim.node.addVm({ vmid, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }, { key: 'scsi1', format: 'qcow2', sizeMiB: 4 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0xa1, offset: 0, length: 256 * KiB });
  await vm.write('scsi1', { pattern: 0xa2, offset: 0, length: 256 * KiB });
  await qmSnapshot(vm, 'early');
  expect(await runJobOn([vmid])).toMatchObject({ ok: [vmid], failed: [] });
  const oldPath = vm.disks[0].path;
  await qmDiskMove(vm, 'scsi0');
  const { volid: detachedVolid } = await qmDiskDetach(vm, 'scsi1');
  const detachedPath = path.join(path.dirname(oldPath), detachedVolid.split('/')[1]);
  // QEMU closed both images with pve-cbt's bitmap stored: qemu-img refuses to apply a snapshot.
  for (const f of [oldPath, detachedPath]) {
    expect((await imageBitmaps(f)).length).toBe(1);
    await expect(execFileP('qemu-img', ['snapshot', '-a', 'early', f])).rejects.toMatchObject({ stderr: expect.stringContaining('active dirty bitmaps') });
  }
  await vm.write('scsi0', { pattern: 0xa3, offset: MiB, length: 64 * KiB });
  expect(await runJobOn([vmid])).toMatchObject({ ok: [vmid], failed: [] });
  const after = await latest(vmid);
  expect(after.disks.scsi0).toMatchObject({ mode: 'full-compare', reason: expect.stringMatching(/^volume-changed: /) });
  await expectRestore(after.id, 'scsi0', vm.disks[0].reference);
  for (const f of [oldPath, detachedPath]) {
    expect(await imageBitmaps(f)).toEqual([]);
    await execFileP('qemu-img', ['snapshot', '-a', 'early', f]);
  }
  // The moved disk's new volume keeps its own, new bitmap: the next backup is incremental.
  await vm.write('scsi0', { pattern: 0xa4, offset: 2 * MiB, length: 64 * KiB });
  expect(await runJobOn([vmid])).toMatchObject({ ok: [vmid], failed: [] });
  expect((await latest(vmid)).disks.scsi0.mode).toBe('incremental');
  await expectRestore((await latest(vmid)).id, 'scsi0', vm.disks[0].reference);
});
