/** RBD names in both spellings (RBDPlugin's legacy filename, QEMU's json: pseudo-filename). Pure. */
import { atSnapshot, isRbdName, parseRbdName, rbdCliArgs, rbdImageSpec, rbdName, sameRbdImage } from '../../../daemon/pve/rbd-volume';

const legacy = 'rbd:rbd/cbt-ns/vm-100-disk-0:conf=/etc/pve/ceph.conf:id=admin:keyring=/etc/pve/priv/ceph/ceph.keyring';
const json = 'json:{"driver": "raw", "file": {"pool": "rbd", "image": "vm-100-disk-0", "conf": "/etc/pve/ceph.conf", "driver": "rbd", "namespace": "cbt-ns", "user": "admin"}}';

test.each<[string, string, object | undefined]>([
  ['legacy with namespace', legacy, { pool: 'rbd', namespace: 'cbt-ns', image: 'vm-100-disk-0' }],
  ['legacy without namespace, snapshot', 'rbd:pool1/vm-1-disk-1@s1:conf=/c', { pool: 'pool1', image: 'vm-1-disk-1', snapshot: 's1' }],
  ['external cluster: escaped mon_host', 'rbd:p/vm-1-disk-0:mon_host=10.0.0.1\\:6789;10.0.0.2:auth_supported=none', { pool: 'p', image: 'vm-1-disk-0' }],
  ['QEMU json: raw over rbd', json, { pool: 'rbd', namespace: 'cbt-ns', image: 'vm-100-disk-0' }],
  ['QEMU json: rbd node itself', 'json:{"driver":"rbd","pool":"p","image":"i","snapshot":"s"}', { pool: 'p', image: 'i', snapshot: 's' }],
  ['json: over a file', 'json:{"driver":"raw","file":{"driver":"file","filename":"/x"}}', undefined],
  ['no image', 'rbd:pool', undefined],
  ['empty snapshot', 'rbd:p/i@', undefined],
  ['option without value', 'rbd:p/i:conf', undefined],
  ['a path', '/var/lib/vz/images/100/a.raw', undefined],
])('%s', (_name, input, want) => {
  const got = parseRbdName(input);
  if (want === undefined) expect(got).toBeUndefined();
  else expect(got).toMatchObject(want);
  expect(isRbdName(input)).toBe(want !== undefined);
});

test('both spellings are the same image; a snapshot is another', () => {
  const a = parseRbdName(legacy)!;
  const b = parseRbdName(json)!;
  expect(sameRbdImage(a, b)).toBe(true);
  expect(sameRbdImage(a, atSnapshot(a, 'x'))).toBe(false);
});

test('options survive: the legacy name is written back, at a snapshot, with the CLI arguments', () => {
  const a = parseRbdName(legacy)!;
  expect(rbdName(a)).toBe(legacy);
  expect(rbdName(atSnapshot(a, 'pve-cbt-1'))).toBe(legacy.replace('vm-100-disk-0:', 'vm-100-disk-0@pve-cbt-1:'));
  expect(rbdImageSpec(a)).toBe('rbd/cbt-ns/vm-100-disk-0');
  expect(rbdCliArgs(a)).toEqual(['-c', '/etc/pve/ceph.conf', '--id', 'admin', '--keyring', '/etc/pve/priv/ceph/ceph.keyring']);
  const ext = parseRbdName('rbd:p/vm-1-disk-0:mon_host=10.0.0.1\\:6789;10.0.0.2:auth_supported=none')!;
  expect(rbdCliArgs(ext)).toEqual(['-m', '10.0.0.1:6789,10.0.0.2', '--auth_supported', 'none']);
  expect(rbdName(ext)).toBe('rbd:p/vm-1-disk-0:mon_host=10.0.0.1\\:6789;10.0.0.2:auth_supported=none');
});
