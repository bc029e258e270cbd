/**
 * Issue 14 point 6: a VM with a qcow2 and a raw disk (PVE 7/8 -drive and PVE 9 -blockdev layouts),
 * backed up on node pve1, live-migrated to pve2 (QEMU carries both bitmaps with the dirty-bitmaps
 * capability), then backed up by pve2's daemon as an INCREMENTAL on both disks: pve1's daemon handed its ledger records over through the shared
 * repository and dropped its rows, pve2's daemon adopted them for the QEMU that received the
 * migration. Every backup is restored and compared byte for byte.
 */
import fs from 'node:fs';
import path from 'node:path';
import { diskOf, startChildDaemon } from './e2e-harness';
import { addClusterVm, createClusterStack, eventually, startDaemons, type ClusterStack } from './cluster-harness';
import { handoffKey } from '../../daemon/migration/handoff-format';
import type { DiskLayout } from '../../daemon/sim/pve-node';

const MiB = 1024 * 1024;
let cs: ClusterStack;

beforeAll(async () => {
  cs = await createClusterStack();
  await startDaemons(cs);
});
afterAll(async () => {
  await cs?.cleanup();
});

function ledgerRows(node: string, vmid: number): Array<{ disk: string; state: string; bitmap_name: string | null }> {
  return cs.stack(node).catalog((db) => db.prepare('SELECT disk, state, bitmap_name FROM bitmap_state WHERE vmid = ? ORDER BY disk').all(vmid)) as Array<{
    disk: string;
    state: string;
    bitmap_name: string | null;
  }>;
}

function eventCount(node: string, vmid: number): number {
  return cs.stack(node).catalog((db) => (db.prepare('SELECT COUNT(*) AS n FROM lifecycle_events WHERE vmid = ?').get(vmid) as { n: number }).n);
}

it.each<[DiskLayout, number]>([
  ['drive', 801],
  ['blockdev', 803],
])('a live-migrated VM (%s layout) continues with incrementals on the target node, qcow2 and raw, restores byte-exact', async (layout, vmid) => {
  const pve1 = cs.stack('pve1');
  const pve2 = cs.stack('pve2');
  const vm = await addClusterVm(
    pve1,
    vmid,
    [
      { key: 'scsi0', format: 'qcow2', sizeMiB: 16 },
      { key: 'scsi1', format: 'raw', sizeMiB: 16 },
    ],
    layout,
  );
  await vm.start();
  const full = (await pve1.backupAndCheck([vm])).get(vmid);
  expect(['full', 'full']).toEqual([diskOf(full, 'scsi0').mode, diskOf(full, 'scsi1').mode]);
  await vm.write('scsi0', { pattern: 0x41, offset: 3 * MiB, length: 256 * 1024 });
  await vm.write('scsi1', { pattern: 0x42, offset: 5 * MiB, length: 256 * 1024 });
  const inc1 = (await pve1.backupAndCheck([vm])).get(vmid);
  expect([diskOf(inc1, 'scsi0').mode, diskOf(inc1, 'scsi1').mode]).toEqual(['incremental', 'incremental']);
  expect(ledgerRows('pve1', vmid).map((r) => r.state)).toEqual(['valid', 'valid']);

  // Writes before and after the migration: both must be in the target's incremental.
  await vm.write('scsi0', { pattern: 0x51, offset: 7 * MiB, length: 128 * 1024 });
  await vm.write('scsi1', { pattern: 0x52, offset: 9 * MiB, length: 128 * 1024 });
  const sourceEvents = eventCount('pve1', vmid);
  const moved = await cs.cluster.migrate(vmid, 'pve2');
  await moved.write('scsi0', { pattern: 0x61, offset: 11 * MiB, length: 64 * 1024 });
  await moved.write('scsi1', { pattern: 0x62, offset: 13 * MiB, length: 64 * 1024 });

  // pve1's daemon notices the config in pve2's folder, hands its records over and drops its rows.
  const handoffFile = path.join(cs.repository, ...handoffKey(vmid).split('/'));
  const handoff = await eventually('the handoff from pve1', () => (fs.existsSync(handoffFile) ? JSON.parse(fs.readFileSync(handoffFile, 'utf8')) : undefined));
  expect(handoff).toMatchObject({ vmid, from: 'pve1', to: 'pve2' });
  expect(typeof handoff.claimId).toBe('string');
  expect(handoff.disks.map((d: { disk: string }) => d.disk).sort()).toEqual(['scsi0', 'scsi1']);
  await eventually('pve1 to drop its rows', () => (ledgerRows('pve1', vmid).length === 0 ? true : undefined));
  // The source fired no hook: nothing was recorded there, no crash, no stop.
  expect(eventCount('pve1', vmid)).toBe(sourceEvents);

  const inc2 = (await pve2.backupAndCheck([moved])).get(vmid);
  expect([diskOf(inc2, 'scsi0').mode, diskOf(inc2, 'scsi1').mode]).toEqual(['incremental', 'incremental']);
  // Only the changed ranges were read (granularity 64 KiB): 128 KiB + 64 KiB per disk.
  expect(diskOf(inc2, 'scsi0').bytesRead).toBe(192 * 1024);
  expect(diskOf(inc2, 'scsi1').bytesRead).toBe(192 * 1024);
  expect(fs.existsSync(handoffFile)).toBe(false);
  expect(ledgerRows('pve2', vmid).map((r) => r.state)).toEqual(['valid', 'valid']);

  // And on: the bitmaps pve2 started are its own now.
  await moved.write('scsi1', { pattern: 0x71, offset: 1 * MiB, length: 64 * 1024 });
  const inc3 = (await pve2.backupAndCheck([moved])).get(vmid);
  expect([diskOf(inc3, 'scsi0').mode, diskOf(inc3, 'scsi1').mode]).toEqual(['incremental', 'incremental']);
  expect(pve1.daemon?.proc.exitCode).toBeNull();
  expect(pve2.daemon?.proc.exitCode).toBeNull();
});

it('without the target daemon at the migrated pre-start nothing is handed over: the next backup on the target is a full-compare, byte-exact', async () => {
  const pve1 = cs.stack('pve1');
  const pve2 = cs.stack('pve2');
  const vm = await addClusterVm(pve1, 802, [
    { key: 'scsi0', format: 'qcow2', sizeMiB: 8 },
    { key: 'scsi1', format: 'raw', sizeMiB: 8 },
  ]);
  await vm.start();
  await pve1.backupAndCheck([vm]);
  await vm.write('scsi0', { pattern: 0x13, offset: 1 * MiB, length: 64 * 1024 });
  const before = (await pve1.backupAndCheck([vm])).get(802);
  expect([diskOf(before, 'scsi0').mode, diskOf(before, 'scsi1').mode]).toEqual(['incremental', 'incremental']);

  // pve2's daemon is down while the VM arrives: its hooks spool the events, no claim is written.
  pve2.daemon!.proc.kill('SIGTERM');
  await pve2.daemon!.exited;
  const moved = await cs.cluster.migrate(802, 'pve2');
  await moved.write('scsi1', { pattern: 0x14, offset: 2 * MiB, length: 64 * 1024 });
  pve2.daemon = await startChildDaemon(pve2);

  await eventually('pve1 to drop its rows', () => (ledgerRows('pve1', 802).length === 0 ? true : undefined));
  expect(fs.existsSync(path.join(cs.repository, ...handoffKey(802).split('/')))).toBe(false);
  const after = (await pve2.backupAndCheck([moved])).get(802);
  expect([diskOf(after, 'scsi0').mode, diskOf(after, 'scsi1').mode]).toEqual(['full-compare', 'full-compare']);
  expect(diskOf(after, 'scsi0').reason).toMatch(/^ledger-no-record: /);
  // The spooled migrated pre-start reached pve2's ledger all the same.
  expect(pve2.catalog((db) => db.prepare("SELECT migrated_from FROM lifecycle_events WHERE vmid = 802 AND phase = 'pre-start'").all())).toEqual([{ migrated_from: 'pve1' }]);
  const next = (await pve2.backupAndCheck([moved])).get(802);
  expect([diskOf(next, 'scsi0').mode, diskOf(next, 'scsi1').mode]).toEqual(['incremental', 'incremental']);
});

it('with the source node\'s daemon down during the migration, it hands the records over when it comes back: incremental on the target', async () => {
  const pve1 = cs.stack('pve1');
  const pve2 = cs.stack('pve2');
  const vm = await addClusterVm(pve1, 804, [
    { key: 'scsi0', format: 'qcow2', sizeMiB: 8 },
    { key: 'scsi1', format: 'raw', sizeMiB: 8 },
  ]);
  await vm.start();
  await pve1.backupAndCheck([vm]);
  await vm.write('scsi0', { pattern: 0x23, offset: 1 * MiB, length: 64 * 1024 });
  await vm.write('scsi1', { pattern: 0x24, offset: 1 * MiB, length: 64 * 1024 });

  pve1.daemon!.proc.kill('SIGTERM');
  await pve1.daemon!.exited;
  const moved = await cs.cluster.migrate(804, 'pve2');
  await moved.write('scsi1', { pattern: 0x25, offset: 3 * MiB, length: 64 * 1024 });
  const handoffFile = path.join(cs.repository, ...handoffKey(804).split('/'));
  expect(fs.existsSync(handoffFile)).toBe(false);
  pve1.daemon = await startChildDaemon(pve1);

  await eventually('pve1 to drop its rows', () => (ledgerRows('pve1', 804).length === 0 ? true : undefined));
  const after = (await pve2.backupAndCheck([moved])).get(804);
  expect([diskOf(after, 'scsi0').mode, diskOf(after, 'scsi1').mode]).toEqual(['incremental', 'incremental']);
  expect(diskOf(after, 'scsi1').bytesRead).toBe(128 * 1024);
});
