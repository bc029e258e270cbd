import { bitmapPersists } from '../../../daemon/backup/bitmap-persistence';
import { newBitmapOf, planDisks, readFromVolume, type DiskFacts, type DiskJob, type PlanFacts } from '../../../daemon/backup/plan-disks';
import type { QemuBitmap, QemuDisk } from '../../../daemon/qmp/query-disks';
import type { DiskFormat } from '../../../daemon/pve/vm-config';
import type { VmDisk } from '../../../daemon/pve/vm-disks';

const G = 65536;
const SIZE = 32 << 20;
const QEMU = { pid: 4242, startTime: 1000 };

const vmDisk = (key: string, format: DiskFormat): VmDisk => ({ key, volid: `local:100/${key}`, format, sizeBytes: SIZE, options: {}, path: `/img/${key}` });
const bm = (name: string, over: Partial<QemuBitmap> = {}): QemuBitmap => ({
  name, count: 0, granularity: G, recording: true, busy: false, persistent: true, inconsistent: false, ...over,
});
const qemuDisk = (drive: string, format: string, bitmaps: QemuBitmap[]): QemuDisk => ({
  drive, device: `drive-${drive}`, format, nodeName: `#block-${drive}`, file: `/img/${drive}`, size: SIZE, bitmaps,
});
const last = (gen: number | undefined, drive = 'scsi0') => ({
  backupId: 'vm/100/b1', size: SIZE, chunkSize: 4 << 20, ...(gen !== undefined ? { bitmap: { name: `pve-cbt-${drive}-g${gen}`, generation: gen } } : {}),
});
const ledger = (gen: number, drive = 'scsi0', over: object = {}) => ({
  state: 'valid' as const, reason: null, bitmapName: `pve-cbt-${drive}-g${gen}`, generation: gen, qemuPid: QEMU.pid, qemuStartTime: QEMU.startTime, ...over,
});

function plan(qemu: PlanFacts['qemu'], ...disks: DiskFacts[]): DiskJob[] {
  return planDisks({ vmid: 100, qemu, granularity: G, disks });
}

/** The fields of a job a row checks, whatever its kind. */
function summary(j: DiskJob) {
  return {
    kind: j.kind,
    mode: j.decision.mode,
    code: j.decision.code,
    readBitmap: j.readBitmap ?? null,
    newBitmap: newBitmapOf(j)?.name ?? null,
    persistent: j.kind === 'fleece' ? j.persistent : null,
    oldBitmaps: j.kind === 'image' ? (j.bitmaps?.old ?? null) : null,
  };
}

type Row = [string, PlanFacts['qemu'], DiskFacts, ReturnType<typeof summary>];
const rows: Row[] = [
  [
    'running qcow2, first backup: fleece, full, persistent g1',
    QEMU,
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', []), last: undefined, ledger: undefined },
    { kind: 'fleece', mode: 'full', code: 'first-backup', readBitmap: null, newBitmap: 'pve-cbt-scsi0-g1', persistent: true, oldBitmaps: null },
  ],
  [
    'running qcow2, all agree: incremental reads g3, starts g4',
    QEMU,
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', [bm('pve-cbt-scsi0-g3')]), last: last(3), ledger: ledger(3) },
    { kind: 'fleece', mode: 'incremental', code: 'bitmap-valid', readBitmap: 'pve-cbt-scsi0-g3', newBitmap: 'pve-cbt-scsi0-g4', persistent: true, oldBitmaps: null },
  ],
  [
    'running raw: transient bitmap',
    QEMU,
    { disk: vmDisk('scsi1', 'raw'), qemuDisk: qemuDisk('scsi1', 'raw', [bm('pve-cbt-scsi1-g2', { persistent: false })]), last: last(2, 'scsi1'), ledger: ledger(2, 'scsi1') },
    { kind: 'fleece', mode: 'incremental', code: 'bitmap-valid', readBitmap: 'pve-cbt-scsi1-g2', newBitmap: 'pve-cbt-scsi1-g3', persistent: false, oldBitmaps: null },
  ],
  [
    'configured qcow2 but QEMU opened it raw: transient',
    QEMU,
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'raw', []), last: undefined, ledger: undefined },
    { kind: 'fleece', mode: 'full', code: 'first-backup', readBitmap: null, newBitmap: 'pve-cbt-scsi0-g1', persistent: false, oldBitmaps: null },
  ],
  [
    'generation above a stray newer bitmap in QEMU',
    QEMU,
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', [bm('pve-cbt-scsi0-g3'), bm('pve-cbt-scsi0-g7'), bm('pve-cbt-scsi1-g20')]), last: last(3), ledger: ledger(3) },
    { kind: 'fleece', mode: 'incremental', code: 'bitmap-valid', readBitmap: 'pve-cbt-scsi0-g3', newBitmap: 'pve-cbt-scsi0-g8', persistent: true, oldBitmaps: null },
  ],
  [
    'generation above the ledger (bitmap gone in QEMU): full-compare, g10',
    QEMU,
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', []), last: last(3), ledger: ledger(9) },
    { kind: 'fleece', mode: 'full-compare', code: 'ledger-mismatch', readBitmap: null, newBitmap: 'pve-cbt-scsi0-g10', persistent: true, oldBitmaps: null },
  ],
  [
    'generation above the last manifest',
    QEMU,
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', []), last: last(5), ledger: undefined },
    { kind: 'fleece', mode: 'full-compare', code: 'ledger-no-record', readBitmap: null, newBitmap: 'pve-cbt-scsi0-g6', persistent: true, oldBitmaps: null },
  ],
  [
    'running tpmstate0 (swtpm holds it), first backup: volume, full, no bitmap',
    QEMU,
    { disk: vmDisk('tpmstate0', 'raw'), image: { virtualSize: 4 << 20, bitmaps: [] }, last: undefined, ledger: undefined },
    { kind: 'volume', mode: 'full', code: 'first-backup', readBitmap: null, newBitmap: null, persistent: null, oldBitmaps: null },
  ],
  [
    'running tpmstate0 backed up before: full-compare not-in-qemu',
    QEMU,
    { disk: vmDisk('tpmstate0', 'raw'), image: { virtualSize: 4 << 20, bitmaps: [] }, last: last(undefined, 'tpmstate0'), ledger: undefined },
    { kind: 'volume', mode: 'full-compare', code: 'not-in-qemu', readBitmap: null, newBitmap: null, persistent: null, oldBitmaps: null },
  ],
  [
    'stopped qcow2, bitmap valid in the image: image job adds g4, drops its own g3 later',
    undefined,
    {
      disk: vmDisk('scsi0', 'qcow2'),
      image: { virtualSize: SIZE, bitmaps: [bm('pve-cbt-scsi0-g3'), bm('pbs-incremental-dirty-bitmap'), bm('pve-cbt-scsi1-g3')] },
      last: last(3),
      ledger: ledger(3),
    },
    { kind: 'image', mode: 'incremental', code: 'bitmap-valid', readBitmap: 'pve-cbt-scsi0-g3', newBitmap: 'pve-cbt-scsi0-g4', persistent: null, oldBitmaps: ['pve-cbt-scsi0-g3'] },
  ],
  [
    'stopped raw: no bitmap kept, full-compare',
    undefined,
    { disk: vmDisk('scsi1', 'raw'), image: { virtualSize: SIZE, bitmaps: [] }, last: last(2, 'scsi1'), ledger: ledger(2, 'scsi1') },
    { kind: 'image', mode: 'full-compare', code: 'stopped-transient', readBitmap: null, newBitmap: null, persistent: null, oldBitmaps: null },
  ],
  [
    'stopped tpmstate0 is an ordinary image',
    undefined,
    { disk: vmDisk('tpmstate0', 'raw'), image: { virtualSize: 4 << 20, bitmaps: [] }, last: undefined, ledger: undefined },
    { kind: 'image', mode: 'full', code: 'first-backup', readBitmap: null, newBitmap: null, persistent: null, oldBitmaps: null },
  ],
];

test.each(rows)('%s', (_name, qemu, facts, want) => {
  const [job] = plan(qemu, facts);
  expect(summary(job)).toEqual(want);
  expect(job.size).toBe(facts.qemuDisk?.size ?? facts.image?.virtualSize);
  expect(job.disk).toBe(facts.disk);
});

test('a running VM disk that QEMU does not hold (and is no swtpm volume) is a mismatch', () => {
  const missing: DiskFacts = { disk: vmDisk('scsi1', 'raw'), last: undefined, ledger: undefined };
  expect(() => plan(QEMU, missing)).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_DISK_MISMATCH', details: expect.objectContaining({ vmid: 100, disk: 'scsi1' }) }));
  // Also when its image was looked at: only swtpm volumes are read beside QEMU.
  expect(() => plan(QEMU, { ...missing, image: { virtualSize: SIZE, bitmaps: [] } })).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_DISK_MISMATCH' }));
});

test('a stopped VM disk without image facts is a mismatch, not a guess', () => {
  expect(() => plan(undefined, { disk: vmDisk('scsi0', 'qcow2'), last: undefined, ledger: undefined })).toThrow(expect.objectContaining({ code: 'CBT_BACKUP_DISK_MISMATCH' }));
});

test('jobs keep the order of the config, one per disk', () => {
  const jobs = plan(
    QEMU,
    { disk: vmDisk('tpmstate0', 'raw'), image: { virtualSize: 4 << 20, bitmaps: [] }, last: undefined, ledger: undefined },
    { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', []), last: undefined, ledger: undefined },
  );
  expect(jobs.map((j) => [j.disk.key, j.kind])).toEqual([['tpmstate0', 'volume'], ['scsi0', 'fleece']]);
});

test.each([
  ['qcow2', true],
  ['raw', false],
  ['vmdk', false],
])('bitmaps on %s persist: %s', (format, persists) => {
  expect(bitmapPersists(format)).toBe(persists);
});

test('only swtpm volumes are read beside QEMU', () => {
  expect(readFromVolume({ key: 'tpmstate0' })).toBe(true);
  expect(readFromVolume({ key: 'efidisk0' })).toBe(false);
});

describe('forceFull (backup --mode full)', () => {
  const force = (qemu: PlanFacts['qemu'], facts: DiskFacts) => planDisks({ vmid: 100, qemu, granularity: G, disks: [facts], forceFull: true })[0];
  test.each<[string, PlanFacts['qemu'], DiskFacts, ReturnType<typeof summary>, RegExp]>([
    [
      'a valid bitmap is not read: full, and a new bitmap starts',
      QEMU,
      { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', [bm('pve-cbt-scsi0-g3')]), last: last(3), ledger: ledger(3) },
      { kind: 'fleece', mode: 'full', code: 'forced-full', readBitmap: null, newBitmap: 'pve-cbt-scsi0-g4', persistent: true, oldBitmaps: null },
      /otherwise incremental \(bitmap-valid\)$/,
    ],
    [
      'a stopped raw disk that would be full-compared',
      undefined,
      { disk: vmDisk('scsi1', 'raw'), image: { virtualSize: SIZE, bitmaps: [] }, last: last(2, 'scsi1'), ledger: ledger(2, 'scsi1') },
      { kind: 'image', mode: 'full', code: 'forced-full', readBitmap: null, newBitmap: null, persistent: null, oldBitmaps: null },
      /otherwise full-compare \(stopped-transient\)$/,
    ],
    [
      'a first backup: still full, the reason says it was asked for',
      QEMU,
      { disk: vmDisk('scsi0', 'qcow2'), qemuDisk: qemuDisk('scsi0', 'qcow2', []), last: undefined, ledger: undefined },
      { kind: 'fleece', mode: 'full', code: 'forced-full', readBitmap: null, newBitmap: 'pve-cbt-scsi0-g1', persistent: true, oldBitmaps: null },
      /otherwise full \(first-backup\)$/,
    ],
  ])('%s', (_name, qemu, facts, want, reason) => {
    const job = force(qemu, facts);
    expect(summary(job)).toEqual(want);
    expect(job.decision.reason).toMatch(/^full backup requested \(--mode full\)/);
    expect(job.decision.reason).toMatch(reason);
  });
});
