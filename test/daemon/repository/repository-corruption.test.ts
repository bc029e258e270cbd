import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { Repository, type Manifest } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';
import { blobPlace, deleteBlob, flipBlobByte, readBlob, replaceBlob, truncateBlob } from './blob-files';

const CHUNK = 128 * 1024;
const SIZE = 40 * CHUNK + 4321;

function chunkDigest(data: Buffer, i: number): string {
  return crypto.createHash('sha256').update(data.subarray(i * CHUNK, Math.min((i + 1) * CHUNK, data.length))).digest('hex');
}

/**
 * Both formats: format 2 damages bytes inside packs (blobs found through the lookup), format 1 the
 * blob files; problems of format 2 also name the pack and the blob's offset in it.
 */
describe.each<1 | 2>([2, 1])('format %d: corruption is detected by verify and restore, never restored silently', (format) => {
  let dir: string;
  let repo: Repository;
  let img: string;
  let data: Buffer;

  beforeEach(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK, format });
    img = path.join(dir, 'disk.img');
    data = seededBytes('corrupt', SIZE);
    data.fill(0, 10 * CHUNK, 12 * CHUNK);
    fs.writeFileSync(img, data);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Format 2's extra fields of a problem with a blob that a pack index lists. */
  const inPack = async (kind: 'chunk' | 'page', digest: string): Promise<{ pack?: string; packOffset?: number }> => {
    if (format === 1) return {};
    const p = await blobPlace(repo, kind, digest);
    return { pack: p.packId as string, packOffset: p.offset };
  };

  async function expectRestoreFails(m: Manifest, offsets: number[]): Promise<void> {
    const out = path.join(dir, 'out.raw');
    await expect(repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' })).rejects.toMatchObject({
      code: 'CBT_REPO_RESTORE_FAILED',
      details: { backupId: m.id, disk: 'scsi0', offsets },
    });
    expect(fs.readdirSync(dir).filter((f) => f.includes('out.raw'))).toEqual([]);
  }

  it('a flipped byte in a chunk', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    const digest = chunkDigest(data, 7);
    await flipBlobByte(repo, 'chunk', digest, 100, 0x01);

    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(report.backups[0].problems).toEqual([
      { backupId: m.id, disk: 'scsi0', offset: 7 * CHUNK, kind: 'chunk', digest, problem: 'corrupt', ...(await inPack('chunk', digest)) },
    ]);
    expect((await repo.listBackups())[0].verifyState).toBe('failed');
    await expectRestoreFails(m, [7 * CHUNK]);

    const sink = new PassThrough();
    let streamed = 0;
    sink.on('data', (b: Buffer) => (streamed += b.length));
    await expect(repo.restoreDisk(m.id, 'scsi0', { stream: sink })).rejects.toMatchObject({ code: 'CBT_REPO_RESTORE_FAILED', details: { offsets: [7 * CHUNK] } });
    expect(streamed).toBe(7 * CHUNK);
  });

  it('a deleted chunk', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    const digest = chunkDigest(data, 40);
    await deleteBlob(repo, 'chunk', digest);
    const report = await repo.verify({ backupId: m.id });
    expect(report.backups[0].problems).toEqual([
      { backupId: m.id, disk: 'scsi0', offset: 40 * CHUNK, kind: 'chunk', digest, problem: 'missing' },
    ]);
    await expectRestoreFails(m, [40 * CHUNK]);
  });

  it('a truncated page', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    const firstPage = m.disks[0].pages[0].split('*')[0];
    await truncateBlob(repo, 'page', firstPage, 100);
    const report = await repo.verify();
    expect(report.backups[0].problems).toEqual([
      { backupId: m.id, disk: 'scsi0', offset: 0, kind: 'page', digest: firstPage, problem: 'corrupt', ...(await inPack('page', firstPage)) },
    ]);
    await expectRestoreFails(m, [0]);
  });

  it('a truncated manifest', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    const file = path.join(repo.dir, m.id, 'manifest.json');
    fs.truncateSync(file, fs.statSync(file).size - 10);
    expect(await repo.listBackups()).toEqual([]);
    const report = await repo.verify();
    expect(report.backups).toEqual([
      { id: m.id, ok: false, problems: [{ backupId: m.id, disk: null, offset: null, kind: 'manifest', digest: null, problem: 'corrupt' }] },
    ]);
    await expect(repo.restoreDisk(m.id, 'scsi0', { path: path.join(dir, 'out.raw'), format: 'raw' })).rejects.toMatchObject({
      code: 'CBT_REPO_MANIFEST_CORRUPT',
    });
    await expect(repo.gc({ graceMs: 0 })).rejects.toMatchObject({ code: 'CBT_REPO_GC_BLOCKED' });
  });

  it('the next backup re-sends the blocks behind bad chunks and repairs them', async () => {
    const m1 = await backupImage(repo, img, { vmid: 100 });
    const digest = chunkDigest(data, 5);
    await replaceBlob(repo, 'chunk', digest, Buffer.from('garbage'));
    await repo.verify();

    const w = await repo.startBackup({ vmid: 100, parent: m1.id });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: SIZE, base: { backupId: m1.id, disk: 'scsi0' } });
    expect(d.badBaseChunks()).toEqual([5]);
    await expect(d.finish({ mode: 'incremental', reason: 'test', bytesRead: 0, durationMs: 0 })).rejects.toMatchObject({ code: 'CBT_REPO_WRITER_STATE' });
    await w.abort();

    const m2 = await backupImage(repo, img, { vmid: 100, base: { backupId: m1.id, disk: 'scsi0' }, parent: m1.id, dirty: [] });
    expect(m2.disks[0].chunksStored).toBe(1);
    expect(fs.existsSync(path.join(repo.dir, '.bad', `chunk-${digest}`))).toBe(false);
    const report = await repo.verify();
    expect(report.ok).toBe(true);
    for (const m of [m1, m2]) {
      const out = path.join(dir, `${m.id.replace(/\//g, '_')}.raw`);
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(sha256File(img));
    }
  });

  const oldFormat = (file: string): void => {
    // Blobs written before the lz4 payload length was recorded have zeros there (not covered by the CRC).
    const b = fs.readFileSync(file);
    b.fill(0, 9, 12);
    fs.writeFileSync(file, b);
  };
  const half = (file: string): void => fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));

  // Format 1 only: a blob file truncated by a crash before the commit's sync. Format 2 cannot have
  // it (a pack's .idx is written after the pack's fsync; repository-kill.test.ts covers the crash).
  if (format === 1) test.each<[string, boolean, ((file: string) => void)[], number]>([
    ['raw chunk, truncated by a crash before the commit sync', false, [half], 1],
    ['lz4 chunk, truncated', true, [half], 1],
    ['lz4 chunk without a recorded length (older file), truncated', true, [oldFormat, half], 1],
    ['lz4 chunk without a recorded length (older file), complete: reused', true, [oldFormat], 0],
  ])('existing blob: %s -> chunks stored again: %d', async (_name, compressible, damage, storedAgain) => {
    if (compressible) data.fill('pve-cbt chunk ', 5 * CHUNK, 6 * CHUNK);
    fs.writeFileSync(img, data);
    const m1 = await backupImage(repo, img, { vmid: 100 });
    const { file } = await blobPlace(repo, 'chunk', chunkDigest(data, 5));
    expect(fs.readFileSync(file)[8]).toBe(compressible ? 1 : 0);
    for (const d of damage) d(file);
    const m2 = await backupImage(repo, img, { vmid: 101 });
    expect(m2.disks[0].chunksStored).toBe(storedAgain);
    for (const m of [m1, m2]) {
      const out = path.join(dir, `${m.id.replace(/\//g, '_')}.raw`);
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(sha256File(img));
    }
  });

  it('a base page that cannot be read forces its chunks to be re-sent', async () => {
    const m1 = await backupImage(repo, img, { vmid: 100 });
    const firstPage = m1.disks[0].pages[0].split('*')[0];
    await deleteBlob(repo, 'page', firstPage);
    const w = await repo.startBackup({ vmid: 100 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: SIZE, base: { backupId: m1.id, disk: 'scsi0' } });
    expect(d.badBaseChunks()).toEqual(Array.from({ length: m1.disks[0].pageEntries }, (_, i) => i));
    expect(d.baseDigest(0)).toBeNull();
    await w.abort();
    const m2 = await backupImage(repo, img, { vmid: 100, base: { backupId: m1.id, disk: 'scsi0' }, dirty: [] });
    const out = path.join(dir, 'm2.raw');
    await repo.restoreDisk(m2.id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(sha256File(img));
  });

  it('a base chunk found damaged in this run is never referenced at commit, and is marked for the next backup', async () => {
    data.copy(data, 4 * CHUNK, 3 * CHUNK, 4 * CHUNK); // chunks 3 and 4 share one stored copy
    fs.writeFileSync(img, data);
    const m1 = await backupImage(repo, img, { vmid: 100, chunkSize: CHUNK });
    const digest = chunkDigest(data, 3);
    await flipBlobByte(repo, 'chunk', digest, 100, 0xff); // same size: only reading it finds the damage

    const w = await repo.startBackup({ vmid: 100, parent: m1.id });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: SIZE, base: { backupId: m1.id, disk: 'scsi0' } });
    expect(d.badBaseChunks()).toEqual([]);
    expect(await d.readBaseChunk(3, Buffer.from(new SharedArrayBuffer(CHUNK)))).toBeNull();
    await d.putChunk(3, seededBytes('changed', CHUNK));
    await d.finish({ mode: 'incremental', reason: 'test', bytesRead: CHUNK, durationMs: 0 });
    // Chunk 4 still inherits the damaged copy from the base.
    await expect(w.commit()).rejects.toMatchObject({ code: 'CBT_REPO_DAMAGED_REFERENCE', details: { disk: 'scsi0', kind: 'chunk', digest } });
    await w.abort();
    expect(fs.existsSync(path.join(repo.dir, '.bad', `chunk-${digest}`))).toBe(true);

    // The next backup re-reads both chunks behind the marker, rewrites the copy and commits.
    const m2 = await backupImage(repo, img, { vmid: 100, base: { backupId: m1.id, disk: 'scsi0' }, parent: m1.id, dirty: [] });
    expect(fs.existsSync(path.join(repo.dir, '.bad', `chunk-${digest}`))).toBe(false);
    expect((await repo.verify()).ok).toBe(true);
    for (const m of [m1, m2]) {
      const out = path.join(dir, `${m.id.replace(/\//g, '_')}.raw`);
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(sha256File(img));
    }
  });

  it('any put of a chunk whose stored copy has flipped bytes (same size) rewrites that copy', async () => {
    const m1 = await backupImage(repo, img, { vmid: 100 });
    const digest = chunkDigest(data, 7);
    await flipBlobByte(repo, 'chunk', digest, 100, 0xff);
    expect((await readBlob(repo, 'chunk', digest)).length).toBeGreaterThan(CHUNK);
    // Another VM with the same data: its full finds the digest present.
    const m2 = await backupImage(repo, img, { vmid: 101 });
    expect(m2.disks[0].chunksStored).toBe(1);
    expect((await repo.verify()).ok).toBe(true);
    for (const m of [m1, m2]) {
      const out = path.join(dir, `${m.id.replace(/\//g, '_')}.raw`);
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(sha256File(img));
    }
  });

  it('restores to qcow2 and to a stream byte-exact', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    const q = path.join(dir, 'out.qcow2');
    await repo.restoreDisk(m.id, 'scsi0', { path: q, format: 'qcow2' });
    expect(execFileSync('qemu-img', ['info', '--output=json', q]).toString()).toContain('"format": "qcow2"');
    execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', q, img]);
    const back = path.join(dir, 'back.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', q, back]);
    // qcow2 sizes are whole 512-byte sectors: the odd tail is padded with zeros.
    const restored = fs.readFileSync(back);
    expect(restored.length).toBe(Math.ceil(SIZE / 512) * 512);
    expect(restored.subarray(0, SIZE).equals(data)).toBe(true);
    expect(restored.subarray(SIZE).every((b) => b === 0)).toBe(true);

    const sink = new PassThrough();
    const hash = crypto.createHash('sha256');
    sink.on('data', (b: Buffer) => hash.update(b));
    const progress: number[] = [];
    const r = await repo.restoreDisk(m.id, 'scsi0', { stream: sink }, { onProgress: (done) => progress.push(done) });
    expect(r.bytes).toBe(SIZE);
    expect(hash.digest('hex')).toBe(sha256File(img));
    expect(progress[progress.length - 1]).toBe(SIZE);
  });
});

/**
 * Format 2 restores read runs of adjacent blobs of a pack with one read each (restore-batch.ts); a
 * run that comes back short is read again blob by blob, so exactly the blobs the cut reached are
 * reported, and none of the others.
 */
describe('format 2: a pack cut short in the middle of a blob', () => {
  it('restore names the chunks from the cut to the end of that pack, and only those', async () => {
    const dir = tempDir();
    try {
      const repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK, format: 2 });
      const img = path.join(dir, 'disk.img');
      const data = seededBytes('cut-pack', SIZE);
      fs.writeFileSync(img, data);
      await backupImage(repo, img, { vmid: 100 });
      // A second full with every 8th chunk changed: each of its index pages is new (in a pack of
      // its own), its other chunks are the first backup's. The cut then reaches chunks only.
      for (let i = 0; i * CHUNK < SIZE; i += 8) data.fill(7, i * CHUNK, Math.min((i + 1) * CHUNK, SIZE));
      fs.writeFileSync(img, data);
      const m = await backupImage(repo, img, { vmid: 100 });
      const places = await Promise.all(Array.from({ length: Math.ceil(SIZE / CHUNK) }, async (_, i) => ({ i, p: await blobPlace(repo, 'chunk', chunkDigest(data, i)) })));
      const cut = places[20].p;
      fs.truncateSync(cut.file, cut.offset + 100);
      for (const page of m.disks[0].pages) expect((await blobPlace(repo, 'page', page.split('*')[0])).file).not.toBe(cut.file);
      const lost = places.filter(({ p }) => p.file === cut.file && p.offset >= cut.offset).map(({ i }) => i * CHUNK);
      // The cut is inside a run, with good blobs of the same pack before it.
      expect(lost).toContain(20 * CHUNK);
      expect(places.some(({ p }) => p.file === cut.file && p.offset < cut.offset)).toBe(true);
      const out = path.join(dir, 'out.raw');
      await expect(repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' })).rejects.toMatchObject({
        code: 'CBT_REPO_RESTORE_FAILED',
        details: { backupId: m.id, disk: 'scsi0', offsets: lost.sort((a, b) => a - b) },
      });
      expect(fs.readdirSync(dir).filter((f) => f.includes('out.raw'))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
