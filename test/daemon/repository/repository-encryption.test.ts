import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { Repository, REPOSITORY_MARKER } from '../../../daemon/repository/repository';
import { BackupDiskReader } from '../../../daemon/repository/backup-reader';
import { deriveKeys, generateMasterKey } from '../../../daemon/repository/key-file';
import { canonicalJson, manifestChecksum, type Manifest } from '../../../daemon/repository/manifest';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';
import { blobPlace, readBlob, writeBlobInPlace } from './blob-files';
import { PackStore } from '../../../daemon/repository/pack-store';

const CHUNK = 64 * 1024;
/** A text that must never appear in a stored blob of an encrypted repository. */
const PATTERN = Buffer.from('PVE-CBT-PLAINTEXT-PATTERN-0123456789 ');

function patterned(size: number, seed: string): Buffer {
  const b = seededBytes(seed, size);
  // Every other chunk is the pattern repeated (compressible: it takes the lz4 + cipher path).
  for (let o = 0; o < size; o += 2 * CHUNK) Buffer.from(PATTERN.toString().repeat(Math.ceil(CHUNK / PATTERN.length))).copy(b, o, 0, Math.min(CHUNK, size - o));
  return b;
}

function allFiles(dir: string): string[] {
  const out: string[] = [];
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...allFiles(p));
    else out.push(p);
  }
  return out;
}

/** Writes a manifest as an attacker with write access but no key would: valid JSON, fresh checksum. */
function rewriteManifest(repoDir: string, id: string, edit: (m: Manifest) => Manifest): void {
  const file = path.join(repoDir, id, 'manifest.json');
  const m = edit(JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest);
  const { checksum: _c, ...rest } = m;
  fs.writeFileSync(file, JSON.stringify({ ...rest, checksum: manifestChecksum(rest) }));
}

/** Every stored blob's bytes: format 1 its files, format 2 each pack index entry's bytes. */
async function storedBlobs(repo: Repository): Promise<Buffer[]> {
  if (!(repo.blobs instanceof PackStore)) return [...allFiles(path.join(repo.dir, '.chunks')), ...allFiles(path.join(repo.dir, '.pages'))].map((f) => fs.readFileSync(f));
  const lookup = repo.blobs.lookup;
  await lookup.refresh();
  const out: Buffer[] = [];
  for (const id of lookup.packIds()) for (const e of lookup.packEntries(id)) out.push(await readBlob(repo, e.kind, e.digest.toString('hex')));
  return out;
}

describe.each([[2], [1]] as const)('encrypted repository, format %i', (format) => {
  let dir: string;
  let repoDir: string;
  const keys = deriveKeys(generateMasterKey());
  let repo: Repository;

  beforeAll(async () => {
    dir = tempDir();
    repoDir = path.join(dir, 'repo');
    repo = await Repository.open(repoDir, { create: true, chunkSize: CHUNK, keys, format });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('records the key fingerprint in the marker', () => {
    const marker = JSON.parse(fs.readFileSync(path.join(repoDir, REPOSITORY_MARKER), 'utf8')) as { encryption: unknown };
    expect(marker.encryption).toEqual({ cipher: 'aes-256-gcm', keyFingerprint: keys.fingerprint });
    expect(repo.encryption?.keyFingerprint).toBe(keys.fingerprint);
  });

  it('a full and an incremental restore byte-exact; no stored blob holds plaintext or a SHA-256 name', async () => {
    const size = 40 * CHUNK + 4321;
    const img = path.join(dir, 'a.img');
    const data = patterned(size, 'enc-a');
    fs.writeFileSync(img, data);
    const full = await backupImage(repo, img, { vmid: 101 });
    const fullSha = sha256File(img);
    expect(full.auth).toMatch(/^[0-9a-f]{64}$/);

    // Change 3 chunks (one of them a pattern chunk) and back up only those.
    for (const i of [2, 7, 20]) seededBytes(`enc-change-${i}`, 1000).copy(data, i * CHUNK + 17);
    fs.writeFileSync(img, data);
    const inc = await backupImage(repo, img, { vmid: 101, base: { backupId: full.id, disk: 'scsi0' }, parent: full.id, dirty: [2, 7, 20] });
    expect(inc.disks[0].chunksStored).toBe(3);

    for (const [m, want] of [[full, fullSha], [inc, sha256File(img)]] as const) {
      const out = path.join(dir, 'a.restored');
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(want);
      fs.rmSync(out);
    }

    const blobs = await storedBlobs(repo);
    expect(blobs.length).toBeGreaterThan(20);
    for (const stored of blobs) expect(stored[8] & 0x80).toBe(0x80);
    // No file of the repository (blob files, packs, pack indexes) holds the plaintext.
    const probe = PATTERN.subarray(0, 16);
    for (const f of ['.chunks', '.pages', '.packs'].flatMap((d) => allFiles(path.join(repoDir, d)))) expect(fs.readFileSync(f).includes(probe)).toBe(false);
    // Names are keyed digests: the SHA-256 of a chunk's content names no blob.
    const firstChunk = data.subarray(0, CHUNK);
    await expect(blobPlace(repo, 'chunk', crypto.createHash('sha256').update(firstChunk).digest('hex'))).rejects.toThrow();
    await expect(blobPlace(repo, 'chunk', crypto.createHmac('sha256', keys.id).update(firstChunk).digest('hex'))).resolves.toBeDefined();

    const report = await repo.verify();
    expect(report.ok).toBe(true);
    expect(report.chunksChecked).toBeGreaterThan(20);

    // The NBD server's reader (pve-cbt serve) decrypts with the key and refuses without it.
    const reader = await BackupDiskReader.open(repoDir, inc.id, 'scsi0', keys);
    try {
      const served = Buffer.concat(await Promise.all(Array.from({ length: reader.geometry.chunkCount }, (_, i) => (reader.isZeroChunk(i) ? Promise.resolve(Buffer.alloc(reader.chunkLength(i))) : reader.readChunk(i)))));
      expect(served.equals(data)).toBe(true);
    } finally {
      await reader.close();
    }
    await expect(BackupDiskReader.open(repoDir, inc.id, 'scsi0')).rejects.toMatchObject({ code: 'CBT_REPO_KEY_MISSING' });
  });

  it('refuses to open without the key, with another key, and a plain repository with a key', async () => {
    await expect(Repository.open(repoDir)).rejects.toMatchObject({ code: 'CBT_REPO_KEY_MISSING', details: { keyFingerprint: keys.fingerprint } });
    const other = deriveKeys(generateMasterKey());
    await expect(Repository.open(repoDir, { keys: other })).rejects.toMatchObject({ code: 'CBT_REPO_KEY_WRONG', details: { keyFingerprint: keys.fingerprint, givenFingerprint: other.fingerprint } });
    const plain = path.join(dir, 'plain');
    await Repository.open(plain, { create: true });
    await expect(Repository.open(plain, { keys })).rejects.toMatchObject({ code: 'CBT_REPO_NOT_ENCRYPTED' });
  });

  it('refuses a manifest edited with a recomputed checksum (today an unencrypted repository restores it)', async () => {
    const one = path.join(dir, 'one.img');
    const two = path.join(dir, 'two.img');
    fs.writeFileSync(one, seededBytes('one', 8 * CHUNK));
    fs.writeFileSync(two, seededBytes('two', 8 * CHUNK));
    const a = await backupImage(repo, one, { vmid: 102 });
    const b = await backupImage(repo, two, { vmid: 103 });
    // Backup a's manifest made to point at b's data, checksum recomputed.
    rewriteManifest(repoDir, a.id, (m) => ({ ...m, disks: [{ ...m.disks[0], pages: b.disks[0].pages }] }));
    await expect(repo.readManifest(a.id)).rejects.toMatchObject({ code: 'CBT_REPO_MANIFEST_AUTH_FAILED', details: { backupId: a.id } });
    await expect(repo.restoreDisk(a.id, 'scsi0', { path: path.join(dir, 'never.raw'), format: 'raw' })).rejects.toMatchObject({ code: 'CBT_REPO_MANIFEST_AUTH_FAILED' });
    expect(fs.existsSync(path.join(dir, 'never.raw'))).toBe(false);
    const v = await repo.verify({ backupId: a.id });
    expect(v.ok).toBe(false);
    expect(v.backups[0].problems[0]).toMatchObject({ kind: 'manifest', problem: 'corrupt' });
    // GC refuses to sweep past a manifest it cannot authenticate.
    await expect(repo.gc()).rejects.toMatchObject({ code: 'CBT_REPO_GC_BLOCKED' });
    // The same edit with `auth` dropped altogether.
    rewriteManifest(repoDir, a.id, (m) => {
      const { auth: _a, ...rest } = m;
      return rest as Manifest;
    });
    await expect(repo.readManifest(a.id)).rejects.toMatchObject({ code: 'CBT_REPO_MANIFEST_AUTH_FAILED' });
    // Not listed as a backup either.
    expect((await repo.listBackups(102)).map((x) => x.id)).toEqual([]);
    await repo.removeBackup(a.id);
    expect((await repo.listBackups(103)).map((x) => x.id)).toEqual([b.id]);
    expect(canonicalJson(await repo.readManifest(b.id))).toBe(canonicalJson(b));
  });

  it("keeps the VM's config in the manifest encrypted and gives it back to readers with the key", async () => {
    const img = path.join(dir, 'conf.img');
    fs.writeFileSync(img, seededBytes('conf', 2 * CHUNK));
    const config = { conf: 'name: secret-db\ncipassword: $6$SECRETHASH\nscsi0: local:vm-105-disk-0,size=128K\n', firewall: '[OPTIONS]\nenable: 1\n' };
    const w = await repo.startBackup({ vmid: 105 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: 2 * CHUNK });
    await d.putChunk(0, fs.readFileSync(img).subarray(0, CHUNK));
    await d.putChunk(1, fs.readFileSync(img).subarray(CHUNK));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: 2 * CHUNK, durationMs: 1 });
    const committed = await w.commit({}, config);
    expect(committed.config).toEqual(config);
    const onDisk = fs.readFileSync(path.join(repoDir, committed.id, 'manifest.json'), 'utf8');
    expect(onDisk).not.toContain('SECRETHASH');
    expect(onDisk).not.toContain('secret-db');
    expect(JSON.parse(onDisk)).toMatchObject({ configSealed: expect.any(String) });
    expect((await repo.readManifest(committed.id)).config).toEqual(config);
    expect(await repo.readManifest(committed.id)).toEqual(committed);
    await repo.removeBackup(committed.id);
  });

  const tampers: [string, (stored: Buffer) => Buffer][] = [
    ['a ciphertext byte flipped, CRC recomputed', (s) => {
      const t = Buffer.from(s);
      t[40] ^= 1;
      t.writeUInt32LE(zlib.crc32(t.subarray(20)), 12);
      return t;
    }],
    ['the header\'s plain length edited, CRC recomputed', (s) => {
      const t = Buffer.from(s);
      t.writeUInt32LE(t.readUInt32LE(16) - 1, 16);
      return t;
    }],
    ['the encrypted flag cleared (payload read as raw)', (s) => {
      const t = Buffer.from(s);
      t[8] &= 0x7f;
      return t;
    }],
  ];

  it.each(tampers)('a chunk with %s is refused on restore and by verify, never returned', async (_name, tamper) => {
    const img = path.join(dir, 'tamper.img');
    fs.writeFileSync(img, seededBytes(`tamper-${_name}`, 4 * CHUNK));
    const m = await backupImage(repo, img, { vmid: 104 });
    const digest = crypto.createHmac('sha256', keys.id).update(fs.readFileSync(img).subarray(CHUNK, 2 * CHUNK)).digest('hex');
    await writeBlobInPlace(repo, 'chunk', digest, tamper(await readBlob(repo, 'chunk', digest)));
    await expect(repo.restoreDisk(m.id, 'scsi0', { path: path.join(dir, 'tamper.raw'), format: 'raw' })).rejects.toMatchObject({
      code: 'CBT_REPO_RESTORE_FAILED',
      details: { offsets: [CHUNK] },
    });
    const v = await repo.verify({ backupId: m.id });
    expect(v.backups[0].problems).toEqual([expect.objectContaining({ kind: 'chunk', offset: CHUNK, digest, problem: 'corrupt' })]);
    await repo.removeBackup(m.id);
  });
});
