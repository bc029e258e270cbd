import { decideMode, formatReason, type BitmapView, type ModeInput } from '../../../daemon/backup/mode-decision';

const G = 65536;
const NAME = 'pve-cbt-scsi0-g3';
const bm = (over: Partial<BitmapView> = {}): BitmapView => ({
  name: NAME, granularity: G, recording: true, busy: false, persistent: true, inconsistent: false, ...over,
});
const QEMU = { pid: 4242, startTime: 1000 };

/** A running qcow2 disk whose bitmap, ledger and last backup all agree: the incremental baseline. */
const base: ModeInput = {
  disk: 'scsi0',
  format: 'qcow2',
  diskSize: 32 << 20,
  vmRunning: true,
  lastBackup: { backupId: 'b2', size: 32 << 20, bitmap: { name: NAME, generation: 3 } },
  ledger: { state: 'valid', reason: null, bitmapName: NAME, generation: 3, qemuPid: 4242, qemuStartTime: 1000 },
  bitmaps: [bm(), { ...bm(), name: 'pbs-incremental-dirty-bitmap', persistent: false }],
  qemu: QEMU,
  expectedGranularity: G,
};
const VOL = { volid: 'local:100/vm-100-disk-0.qcow2', path: '/v/vm-100-disk-0.qcow2' };
const raw: Partial<ModeInput> = { format: 'raw', bitmaps: [bm({ persistent: false })] };

const rows: [string, Partial<ModeInput>, string, string][] = [
  ['qcow2 running, all agree', {}, 'incremental', 'bitmap-valid'],
  ['qcow2 stopped, bitmap valid in image', { vmRunning: false, qemu: undefined }, 'incremental', 'bitmap-valid'],
  ['qcow2 after clean stop/start (new pid, persistent bitmap)', { qemu: { pid: 9, startTime: 2000 } }, 'incremental', 'bitmap-valid'],
  ['raw running, same QEMU', raw, 'incremental', 'bitmap-valid'],
  ['first backup (even with a bitmap present)', { lastBackup: undefined }, 'full', 'first-backup'],
  ['first backup of a raw stopped VM', { ...raw, vmRunning: false, qemu: undefined, lastBackup: undefined, ledger: undefined }, 'full', 'first-backup'],
  ['disk resized', { diskSize: 64 << 20 }, 'full-compare', 'disk-resized'],
  ['last backup started no bitmap', { lastBackup: { backupId: 'b2', size: 32 << 20 } }, 'full-compare', 'no-bitmap-recorded'],
  ['catalog entry alone: no ledger record', { ledger: undefined }, 'full-compare', 'ledger-no-record'],
  ['ledger unknown', { ledger: { state: 'unknown' } }, 'full-compare', 'ledger-no-record'],
  ['raw after stop/start: ledger invalid', { ...raw, ledger: { ...base.ledger!, state: 'invalid', reason: 'post-stop' } }, 'full-compare', 'ledger-invalid'],
  ['vzdump stop mode restart: ledger invalid', { ledger: { ...base.ledger!, state: 'invalid', reason: 'vzdump pre-restart' } }, 'full-compare', 'ledger-invalid'],
  ['ledger names another generation', { ledger: { ...base.ledger!, bitmapName: 'pve-cbt-scsi0-g2', generation: 2 } }, 'full-compare', 'ledger-mismatch'],
  ['raw stopped VM', { ...raw, vmRunning: false, qemu: undefined }, 'full-compare', 'stopped-transient'],
  ['vmdk stopped VM', { format: 'vmdk', vmRunning: false, qemu: undefined, bitmaps: [] }, 'full-compare', 'stopped-transient'],
  ['raw restarted, hook lost: bitmap gone in QEMU', { ...raw, bitmaps: [], qemu: { pid: 5, startTime: 3000 } }, 'full-compare', 'bitmap-missing'],
  ['bitmap missing, only foreign bitmaps', { bitmaps: [bm({ name: 'repl_scsi0' }), bm({ name: 'pbs-incremental-dirty-bitmap' })] }, 'full-compare', 'bitmap-missing'],
  ['other pve-cbt generation present', { bitmaps: [bm({ name: 'pve-cbt-scsi0-g4' })] }, 'full-compare', 'bitmap-generation-mismatch'],
  ['qcow2 after kill -9: inconsistent', { bitmaps: [bm({ inconsistent: true })] }, 'full-compare', 'bitmap-inconsistent'],
  ['crash: ledger suspect, QEMU inconsistent', { ledger: { ...base.ledger!, state: 'suspect', reason: 'post-stop without pre-stop' }, bitmaps: [bm({ inconsistent: true })] }, 'full-compare', 'bitmap-inconsistent'],
  ['crash: ledger suspect, QEMU consistent', { ledger: { ...base.ledger!, state: 'suspect', reason: 'post-stop without pre-stop' } }, 'incremental', 'bitmap-valid'],
  ['bitmap disabled', { bitmaps: [bm({ recording: false })] }, 'full-compare', 'bitmap-not-recording'],
  ['bitmap busy', { bitmaps: [bm({ busy: true })] }, 'full-compare', 'bitmap-busy'],
  ['granularity changed', { bitmaps: [bm({ granularity: 4096 })] }, 'full-compare', 'bitmap-granularity'],
  ['raw: ledger valid but QEMU pid changed (migration/hook lost)', { ...raw, qemu: { pid: 77, startTime: 1000 } }, 'full-compare', 'qemu-restarted'],
  ['raw: same pid reused, start time differs', { ...raw, qemu: { pid: 4242, startTime: 5000 } }, 'full-compare', 'qemu-restarted'],
  ['raw: ledger without QEMU identity', { ...raw, ledger: { ...base.ledger!, qemuPid: null, qemuStartTime: null } }, 'full-compare', 'qemu-restarted'],
  ['same volume as recorded', { volume: VOL, ledger: { ...base.ledger!, ...VOL } }, 'incremental', 'bitmap-valid'],
  ['ledger record without a volume (made before it was recorded)', { volume: VOL }, 'incremental', 'bitmap-valid'],
  ['qm disk move: another volume id', { volume: { volid: 'local:100/vm-100-disk-1.qcow2', path: '/v/vm-100-disk-1.qcow2' }, ledger: { ...base.ledger!, ...VOL } }, 'full-compare', 'volume-changed'],
  ['same volume id at another path', { volume: { ...VOL, path: '/w/vm-100-disk-0.qcow2' }, ledger: { ...base.ledger!, ...VOL } }, 'full-compare', 'volume-changed'],
  ['moved and resized: the move is named', { diskSize: 64 << 20, volume: { volid: 'x:vm-100-disk-1', path: '/dev/x/vm-100-disk-1' }, ledger: { ...base.ledger!, ...VOL } }, 'full-compare', 'volume-changed'],
  ['moved, but never backed up: full', { lastBackup: undefined, volume: { volid: 'x:vm-100-disk-1', path: '/dev/x/vm-100-disk-1' }, ledger: { ...base.ledger!, ...VOL } }, 'full', 'first-backup'],
];

describe('decideMode', () => {
  test.each(rows)('%s', (_name, over, mode, code) => {
    const d = decideMode({ ...base, ...over });
    expect([d.mode, d.code]).toEqual([mode, code]);
    expect(d.reason.length).toBeGreaterThan(10);
  });

  test('disagreement reasons name both sides', () => {
    const d = decideMode({ ...base, bitmaps: [bm({ inconsistent: true })] });
    expect(d.reason).toMatch(/ledger says valid/);
    expect(d.reason).toMatch(/QEMU marks pve-cbt-scsi0-g3 inconsistent/);
    const m = decideMode({ ...base, ...raw, qemu: { pid: 77, startTime: 1000 } });
    expect(m.reason).toMatch(/pid 4242/);
    expect(m.reason).toMatch(/pid 77/);
    const l = decideMode({ ...base, ledger: { ...base.ledger!, bitmapName: 'pve-cbt-scsi0-g2', generation: 2 } });
    expect(l.reason).toMatch(/pve-cbt-scsi0-g2/);
    expect(l.reason).toMatch(/pve-cbt-scsi0-g3/);
  });

  test('formatReason puts the stable code first', () => {
    expect(formatReason(decideMode(base))).toMatch(/^bitmap-valid: /);
  });
});
