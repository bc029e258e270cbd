import { decideAdoption, type AdoptionInput } from '../../../daemon/migration/adoption-decision';
import { HANDOFF_FORMAT, type BitmapHandoff } from '../../../daemon/migration/handoff-format';

const handoff: BitmapHandoff = {
  format: HANDOFF_FORMAT,
  vmid: 100,
  from: 'pve1',
  to: 'pve2',
  claimId: 'seq-1',
  writtenAt: '2026-12-02T00:00:00.000Z',
  disks: [
    { disk: 'scsi0', format: 'qcow2', bitmapName: 'pve-cbt-scsi0-g3', generation: 3 },
    { disk: 'scsi1', format: 'raw', bitmapName: 'pve-cbt-scsi1-g3', generation: 3 },
  ],
};

const base: AdoptionInput = {
  vmid: 100,
  thisNode: 'pve2',
  start: { eventId: 7, seq: 'seq-1', migratedFrom: 'pve1', postStartPid: 4242 },
  handoff,
  qemuPid: 4242,
  configDisks: [
    { key: 'scsi0', format: 'qcow2' },
    { key: 'scsi1', format: 'raw' },
  ],
  ledgerStates: new Map(),
  lastBitmaps: new Map([
    ['scsi0', { name: 'pve-cbt-scsi0-g3', generation: 3 }],
    ['scsi1', { name: 'pve-cbt-scsi1-g3', generation: 3 }],
  ]),
};

describe('decideAdoption', () => {
  it('adopts every disk when the handoff is for this migration, this QEMU and the last backup', () => {
    expect(decideAdoption(base)).toEqual({ kind: 'adopt', disks: handoff.disks, skipped: [] });
    expect(decideAdoption({ ...base, ledgerStates: new Map([['scsi0', 'unknown']]) })).toMatchObject({ kind: 'adopt', skipped: [] });
  });

  it.each<[string, Partial<AdoptionInput>, { kind: string; consume?: boolean }]>([
    ['no start recorded', { start: undefined }, { kind: 'none', consume: false }],
    ['a plain start, not a migration', { start: { eventId: 7, seq: 'seq-1', migratedFrom: null, postStartPid: 4242 } }, { kind: 'none', consume: false }],
    ['a migrated start without seq', { start: { eventId: 7, seq: null, migratedFrom: 'pve1', postStartPid: 4242 } }, { kind: 'none', consume: false }],
    ['no handoff yet', { handoff: undefined }, { kind: 'wait' }],
    ['a handoff of another migration', { handoff: { ...handoff, claimId: 'seq-0' } }, { kind: 'wait' }],
    ['a claimless handoff from the source', { handoff: { ...handoff, claimId: null } }, { kind: 'none', consume: true }],
    ['a claimless handoff of another pair', { handoff: { ...handoff, claimId: null, from: 'pve3' } }, { kind: 'wait' }],
    ['the claim, but another source', { handoff: { ...handoff, from: 'pve3' } }, { kind: 'none', consume: true }],
    ['the claim, but another target', { handoff: { ...handoff, to: 'pve3' } }, { kind: 'none', consume: true }],
    ['QEMU gone', { qemuPid: undefined }, { kind: 'none', consume: true }],
    ['another QEMU than the migrated one', { qemuPid: 5000 }, { kind: 'none', consume: true }],
    ['no post-start seen', { start: { eventId: 7, seq: 'seq-1', migratedFrom: 'pve1', postStartPid: null } }, { kind: 'none', consume: true }],
  ])('%s', (_name, patch, expected) => {
    expect(decideAdoption({ ...base, ...patch })).toMatchObject(expected);
  });

  it.each<[string, Partial<AdoptionInput>, string]>([
    ['disk gone from the config', { configDisks: [{ key: 'scsi1', format: 'raw' }] }, 'no longer in the VM config'],
    ['format changed', { configDisks: [{ key: 'scsi0', format: 'raw' }, { key: 'scsi1', format: 'raw' }] }, 'format is raw now, was qcow2'],
    ['this ledger already has a record', { ledgerStates: new Map([['scsi0', 'valid']]) }, "this node's ledger already says valid"],
    ['no backup of the disk', { lastBitmaps: new Map([['scsi1', { name: 'pve-cbt-scsi1-g3', generation: 3 }]]) }, 'last backup started no bitmap'],
    [
      'the last backup started another generation',
      { lastBitmaps: new Map([['scsi0', { name: 'pve-cbt-scsi0-g4', generation: 4 }], ['scsi1', { name: 'pve-cbt-scsi1-g3', generation: 3 }]]) },
      'last backup started pve-cbt-scsi0-g4 generation 4',
    ],
  ])('skips a disk when %s and adopts the others', (_name, patch, reason) => {
    const v = decideAdoption({ ...base, ...patch });
    expect(v.kind).toBe('adopt');
    if (v.kind !== 'adopt') return;
    expect(v.disks.map((d) => d.disk)).toEqual(['scsi1']);
    expect(v.skipped).toHaveLength(1);
    expect(v.skipped[0].disk).toBe('scsi0');
    expect(v.skipped[0].reason).toContain(reason);
  });
});
