import { checkImagePath } from '../../../daemon/pve/image-path';

describe('checkImagePath: what pvesm may name', () => {
  test.each([
    ['/var/lib/vz/images/101/vm-101-disk-0.qcow2', '/var/lib/vz/images/101/vm-101-disk-0.qcow2'],
    ['/dev/pve/vm-101-disk-0', '/dev/pve/vm-101-disk-0'],
    ['/dev/zvol/rpool/data/vm-101-disk-0', '/dev/zvol/rpool/data/vm-101-disk-0'],
    ['//mnt/pve/nfs//images/./101/../101/a.raw', '/mnt/pve/nfs/images/101/a.raw'],
    ['/mnt/pve/nfs/--help', '/mnt/pve/nfs/--help'],
    ['rbd:ceph-pool/vm-101-disk-0:mon_host=10.0.0.1;10.0.0.2:auth_supported=cephx:id=admin:keyring=/etc/pve/priv/ceph/c.keyring',
      'rbd:ceph-pool/vm-101-disk-0:mon_host=10.0.0.1;10.0.0.2:auth_supported=cephx:id=admin:keyring=/etc/pve/priv/ceph/c.keyring'],
    ['rbd:pool/ns/vm-101-disk-0', 'rbd:pool/ns/vm-101-disk-0'],
    ['iscsi://10.0.0.5/iqn.2003-01.org.linux-iscsi.host:sn.1234/0', 'iscsi://10.0.0.5/iqn.2003-01.org.linux-iscsi.host:sn.1234/0'],
  ])('accepts %s', (printed, normalized) => {
    expect(checkImagePath(printed)).toEqual({ ok: true, path: normalized });
  });

  test.each([
    ['--help', 'option-like'],
    ['-U', 'option-like'],
    ['json:{"driver":"file","filename":"/etc/hostname"}', 'json-pseudo-filename'],
    ['JSON:{"driver":"file","filename":"/etc/hostname"}', 'json-pseudo-filename'],
    ['nbd:unix:/x', 'protocol'],
    ['nbd://10.0.0.1/export', 'protocol'],
    ['file:/etc/hostname', 'protocol'],
    ['ssh://host/x', 'protocol'],
    ['relative/path', 'relative'],
    ['vm-101-disk-0.qcow2', 'relative'],
    ['./a.qcow2', 'relative'],
    ['', 'empty'],
    ['/', 'directory'],
    ['/var/lib/vz/images/', 'directory'],
    ['/var/lib/vz/a\nb', 'control-character'],
    ['rbd:-pool/img', 'protocol'],
    ['rbd:pool', 'protocol'],
    ['rbd:pool/img with space', 'protocol'],
    ['iscsi://host/target', 'protocol'],
  ])('refuses %j as %s', (printed, refusal) => {
    expect(checkImagePath(printed)).toMatchObject({ ok: false, refusal });
  });
});
