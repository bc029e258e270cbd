import { diskFormat, parsePropertyString, parseSize, parseVmConfig } from '../../../daemon/pve/vm-config';

const REALISTIC = `#Web server%3A nginx
agent: 1,fstrim_cloned_disks=1
boot: order=scsi0;ide2;net0
cores: 2
efidisk0: local-lvm:vm-100-disk-0,efitype=4m,pre-enrolled-keys=1,size=4M
hookscript: local:snippets/pve-cbt-hook
ide2: local:iso/debian-12.iso,media=cdrom,size=628M
ide0: none,media=cdrom
memory: 2048
name: web1
net0: virtio=BC:24:11:00:00:01,bridge=vmbr0
scsi0: local-lvm:vm-100-disk-1,iothread=1,size=32G
scsi1: local:100/vm-100-disk-2.qcow2,size=8G,discard=on
scsi2: local-lvm:vm-100-disk-3,backup=0,size=100G
scsihw: virtio-scsi-single
tags: prod;web
tpmstate0: local-lvm:vm-100-disk-4,size=4M,version=v2.0
unused0: local-lvm:vm-100-disk-9
virtio0: file=nfs:100/vm-100-disk-5.vmdk,size=1T

[before-upgrade]
scsi3: local-lvm:vm-100-disk-7,size=2G
agent: 0
snaptime: 1700000000
`;

describe('parseVmConfig', () => {
  const cfg = parseVmConfig(100, REALISTIC);

  test('current section disks only, cdrom/backup=0/unused/none skipped, efidisk and tpmstate kept', () => {
    expect(cfg.disks.map((d) => [d.key, d.volid, d.format, d.sizeBytes])).toEqual([
      ['scsi0', 'local-lvm:vm-100-disk-1', 'raw', 32 * 1024 ** 3],
      ['scsi1', 'local:100/vm-100-disk-2.qcow2', 'qcow2', 8 * 1024 ** 3],
      ['virtio0', 'nfs:100/vm-100-disk-5.vmdk', 'vmdk', 1024 ** 4],
      ['efidisk0', 'local-lvm:vm-100-disk-0', 'raw', 4 * 1024 ** 2],
      ['tpmstate0', 'local-lvm:vm-100-disk-4', 'raw', 4 * 1024 ** 2],
    ]);
    expect(cfg.disks[0].options.iothread).toBe('1');
  });

  test('agent, hookscript, tags from the current section, not the snapshot', () => {
    expect(cfg.agentEnabled).toBe(true);
    expect(cfg.hookscript).toBe('local:snippets/pve-cbt-hook');
    expect(cfg.tags).toEqual(['prod', 'web']);
    expect(cfg.entries.snaptime).toBeUndefined();
  });

  test.each([
    ['agent: 1', true],
    ['agent: 0', false],
    ['agent: enabled=1,fstrim_cloned_disks=1', true],
    ['agent: enabled=0,type=virtio', false],
    ['agent: type=isa', false],
    ['', false],
  ])('%s → agent %s', (line, expected) => {
    expect(parseVmConfig(1, `${line}\nmemory: 512\n`).agentEnabled).toBe(expected);
  });

  test('empty and comment-only configs', () => {
    expect(parseVmConfig(7, '').disks).toEqual([]);
    expect(parseVmConfig(7, '# just a description\n').disks).toEqual([]);
  });

  test('explicit format= wins over the extension; CRLF tolerated', () => {
    const c = parseVmConfig(5, 'sata0: dir:5/vm-5-disk-0.raw,format=qcow2,size=1G\r\nsata1: /dev/disk/by-id/ata-X,size=10G\r\n');
    expect(c.disks.map((d) => [d.key, d.format, d.volid])).toEqual([
      ['sata0', 'qcow2', 'dir:5/vm-5-disk-0.raw'],
      ['sata1', 'raw', '/dev/disk/by-id/ata-X'],
    ]);
  });
});

describe('helpers', () => {
  test.each([
    ['32G', 32 * 1024 ** 3],
    ['4M', 4 * 1024 ** 2],
    ['512K', 512 * 1024],
    ['1T', 1024 ** 4],
    ['1.5G', 1.5 * 1024 ** 3],
    ['4096', 4096],
    ['x', undefined],
  ])('parseSize(%s)', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  test('parsePropertyString', () => {
    expect(parsePropertyString('local:1/a.qcow2,size=1G,ssd=1', 'file')).toEqual({ file: 'local:1/a.qcow2', size: '1G', ssd: '1' });
    expect(parsePropertyString('file=x,media=cdrom', 'file')).toEqual({ file: 'x', media: 'cdrom' });
  });

  test.each([
    ['local:100/a.qcow2', {}, 'qcow2'],
    ['local:100/a.vmdk', {}, 'vmdk'],
    ['local:100/a.raw', {}, 'raw'],
    ['rbd:vm-100-disk-0', {}, 'raw'],
    ['local:100/a.img', { format: 'qcow2' }, 'qcow2'],
  ])('diskFormat(%s)', (volid, opts, fmt) => expect(diskFormat(volid, opts)).toBe(fmt));
});
