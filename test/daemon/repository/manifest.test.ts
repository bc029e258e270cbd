import { canonicalJson, parseManifest, sealManifest, serializeManifest, MANIFEST_FORMAT, type Manifest } from '../../../daemon/repository/manifest';
import { formatBackupId, parseBackupId } from '../../../daemon/repository/backup-id';
import { ZERO_DIGEST } from '../../../daemon/repository/digest';

function sample(): Manifest {
  return sealManifest({
    format: MANIFEST_FORMAT,
    id: 'vm/100/2026-11-25T15_04_05Z',
    vmid: 100,
    time: '2026-11-25T15:04:05Z',
    parent: null,
    toolVersion: 'pve-cbt 0.1.0',
    extra: { job: 'j1' },
    disks: [
      {
        name: 'scsi0',
        format: 'qcow2',
        size: 3 * 131072,
        chunkSize: 131072,
        pageEntries: 16,
        pages: [ZERO_DIGEST],
        mode: 'full',
        reason: 'first backup',
        bitmap: { name: 'pve-cbt-1', generation: 1 },
        consistency: 'frozen',
        base: null,
        bytesRead: 0,
        bytesStored: 0,
        chunksStored: 0,
        pageBytesStored: 0,
        durationMs: 5,
      },
    ],
  });
}

describe('manifest', () => {
  it('canonical JSON sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }], u: undefined })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
  });

  it('round trips and checks its checksum', () => {
    const m = sample();
    expect(parseManifest(m.id, serializeManifest(m))).toEqual(m);
  });

  it.each<[string, (m: Manifest) => unknown]>([
    ['an edited field', (m) => ({ ...m, vmid: 101 })],
    ['an edited disk', (m) => ({ ...m, disks: [{ ...m.disks[0], size: 1 }] })],
    ['a missing checksum', (m) => ({ ...m, checksum: undefined })],
  ])('rejects %s', (_n, edit) => {
    const m = sample();
    expect(() => parseManifest(m.id, Buffer.from(JSON.stringify(edit(m))))).toThrow(expect.objectContaining({ code: 'CBT_REPO_MANIFEST_CORRUPT' }));
  });

  it('rejects truncation, another id and a page list that does not fit the geometry', () => {
    const m = sample();
    const bytes = serializeManifest(m);
    expect(() => parseManifest(m.id, bytes.subarray(0, bytes.length - 3))).toThrow(expect.objectContaining({ code: 'CBT_REPO_MANIFEST_CORRUPT' }));
    expect(() => parseManifest('vm/100/2026-11-25T15_04_06Z', bytes)).toThrow(expect.objectContaining({ code: 'CBT_REPO_MANIFEST_CORRUPT' }));
    const bad = sealManifest({ ...m, disks: [{ ...m.disks[0], pages: [ZERO_DIGEST, ZERO_DIGEST] }] });
    expect(() => parseManifest(m.id, serializeManifest(bad))).toThrow('longer than the 1 pages');
  });

  it('backup ids are file-system safe and parse back', () => {
    const t = new Date('2026-11-25T15:04:05.999Z');
    expect(formatBackupId(100, t)).toBe('vm/100/2026-11-25T15_04_05Z');
    expect(parseBackupId('vm/100/2026-11-25T15_04_05Z')).toEqual({ vmid: 100, time: new Date('2026-11-25T15:04:05Z') });
    for (const bad of ['vm/100/2026-11-25T15:04:05Z', '../etc/passwd', 'vm/0/2026-11-25T15_04_05Z', 'vm/100/2026-13-45T15_04_05Z']) {
      expect(() => parseBackupId(bad)).toThrow(expect.objectContaining({ code: 'CBT_REPO_BAD_BACKUP_ID' }));
    }
  });
});
