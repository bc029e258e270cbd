import fs from 'node:fs';
import path from 'node:path';
import {
  disksFromBlockInfo,
  needsNamedNodes,
  type RawBlockInfo,
  type RawBlockNode,
} from '../../../daemon/qmp/block-layout';
import { QmpLayoutError } from '../../../daemon/qmp/qmp-errors';

// Captured from QEMU 7.2 (Debian bookworm) launched like qemu-server; paths rewritten to /var/lib/vz.
function fixture<T>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', `${name}.json`), 'utf8')) as T;
}

const IMG = '/var/lib/vz/images/100';
const MiB = 1024 * 1024;

describe('disksFromBlockInfo on captured query-block output', () => {
  const cases: {
    name: string;
    blocks: string;
    nodes?: string;
    needsNodes: boolean;
    expected: { drive: string; device: string; qdev?: string; format: string; nodeName: string; file: string; size: number; bitmaps: string[] }[];
  }[] = [
    {
      name: '-drive layout: qcow2/raw/vmdk, device-less efidisk, empty and ISO cd-roms skipped',
      blocks: 'drive-layout',
      needsNodes: false,
      expected: [
        { drive: 'scsi0', device: 'drive-scsi0', qdev: 'scsi0', format: 'qcow2', nodeName: '#block190', file: `${IMG}/d0.qcow2`, size: 16 * MiB, bitmaps: ['pbs-incremental-dirty-bitmap', 'pve-cbt-1'] },
        { drive: 'virtio1', device: 'drive-virtio1', qdev: 'virtio1', format: 'raw', nodeName: '#block340', file: `${IMG}/d1.raw`, size: 8 * MiB, bitmaps: ['pve-cbt-1'] },
        { drive: 'sata0', device: 'drive-sata0', qdev: 'sata0', format: 'vmdk', nodeName: '#block547', file: `${IMG}/d2.vmdk`, size: 8 * MiB, bitmaps: [] },
        { drive: 'efidisk0', device: 'drive-efidisk0', format: 'raw', nodeName: '#block721', file: `${IMG}/efi.raw`, size: 1 * MiB, bitmaps: [] },
      ],
    },
    {
      name: '-drive layout during blockdev-backup: copy-before-write filter on top is walked through',
      blocks: 'drive-layout-backup',
      nodes: 'drive-layout-backup-nodes',
      needsNodes: true,
      expected: [
        { drive: 'scsi0', device: 'drive-scsi0', qdev: 'scsi0', format: 'qcow2', nodeName: '#block190', file: `${IMG}/d0.qcow2`, size: 16 * MiB, bitmaps: ['pbs-incremental-dirty-bitmap', 'pve-cbt-1'] },
        { drive: 'virtio1', device: 'drive-virtio1', qdev: 'virtio1', format: 'raw', nodeName: '#block340', file: `${IMG}/d1.raw`, size: 8 * MiB, bitmaps: ['pve-cbt-1'] },
        { drive: 'sata0', device: 'drive-sata0', qdev: 'sata0', format: 'vmdk', nodeName: '#block547', file: `${IMG}/d2.vmdk`, size: 8 * MiB, bitmaps: [] },
        { drive: 'efidisk0', device: 'drive-efidisk0', format: 'raw', nodeName: '#block721', file: `${IMG}/efi.raw`, size: 1 * MiB, bitmaps: [] },
      ],
    },
    {
      name: '-blockdev layout (PVE 9): throttle node drive-X, bitmaps on the format node',
      blocks: 'blockdev-layout',
      nodes: 'blockdev-layout-nodes',
      needsNodes: true,
      expected: [
        { drive: 'scsi0', device: 'drive-scsi0', qdev: 'scsi0', format: 'qcow2', nodeName: 'f-drive-scsi0', file: `${IMG}/d0.qcow2`, size: 16 * MiB, bitmaps: [] },
        { drive: 'virtio1', device: 'drive-virtio1', qdev: 'virtio1', format: 'raw', nodeName: 'f-drive-virtio1', file: `${IMG}/d1.raw`, size: 8 * MiB, bitmaps: ['pve-cbt-7'] },
      ],
    },
    {
      name: '-blockdev layout during blockdev-backup: throttle -> copy-before-write -> qcow2',
      blocks: 'blockdev-layout-backup',
      nodes: 'blockdev-layout-backup-nodes',
      needsNodes: true,
      expected: [
        { drive: 'scsi0', device: 'drive-scsi0', qdev: 'scsi0', format: 'qcow2', nodeName: 'f-drive-scsi0', file: `${IMG}/d0.qcow2`, size: 16 * MiB, bitmaps: [] },
      ],
    },
  ];

  it.each(cases)('$name', ({ blocks, nodes, needsNodes, expected }) => {
    const raw = fixture<RawBlockInfo[]>(blocks);
    expect(needsNamedNodes(raw)).toBe(needsNodes);
    const disks = disksFromBlockInfo(raw, nodes ? fixture<RawBlockNode[]>(nodes) : []);
    expect(disks.map(({ bitmaps, ...d }) => ({ ...d, bitmaps: bitmaps.map((b) => b.name).sort() }))).toEqual(expected);
  });

  it('maps bitmap fields, defaulting inconsistent to false', () => {
    const [scsi0, virtio1] = disksFromBlockInfo(fixture<RawBlockInfo[]>('drive-layout'));
    expect(scsi0.bitmaps.find((b) => b.name === 'pve-cbt-1')).toEqual({
      name: 'pve-cbt-1', count: 131072, granularity: 65536, recording: true, busy: false, persistent: true, inconsistent: false,
    });
    expect(scsi0.bitmaps.find((b) => b.name === 'pbs-incremental-dirty-bitmap')).toMatchObject({ recording: false, persistent: false });
    expect(virtio1.bitmaps).toEqual([
      { name: 'pve-cbt-1', count: 131072, granularity: 131072, recording: true, busy: false, persistent: false, inconsistent: false },
    ]);
  });

  it('reports a persistent bitmap that survived a kill -9 as inconsistent', () => {
    const [scsi0] = disksFromBlockInfo(fixture<RawBlockInfo[]>('drive-layout-after-crash'));
    expect(scsi0.bitmaps).toEqual([
      { name: 'pve-cbt-1', count: 0, granularity: 65536, recording: false, busy: false, persistent: true, inconsistent: true },
    ]);
  });

  it('drops the anonymous bitmaps of a running backup job', () => {
    const top = fixture<RawBlockInfo[]>('drive-layout-backup')[0].inserted!;
    expect(top.drv).toBe('copy-before-write');
    expect(top['dirty-bitmaps']!.every((b) => b.name === undefined)).toBe(true);
  });

  it('fails with CBT_QMP_LAYOUT when a filter child is not among the named nodes', () => {
    const raw = fixture<RawBlockInfo[]>('blockdev-layout');
    expect(() => disksFromBlockInfo(raw, [])).toThrow(expect.objectContaining({ code: QmpLayoutError.code, details: expect.objectContaining({ device: 'drive-scsi0' }) }));
  });

  it('uses qdev when the device name does not follow the drive-KEY convention', () => {
    const node: RawBlockNode = { 'node-name': 'disk-a', drv: 'raw', file: '/x.raw', image: { filename: '/x.raw', format: 'raw', 'virtual-size': 512 } };
    const disks = disksFromBlockInfo([{ device: '', qdev: '/machine/peripheral/virtio3/virtio-backend', inserted: node }]);
    expect(disks).toEqual([{ drive: 'virtio3', device: 'disk-a', qdev: 'virtio3', format: 'raw', nodeName: 'disk-a', file: '/x.raw', size: 512, bitmaps: [] }]);
  });
});
