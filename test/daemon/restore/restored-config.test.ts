/**
 * The restored VM's config, rule by rule (restored-config.ts), with literal configs and a
 * deterministic random source, so each expected line is written out here.
 */
import {
  nextDiskName,
  ownedVolumes,
  randomMac,
  replaceDisk,
  restoredConfig,
  usedDiskIndices,
  uuidFrom,
  withVolume,
  type RandomBytes,
} from '../../../daemon/restore/restored-config';

/** Bytes 0x11, 0x22, ... from a counter: every call gives the next ones. */
function counter(): RandomBytes {
  let next = 0x11;
  return (n) => Buffer.from(Array.from({ length: n }, () => (next = (next + 0x11) & 0xff)));
}

const V = new Map([
  ['scsi0', { volid: 'local:900/vm-900-disk-0.qcow2', sizeBytes: 4 << 20 }],
  ['virtio1', { volid: 'local:900/vm-900-disk-1.raw', sizeBytes: 8 * 2 ** 30 }],
]);

const SAVED = [
  '#a description line',
  'boot: order=scsi0;virtio1;ide2',
  'ide2: none,media=cdrom',
  'lock: backup',
  'meta: creation-qemu=7.2.0,ctime=1700000000',
  'name: web',
  'net0: virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0,firewall=1',
  'net1: model=e1000,macaddr=02:00:00:00:00:01,bridge=vmbr1',
  'parent: before-upgrade',
  'sata0: /dev/disk/by-id/ata-X,backup=0,size=100G',
  'scsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=4M',
  'scsi1: local:100/vm-100-disk-1.raw,backup=0,size=1G',
  'smbios1: uuid=00000000-0000-4000-8000-000000000100,manufacturer=QUNNRQ==',
  'unused0: local:100/vm-100-disk-99.raw',
  'virtio1: file=local-lvm:vm-100-disk-2,cache=writeback',
  'vmgenid: 00000000-0000-4000-9000-000000000100',
  '',
  '[before-upgrade]',
  'scsi30: local:100/vm-100-disk-98.qcow2,size=8M',
  '',
].join('\n');

describe('restoredConfig', () => {
  test('without --unique: new volids and sizes, snapshot state, unused and unbacked disks gone, vmgenid new', () => {
    const { text, dropped } = restoredConfig({ savedConf: SAVED, volumes: V, unique: false, random: counter() });
    expect(text).toBe(
      [
        '#a description line',
        'boot: order=scsi0;virtio1;ide2',
        'ide2: none,media=cdrom',
        'meta: creation-qemu=7.2.0,ctime=1700000000',
        'name: web',
        'net0: virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0,firewall=1',
        'net1: model=e1000,macaddr=02:00:00:00:00:01,bridge=vmbr1',
        'scsi0: local:900/vm-900-disk-0.qcow2,iothread=1,size=4M',
        'smbios1: uuid=00000000-0000-4000-8000-000000000100,manufacturer=QUNNRQ==',
        'virtio1: local:900/vm-900-disk-1.raw,cache=writeback,size=8G',
        `vmgenid: ${uuidFrom(counter())}`,
        '',
      ].join('\n'),
    );
    expect(dropped).toEqual([
      { key: 'lock', value: 'backup', reason: 'lock' },
      { key: 'parent', value: 'before-upgrade', reason: 'snapshot parent' },
      { key: 'sata0', value: '/dev/disk/by-id/ata-X,backup=0,size=100G', reason: 'not in the backup' },
      { key: 'scsi1', value: 'local:100/vm-100-disk-1.raw,backup=0,size=1G', reason: 'not in the backup' },
      { key: 'unused0', value: 'local:100/vm-100-disk-99.raw', reason: 'unused volume' },
    ]);
    expect(text).not.toContain('scsi30');
    expect(text).not.toContain('vm-100-');
  });

  test('with --unique: every MAC (both spellings) and the smbios1 uuid are new, other smbios1 fields kept', () => {
    const rnd = counter();
    const { text } = restoredConfig({ savedConf: SAVED, volumes: V, unique: true, random: rnd });
    const expect_ = counter();
    const mac0 = randomMac(expect_);
    const mac1 = randomMac(expect_);
    const smbios = uuidFrom(expect_);
    const vmgenid = uuidFrom(expect_);
    expect(text).toContain(`net0: virtio=${mac0},bridge=vmbr0,firewall=1\n`);
    expect(text).toContain(`net1: model=e1000,macaddr=${mac1},bridge=vmbr1\n`);
    expect(text).toContain(`smbios1: uuid=${smbios},manufacturer=QUNNRQ==\n`);
    expect(text).toContain(`vmgenid: ${vmgenid}\n`);
    expect(mac0).toMatch(/^BC:24:11:[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2}$/);
    expect(new Set([mac0, mac1]).size).toBe(2);
  });

  const ONE = new Map([['scsi0', V.get('scsi0')!]]);
  const NONE = new Map<string, { volid: string; sizeBytes: number }>();
  test.each([
    ['vmgenid 0 (disabled) stays 0', 'vmgenid: 0\n', NONE, false, 'vmgenid: 0\n'],
    ['a net without MAC gets one with --unique', 'net0: model=virtio,bridge=vmbr0\n', NONE, true, 'net0: model=virtio,bridge=vmbr0,macaddr=BC:24:11:22:33:44\n'],
    ['smbios1 without uuid gets one with --unique', 'smbios1: base64=1\n', NONE, true, `smbios1: uuid=${uuidFrom(counter())},base64=1\n`],
    ['a cd-rom with an ISO stays', 'ide2: local:iso/debian.iso,media=cdrom\n', NONE, false, 'ide2: local:iso/debian.iso,media=cdrom\n'],
    ['a disk line without size= gets one', 'scsi0: local:100/vm-100-disk-0.qcow2\n', ONE, false, 'scsi0: local:900/vm-900-disk-0.qcow2,size=4M\n'],
    ['dropped disks leave the boot order', 'boot: order=sata0;scsi0;ide2,menu=1\nsata0: /dev/sdb,backup=0\nscsi0: local:100/vm-100-disk-0.qcow2\n', ONE, false, 'boot: order=scsi0;ide2,menu=1\nscsi0: local:900/vm-900-disk-0.qcow2,size=4M\n'],
    ['a restored disk without a line gets one', 'name: x\n', V, false, 'name: x\nscsi0: local:900/vm-900-disk-0.qcow2,size=4M\nvirtio1: local:900/vm-900-disk-1.raw,size=8G\n'],
    ['efidisk0 and tpmstate0 not in the backup are dropped', 'efidisk0: local:100/vm-100-disk-5.raw,size=528K\ntpmstate0: local:100/vm-100-disk-6.raw,size=4M\n', NONE, false, '\n'],
  ])('%s', (_n, savedConf, volumes, unique, want) => {
    expect(restoredConfig({ savedConf, volumes, unique, random: counter() }).text).toBe(want);
  });

  test('randomMac sets only the last three bytes', () => {
    expect(randomMac(() => Buffer.from([0x0a, 0xbc, 0xff]))).toBe('BC:24:11:0A:BC:FF');
  });

  test('uuidFrom is a version 4 uuid', () => {
    expect(uuidFrom(() => Buffer.alloc(16, 0xff))).toBe('ffffffff-ffff-4fff-bfff-ffffffffffff');
  });
});

test.each([
  ['bare volid', 'local:1/a.raw,size=1M', 'local:9/b.raw,size=2M'],
  ['file= form', 'file=local:1/a.raw,cache=none', 'local:9/b.raw,cache=none,size=2M'],
  ['only options', 'cache=none', 'local:9/b.raw,cache=none,size=2M'],
])('withVolume: %s', (_n, value, want) => {
  expect(withVolume(value, { volid: 'local:9/b.raw', sizeBytes: 2 << 20 })).toBe(want);
});

describe('replaceDisk', () => {
  const existing = 'name: db\nscsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=4M\nscsi1: local:100/vm-100-disk-1.raw,size=4M\nunused0: local:100/vm-100-disk-7.raw\n\n[snap]\nscsi1: local:100/vm-100-disk-1.raw,size=4M\n';
  const volume = { volid: 'local:100/vm-100-disk-2.raw', sizeBytes: 4 << 20 };

  test('swaps the volid, keeps the options and snapshot sections, the old volume becomes the lowest free unusedN', () => {
    const r = replaceDisk({ existingConf: existing, vmid: 100, key: 'scsi1', backupValue: 'local:100/vm-100-disk-1.raw,ssd=1,size=4M', volume });
    expect(r).toEqual({
      text: 'name: db\nscsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=4M\nscsi1: local:100/vm-100-disk-2.raw,size=4M\nunused0: local:100/vm-100-disk-7.raw\nunused1: local:100/vm-100-disk-1.raw\n\n[snap]\nscsi1: local:100/vm-100-disk-1.raw,size=4M\n',
      oldVolid: 'local:100/vm-100-disk-1.raw',
      unusedKey: 'unused1',
    });
  });

  test("a disk the VM no longer has is added from the backup's line, nothing becomes unused", () => {
    const r = replaceDisk({ existingConf: 'name: db\nscsi0: local:100/vm-100-disk-0.qcow2,size=4M\n', vmid: 100, key: 'scsi1', backupValue: 'local:100/vm-100-disk-1.raw,ssd=1,size=4M', volume });
    expect(r).toEqual({ text: 'name: db\nscsi0: local:100/vm-100-disk-0.qcow2,size=4M\nscsi1: local:100/vm-100-disk-2.raw,ssd=1,size=4M\n', oldVolid: undefined, unusedKey: undefined });
  });

  test('a pass-through device is replaced but never kept as unused', () => {
    const r = replaceDisk({ existingConf: 'sata0: /dev/sdb,size=4M\n', vmid: 100, key: 'sata0', backupValue: undefined, volume });
    expect(r).toEqual({ text: 'sata0: local:100/vm-100-disk-2.raw,size=4M\n', oldVolid: '/dev/sdb', unusedKey: undefined });
  });
});

test.each([
  ['nothing', 100, '', new Set<number>(), 'vm-100-disk-0.raw'],
  ['current and snapshot names, other VMs ignored', 100, 'scsi0: local:100/vm-100-disk-0.raw\n[s]\nscsi1: local:100/vm-100-disk-1.qcow2\nscsi2: local:200/vm-200-disk-2.raw\n', new Set([0, 1]), 'vm-100-disk-2.raw'],
  ['a gap is used first', 100, 'a: local:100/vm-100-disk-1.raw\nb: local-lvm:vm-100-disk-0\n', new Set([0, 1]), 'vm-100-disk-2.raw'],
])('usedDiskIndices / nextDiskName: %s', (_n, vmid, conf, used, name) => {
  expect(usedDiskIndices(vmid, conf)).toEqual(used);
  expect(nextDiskName(vmid, 'raw', usedDiskIndices(vmid, conf)).name).toBe(name);
});

test('ownedVolumes: only volumes named for the VM (disks and unusedN), never pass-through, ISOs or other VMs', () => {
  const conf = [
    'ide2: local:iso/x.iso,media=cdrom',
    'sata0: /dev/sdb',
    'scsi0: local:100/vm-100-disk-0.qcow2,size=4M',
    'scsi1: local-lvm:vm-100-disk-1,size=4M',
    'scsi2: local:99/base-99-disk-0.qcow2/100/vm-100-disk-2.qcow2',
    'scsi3: local:200/vm-200-disk-0.raw',
    'unused0: local:100/vm-100-disk-9.raw',
    '[snap]',
    'scsi5: local:100/vm-100-disk-5.raw',
  ].join('\n');
  expect(ownedVolumes(100, conf)).toEqual(['local:100/vm-100-disk-0.qcow2', 'local-lvm:vm-100-disk-1', 'local:99/base-99-disk-0.qcow2/100/vm-100-disk-2.qcow2', 'local:100/vm-100-disk-9.raw']);
});
