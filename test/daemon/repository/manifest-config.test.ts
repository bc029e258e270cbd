/**
 * The VM config in the manifest: kept inside the checksum, optional (manifests written before it
 * existed stay valid and read as "no config"), and a malformed one is refused.
 */
import { MANIFEST_FORMAT, manifestChecksum, parseManifest, sealManifest, serializeManifest, type Manifest } from '../../../daemon/repository/manifest';
import { ZERO_DIGEST } from '../../../daemon/repository/digest';

const ID = 'vm/100/2026-11-25T15_04_05Z';

function base(): Omit<Manifest, 'checksum'> {
  return {
    format: MANIFEST_FORMAT,
    id: ID,
    vmid: 100,
    time: '2026-11-25T15:04:05Z',
    parent: null,
    toolVersion: 'pve-cbt 0.1.0',
    extra: {},
    disks: [
      { name: 'scsi0', format: 'raw', size: 131072, chunkSize: 131072, pageEntries: 16, pages: [ZERO_DIGEST], mode: 'full', reason: 'first backup', bitmap: null, consistency: 'offline', base: null, bytesRead: 0, bytesStored: 0, chunksStored: 0, pageBytesStored: 0, durationMs: 1 },
    ],
  };
}

test('an old manifest without config (checksum computed without the field) is read as before', () => {
  const old = sealManifest(base());
  expect(Object.keys(old)).not.toContain('config');
  const parsed = parseManifest(ID, serializeManifest(old));
  expect(parsed.config).toBeUndefined();
  expect(parsed).toEqual(old);
});

test.each([
  ['with a firewall file', { conf: 'name: a\nscsi0: local:100/vm-100-disk-0.raw,size=128K\n', firewall: '[OPTIONS]\nenable: 1\n' }],
  ['without one', { conf: 'name: a\n', firewall: null }],
])('a config %s round trips inside the checksum', (_name, config) => {
  const m = sealManifest({ ...base(), config });
  expect(parseManifest(ID, serializeManifest(m)).config).toEqual(config);
  const edited = { ...m, config: { ...config, conf: `${config.conf}memory: 99999\n` } };
  expect(() => parseManifest(ID, Buffer.from(JSON.stringify(edited)))).toThrow(expect.objectContaining({ code: 'CBT_REPO_MANIFEST_CORRUPT' }));
});

test.each([
  ['conf not a string', { conf: 5, firewall: null }],
  ['firewall neither text nor null', { conf: 'a: b\n', firewall: 1 }],
  ['null', null],
])('a malformed config (%s) is refused even with a matching checksum', (_name, config) => {
  const m = { ...base(), config } as unknown as Omit<Manifest, 'checksum'>;
  const sealed = { ...m, checksum: manifestChecksum(m) };
  expect(() => parseManifest(ID, Buffer.from(JSON.stringify(sealed)))).toThrow(expect.objectContaining({ code: 'CBT_REPO_MANIFEST_CORRUPT', details: expect.objectContaining({ reason: 'config malformed' }) }));
});
