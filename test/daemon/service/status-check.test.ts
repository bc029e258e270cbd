import type { BitmapView, LedgerView } from '../../../daemon/backup/mode-decision';
import type { StorageFacts } from '../../../daemon/backup/storage-delta';
import { checkDisk, type StatusCheckInput } from '../../../daemon/service/status-check';

const G = 65536;
const bitmap = (name: string, over: Partial<BitmapView> = {}): BitmapView => ({ name, granularity: G, recording: true, busy: false, persistent: true, inconsistent: false, ...over });
const ledger = (over: Partial<LedgerView> = {}): LedgerView => ({ state: 'valid', reason: null, bitmapName: 'pve-cbt-scsi0-g2', generation: 2, qemuPid: 10, qemuStartTime: 99, ...over });
const SNAP = 'pve-cbt-20261202T100000Z-aa';
const rbd = (over: Partial<StorageFacts> = {}): StorageFacts => ({ recorded: SNAP, previous: SNAP, own: [SNAP], generation: { last: 'g1', now: 'g1' }, ...over });
const base: StatusCheckInput = {
  disk: 'scsi0',
  format: 'qcow2',
  size: 8 << 20,
  vmRunning: true,
  qemu: { pid: 10, startTime: 99 },
  lastBackup: { backupId: 'vm/101/x', size: 8 << 20, bitmap: { name: 'pve-cbt-scsi0-g2', generation: 2 } },
  ledger: ledger(),
  bitmaps: [bitmap('pve-cbt-scsi0-g2')],
  granularity: G,
  taskRunning: false,
};

test.each<[string, Partial<StatusCheckInput>, { state: string; reason: RegExp | null; next: string | null }]>([
  ['ledger and QEMU agree: valid, next incremental', {}, { state: 'valid', reason: null, next: 'incremental' }],
  ['kill -9 unseen, qcow2 restarted: QEMU marks the bitmap inconsistent', { bitmaps: [bitmap('pve-cbt-scsi0-g2', { inconsistent: true })] }, { state: 'invalid', reason: /^bitmap-inconsistent: ledger says valid/, next: 'full-compare' }],
  ['kill -9 unseen, raw restarted: QEMU has no such bitmap', { format: 'raw', bitmaps: [] }, { state: 'invalid', reason: /^bitmap-missing: ledger says valid/, next: 'full-compare' }],
  ['raw bitmap of another QEMU process', { format: 'raw', bitmaps: [bitmap('pve-cbt-scsi0-g2', { persistent: false })], qemu: { pid: 11, startTime: 120 } }, { state: 'invalid', reason: /^qemu-restarted/, next: 'full-compare' }],
  ['stopped raw disk keeps no bitmap', { format: 'raw', vmRunning: false, qemu: undefined, bitmaps: [] }, { state: 'invalid', reason: /^stopped-transient/, next: 'full-compare' }],
  ['ledger suspect, QEMU consistent: stays suspect, next incremental', { ledger: ledger({ state: 'suspect', reason: 'unclean stop' }) }, { state: 'suspect', reason: /unclean stop/, next: 'incremental' }],
  ['ledger invalid: its own reason', { ledger: ledger({ state: 'invalid', reason: 'hookscript pre-stop' }) }, { state: 'invalid', reason: /^hookscript pre-stop$/, next: 'full-compare' }],
  ['no backup yet: ledger unknown, next full', { ledger: undefined, lastBackup: undefined, bitmaps: [] }, { state: 'unknown', reason: null, next: 'full' }],
  ['a backup runs: nothing decided, the ledger is shown', { taskRunning: true, bitmaps: [bitmap('pve-cbt-scsi0-g2', { busy: true })] }, { state: 'valid', reason: null, next: null }],
  ['QEMU could not be asked: the ledger is shown', { bitmaps: undefined }, { state: 'valid', reason: null, next: null }],
  // RBD disks: the planner's storage rule (storage-delta.ts) decides with the snapshot's facts
  ['RBD raw restarted, the snapshot is there: state storage, next incremental-storage', { format: 'raw', bitmaps: [], storage: rbd() }, { state: 'storage', reason: /^storage-delta: QEMU's bitmap cannot be used \(bitmap-missing: ledger says valid/, next: 'incremental-storage' }],
  ['RBD raw stopped, the snapshot is there', { format: 'raw', vmRunning: false, qemu: undefined, bitmaps: [], storage: rbd() }, { state: 'storage', reason: /^storage-delta: .*stopped-transient.*rbd diff --from-snap pve-cbt-20261202T100000Z-aa/, next: 'incremental-storage' }],
  ['RBD, ledger invalid by a hook, the snapshot is there: the storage still tracks', { format: 'raw', bitmaps: [], ledger: ledger({ state: 'invalid', reason: 'hookscript pre-stop' }), storage: rbd() }, { state: 'storage', reason: /^storage-delta: .*ledger-invalid/, next: 'incremental-storage' }],
  ['RBD, the snapshot is gone: invalid, full-compare saying so', { format: 'raw', bitmaps: [], storage: rbd({ previous: undefined }) }, { state: 'invalid', reason: /^bitmap-missing: .*the RBD snapshot pve-cbt-20261202T100000Z-aa of that backup is gone/, next: 'full-compare' }],
  ['RBD, qm rollback since (vmgenid changed): invalid, full-compare', { format: 'raw', bitmaps: [], storage: rbd({ generation: { last: 'g1', now: 'g2' } }) }, { state: 'invalid', reason: /^storage-rolled-back: /, next: 'full-compare' }],
  ['RBD with a usable bitmap: incremental, valid', { format: 'raw', bitmaps: [bitmap('pve-cbt-scsi0-g2', { persistent: false })], storage: rbd() }, { state: 'valid', reason: null, next: 'incremental' }],
  ['RBD resized: full-compare (the storage cannot stand in)', { format: 'raw', bitmaps: [], size: 16 << 20, storage: rbd() }, { state: 'invalid', reason: /^disk-resized/, next: 'full-compare' }],
])('%s', (_what, over, expected) => {
  const c = checkDisk({ ...base, ...over });
  expect(c.state).toBe(expected.state);
  if (expected.reason === null) expect(c.reason).toBeNull();
  else expect(c.reason).toMatch(expected.reason);
  expect(c.nextBackup?.mode ?? null).toBe(expected.next);
});
