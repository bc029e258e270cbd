/** storage-delta.ts: when the storage's diff stands in for the QEMU bitmap (table), names, ranges. Pure. */
import type { ModeDecision, ReasonCode } from '../../../daemon/backup/mode-decision';
import { diffRanges, isOwnStorageSnapshot, storageDecision, storageSnapshotName, type StorageFacts } from '../../../daemon/backup/storage-delta';

const fc = (code: ReasonCode): ModeDecision => ({ mode: 'full-compare', code, reason: 'why' });
const facts = (f: Partial<StorageFacts> = {}): StorageFacts => ({ recorded: 'pve-cbt-a', previous: 'pve-cbt-a', own: ['pve-cbt-a'], ...f });

test.each<[string, ModeDecision, StorageFacts | undefined, string, string]>([
  ['restart: the diff stands in', fc('qemu-restarted'), facts(), 'incremental-storage', 'storage-delta'],
  ['stopped raw disk', fc('stopped-transient'), facts(), 'incremental-storage', 'storage-delta'],
  ['bitmap missing (crash)', fc('bitmap-missing'), facts(), 'incremental-storage', 'storage-delta'],
  ['same vmgenid', fc('qemu-restarted'), facts({ generation: { last: 'g1', now: 'g1' } }), 'incremental-storage', 'storage-delta'],
  ['vmgenid changed: qm rollback', fc('qemu-restarted'), facts({ generation: { last: 'g1', now: 'g2' } }), 'full-compare', 'storage-rolled-back'],
  ['vmgenid removed', fc('qemu-restarted'), facts({ generation: { last: 'g1', now: undefined } }), 'full-compare', 'storage-rolled-back'],
  ['last backup kept no vmgenid: no sign either way', fc('qemu-restarted'), facts({ generation: { last: undefined, now: 'g2' } }), 'incremental-storage', 'storage-delta'],
  ['snapshot gone', fc('qemu-restarted'), facts({ previous: undefined }), 'full-compare', 'qemu-restarted'],
  ['no snapshot recorded', fc('qemu-restarted'), facts({ recorded: undefined, previous: undefined }), 'full-compare', 'qemu-restarted'],
  ['another volume', fc('volume-changed'), facts(), 'full-compare', 'volume-changed'],
  ['resized', fc('disk-resized'), facts(), 'full-compare', 'disk-resized'],
  ['not an RBD disk', fc('qemu-restarted'), undefined, 'full-compare', 'qemu-restarted'],
  ['the bitmap is valid: incremental stays', { mode: 'incremental', code: 'bitmap-valid', reason: 'ok' }, facts(), 'incremental', 'bitmap-valid'],
  ['first backup stays full', { mode: 'full', code: 'first-backup', reason: 'none' }, facts(), 'full', 'first-backup'],
])('%s', (_name, auto, f, mode, code) => {
  const d = storageDecision(auto, f);
  expect([d.mode, d.code]).toEqual([mode, code]);
});

test('the reason names the snapshot the diff starts from, or why it cannot', () => {
  expect(storageDecision(fc('qemu-restarted'), facts()).reason).toBe("QEMU's bitmap cannot be used (qemu-restarted: why); reading only what rbd diff --from-snap pve-cbt-a reports");
  expect(storageDecision(fc('qemu-restarted'), facts({ previous: undefined })).reason).toBe('why; the RBD snapshot pve-cbt-a of that backup is gone, so the storage cannot say what changed');
});

test('snapshot names: prefix, time, random tail; only those are ours', () => {
  const n = storageSnapshotName(new Date('2026-12-02T03:54:10.123Z'), 'ab12cd');
  expect(n).toBe('pve-cbt-20261202T035410Z-ab12cd');
  expect(isOwnStorageSnapshot(n)).toBe(true);
  expect(isOwnStorageSnapshot('before-upgrade')).toBe(false);
});

test('every diff extent is read, holes too (they read as zeroes now)', () => {
  expect(diffRanges([{ offset: 0, length: 4096, exists: 'true' }, { offset: 8192, length: 0, exists: 'true' }, { offset: 1 << 20, length: 65536, exists: 'false' }])).toEqual([
    { offset: 0, length: 4096 },
    { offset: 1 << 20, length: 65536 },
  ]);
});
