/**
 * The ledger follows the VM configs: records of destroyed VMs and of detached, removed or excluded
 * disks are dropped (their backups stay), a disk key naming another volume is invalid. Pure table.
 */
import { reconcileLedger, type ConfigView } from '../../../daemon/ledger/ledger-reconcile';
import type { DiskBitmapRecord } from '../../../daemon/ledger/ledger-rules';

const rec = (vmid: number, disk: string, volid: string | undefined, state: DiskBitmapRecord['state'] = 'valid', more: Partial<DiskBitmapRecord> = {}): DiskBitmapRecord => ({
  vmid, disk, format: 'qcow2', state, ...more, reason: null, changedAt: '2026-12-01T00:00:00Z', bitmapName: `pve-cbt-${disk}-g1`, generation: 1, qemuPid: null, qemuStartTime: null,
  ...(volid ? { volid } : {}),
  ...more,
});
const V0 = 'local:100/vm-100-disk-0.qcow2';
const V1 = 'local:100/vm-100-disk-1.qcow2';
const present = (entries: Record<string, string>): ConfigView => ({
  kind: 'present',
  entries,
  disks: Object.entries(entries)
    .filter(([k, v]) => /^(scsi|virtio|sata|ide)\d+$/.test(k) && !v.includes('media=cdrom') && !v.includes('backup=0'))
    .map(([key, v]) => ({ key, volid: v.split(',')[0] })),
});

const rows: [string, DiskBitmapRecord[], Map<number, ConfigView>, unknown[]][] = [
  ['unchanged config: nothing', [rec(100, 'scsi0', V0)], new Map([[100, present({ scsi0: `${V0},size=8M` })]]), []],
  ['qm destroy: every record of the VM goes', [rec(100, 'scsi0', V0), rec(100, 'scsi1', V1)], new Map([[100, { kind: 'gone' } as ConfigView]]), [{ kind: 'forget-vm', vmid: 100 }]],
  ['detach: the volume is unused0 now', [rec(100, 'scsi1', V1)], new Map([[100, present({ scsi0: V0, unused0: V1 })]]), [{ kind: 'forget-disk', vmid: 100, disk: 'scsi1', reason: expect.stringContaining('unused0') }]],
  ['removal: key and volume gone', [rec(100, 'scsi1', V1)], new Map([[100, present({ scsi0: V0 })]]), [{ kind: 'forget-disk', vmid: 100, disk: 'scsi1', reason: expect.stringContaining('removed') }]],
  ['backup=0 set: no longer backed up', [rec(100, 'scsi1', V1)], new Map([[100, present({ scsi0: V0, scsi1: `${V1},backup=0` })]]), [{ kind: 'forget-disk', vmid: 100, disk: 'scsi1', reason: expect.stringContaining('backup=0') }]],
  ['qm disk move: invalid, naming both volumes', [rec(100, 'scsi0', V0)], new Map([[100, present({ scsi0: V1 })]]), [{ kind: 'invalidate', vmid: 100, disk: 'scsi0', reason: expect.stringMatching(/vm-100-disk-1.*vm-100-disk-0/) }]],
  ['moved but already invalid: left alone', [rec(100, 'scsi0', V0, 'invalid')], new Map([[100, present({ scsi0: V1 })]]), []],
  ['record without a volume: no move can be seen', [rec(100, 'scsi0', undefined)], new Map([[100, present({ scsi0: V1 })]]), []],
  ['VM whose config could not be read: untouched', [rec(100, 'scsi0', V0)], new Map<number, ConfigView>(), []],
  ['detached qcow2 with a recorded path: the volume left behind is named', [rec(100, 'scsi1', V1, 'valid', { path: '/v/1.qcow2' })], new Map([[100, present({ scsi0: V0, unused0: V1 })]]), [{ kind: 'forget-disk', disk: 'scsi1', left: { path: '/v/1.qcow2', format: 'qcow2' } }]],
  ['moved qcow2: the source is named', [rec(100, 'scsi0', V0, 'valid', { path: '/v/0.qcow2' })], new Map([[100, present({ scsi0: V1 })]]), [{ kind: 'invalidate', disk: 'scsi0', left: { path: '/v/0.qcow2', format: 'qcow2' } }]],
  ['moved raw: no bitmap can be left in it', [rec(100, 'scsi0', 'l:vm-100-disk-0', 'valid', { path: '/dev/l/vm-100-disk-0', format: 'raw' })], new Map([[100, present({ scsi0: V1 })]]), [{ kind: 'invalidate', disk: 'scsi0' }]],
  ['destroyed or migrated away: no volume is named (another node may hold it)', [rec(100, 'scsi0', V0, 'valid', { path: '/v/0.qcow2' })], new Map([[100, { kind: 'gone' } as ConfigView]]), [{ kind: 'forget-vm', vmid: 100 }]],
  ['only the VMs asked about', [rec(100, 'scsi0', V0), rec(101, 'scsi0', 'local:101/a.qcow2')], new Map([[101, { kind: 'gone' } as ConfigView]]), [{ kind: 'forget-vm', vmid: 101 }]],
];

describe('reconcileLedger', () => {
  test.each(rows)('%s', (_name, records, configs, want) => {
    const got = reconcileLedger(records, configs);
    expect(got).toEqual(want.map((w) => expect.objectContaining(w as object)));
    for (const a of got) expect(a.reason.length).toBeGreaterThan(10);
    // Only qcow2 volumes with a recorded path are named, and never those of a VM gone from the node.
    for (const a of got) {
      const r = records.find((x) => x.vmid === a.vmid && (a.kind === 'forget-vm' || x.disk === a.disk));
      expect('left' in a).toBe(a.kind !== 'forget-vm' && r?.format === 'qcow2' && r?.path !== undefined);
    }
  });
});
