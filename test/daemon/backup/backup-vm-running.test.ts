/**
 * Acceptance of the engine on running VMs (real QEMU through the simulator): full → incremental,
 * raw stop/start → full-compare → incremental, qcow2 across stop/start and kill -9, every restore
 * compared byte for byte with the reference taken at backup time.
 */
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({
    vmid: 100,
    disks: [
      { key: 'scsi0', format: 'qcow2', sizeMiB: 16 },
      { key: 'scsi1', format: 'raw', sizeMiB: 12 },
    ],
  });
  await vm.start();
});
afterAll(() => env?.close());

const byDisk = (r: { disks: { disk: string }[] }, d: string) => r.disks.find((x) => x.disk === d) as never as {
  mode: string; reason: string; bytesRead: number; bytesStored: number; size: number; consistency: string;
};

test('full → guest writes → incremental; restores equal the references; incremental reads only dirty bytes', async () => {
  await vm.write('scsi0', { pattern: 0x11, offset: 1 * MiB, length: 3 * MiB });
  await vm.write('scsi1', { pattern: 0x22, offset: 5 * MiB, length: 1 * MiB });
  const ref0 = await vm.snapshotReference('scsi0');
  const ref1 = await vm.snapshotReference('scsi1');
  const full = await env.backup(100);
  expect(byDisk(full, 'scsi0')).toMatchObject({ mode: 'full', consistency: 'crash-consistent' });
  expect(byDisk(full, 'scsi1').mode).toBe('full');
  expect(byDisk(full, 'scsi0').reason).toMatch(/^first-backup/);
  // Only allocated data is read on a full (raw may report its first block as data).
  expect(byDisk(full, 'scsi0').bytesRead).toBe(3 * MiB);
  expect(byDisk(full, 'scsi1').bytesRead).toBeLessThanOrEqual(1 * MiB + 64 * KiB);

  const w0 = [{ offset: 100 * KiB, length: 4 * KiB }, { offset: 8 * MiB - 10 * KiB, length: 20 * KiB }, { offset: 15 * MiB, length: 200 * KiB }];
  const w1 = [{ offset: 0, length: 512 }, { offset: 11 * MiB, length: 300 * KiB }];
  for (const w of w0) await vm.write('scsi0', { pattern: 0xa0, ...w });
  for (const w of w1) await vm.write('scsi1', { pattern: 0xb1, ...w });
  const ref0b = await vm.snapshotReference('scsi0');
  const ref1b = await vm.snapshotReference('scsi1');
  const inc = await env.backup(100);
  expect(byDisk(inc, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w0) });
  expect(byDisk(inc, 'scsi1')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w1) });

  await env.expectRestoreEquals(full.id, 'scsi0', ref0);
  await env.expectRestoreEquals(full.id, 'scsi1', ref1);
  await env.expectRestoreEquals(inc.id, 'scsi0', ref0b);
  await env.expectRestoreEquals(inc.id, 'scsi1', ref1b);

  const bitmaps = await vm.qmp((q) => q.execute('query-block'));
  const names = (bitmaps as { device: string; inserted?: { 'dirty-bitmaps'?: { name: string }[] } }[])
    .flatMap((b) => (b.inserted?.['dirty-bitmaps'] ?? []).map((x) => `${b.device}:${x.name}`));
  expect(names.sort()).toEqual(['drive-scsi0:pve-cbt-scsi0-g2', 'drive-scsi1:pve-cbt-scsi1-g2']);
});

test('stop/start: raw → full-compare (whole disk read, only changed chunks stored), qcow2 incremental continues', async () => {
  await vm.stop();
  await vm.writeData('scsi1', 3 * MiB, Buffer.alloc(8 * KiB, 0x5c));
  await vm.start();
  const ref0 = await vm.snapshotReference('scsi0');
  const ref1 = await vm.snapshotReference('scsi1');
  const r = await env.backup(100);
  expect(byDisk(r, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: 0 });
  const raw = byDisk(r, 'scsi1');
  expect(raw.mode).toBe('full-compare');
  expect(raw.reason).toMatch(/^bitmap-missing: .*ledger says valid.*QEMU has no bitmap pve-cbt-scsi1-g2/);
  // All allocated data is read; only the one chunk that changed while stopped is stored.
  expect(raw.bytesRead).toBeGreaterThanOrEqual(1 * MiB + 300 * KiB);
  expect(raw.bytesStored).toBeGreaterThan(0);
  expect(raw.bytesStored).toBeLessThanOrEqual(128 * KiB + 4 * KiB);
  await env.expectRestoreEquals(r.id, 'scsi0', ref0);
  await env.expectRestoreEquals(r.id, 'scsi1', ref1);

  const w = [{ offset: 2 * MiB, length: 64 * KiB }];
  await vm.write('scsi1', { pattern: 0x77, ...w[0] });
  const ref1b = await vm.snapshotReference('scsi1');
  const inc = await env.backup(100);
  expect(byDisk(inc, 'scsi1')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w) });
  await env.expectRestoreEquals(inc.id, 'scsi1', ref1b);
});

test('kill -9 of a QEMU that created the bitmap: bitmap gone → full-compare', async () => {
  await vm.crash();
  await vm.start();
  const r = await env.backup(100);
  expect(byDisk(r, 'scsi0').reason).toMatch(/^bitmap-missing: /);
  expect(byDisk(r, 'scsi1').mode).toBe('full-compare');
});

test('kill -9: qcow2 bitmap inconsistent → full-compare, then incrementals again', async () => {
  // A bitmap is stored in the qcow2 at a clean close; the next QEMU loads it and marks it in use.
  await vm.stop();
  await vm.start();
  await vm.write('scsi0', { pattern: 0x99, offset: 6 * MiB, length: 128 * KiB });
  // A guest flushes what it needs durable; unflushed qcow2 metadata is lost with kill -9.
  await vm.qmp((q) => q.execute('human-monitor-command', { 'command-line': 'qemu-io -d scsi0 "flush"' }));
  await vm.crash();
  await vm.start();
  const ref0 = await vm.snapshotReference('scsi0');
  const r = await env.backup(100);
  expect(byDisk(r, 'scsi0').mode).toBe('full-compare');
  expect(byDisk(r, 'scsi0').reason).toMatch(/^bitmap-inconsistent: /);
  expect(byDisk(r, 'scsi1').mode).toBe('full-compare');
  await env.expectRestoreEquals(r.id, 'scsi0', ref0);
  const after = await vm.qmp((q) => q.execute('query-block'));
  expect(JSON.stringify(after)).not.toMatch(/"inconsistent":true/);
  await vm.write('scsi0', { pattern: 0x42, offset: 0, length: 64 * KiB });
  const ref0b = await vm.snapshotReference('scsi0');
  const inc = await env.backup(100);
  expect(byDisk(inc, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: 64 * KiB });
  await env.expectRestoreEquals(inc.id, 'scsi0', ref0b);
});

test('a ledger invalidation alone forces full-compare although QEMU still has the bitmap', async () => {
  env.ledger.markInvalid(100, 'scsi0', 'test: lifecycle event');
  const r = await env.backup(100);
  expect(byDisk(r, 'scsi0').mode).toBe('full-compare');
  expect(byDisk(r, 'scsi0').reason).toMatch(/^ledger-invalid: .*test: lifecycle event/);
  expect(byDisk(r, 'scsi1').mode).toBe('incremental');
});

test('vzdump running → CBT_BACKUP_VZDUMP_BUSY, nothing written', async () => {
  const before = (await env.repo.listBackups(100)).length;
  env.ledger.recordEvent({ vmid: 100, phase: 'backup-start', source: 'vzdump', mode: 'snapshot', time: new Date().toISOString() });
  await expect(env.backup(100)).rejects.toMatchObject({ code: 'CBT_BACKUP_VZDUMP_BUSY' });
  env.ledger.recordEvent({ vmid: 100, phase: 'backup-end', source: 'vzdump', mode: 'snapshot', time: new Date().toISOString() });
  expect((await env.repo.listBackups(100)).length).toBe(before);
});

test('a vzdump that ends within the bounded wait only delays the backup', async () => {
  env.ledger.recordEvent({ vmid: 100, phase: 'backup-start', source: 'vzdump', mode: 'snapshot', time: new Date().toISOString() });
  setTimeout(() => env.ledger.recordEvent({ vmid: 100, phase: 'backup-end', source: 'vzdump', mode: 'snapshot', time: new Date().toISOString() }), 200);
  const r = await env.backup(100, {}, { vzdumpWaitMs: 5000 });
  expect(r.disks.map((d) => d.mode)).toEqual(['incremental', 'incremental']);
});
