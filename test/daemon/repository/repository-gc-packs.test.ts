/**
 * Format 2's GC (garbage-collect.ts, repack-plan.ts): whole packs are removed when none of their
 * entries is live and their .idx is older than the cutoff; a writer relying on a blob of a pack
 * keeps the pack (its .idx touched); unsealed packs (a killed writer) go once old; an unreadable
 * .idx blocks the sweep and is reported by verify. Every kept backup restores byte for byte.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { PackStore } from '../../../daemon/repository/pack-store';
import { PACKS_DIR } from '../../../daemon/repository/pack-format';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';
import { blobPlace, countBlobs } from './blob-files';
import { sha256Hex } from '../../../daemon/repository/digest';

const CHUNK = 64 * 1024;
const SIZE = 24 * CHUNK;

function packFiles(repoDir: string, ext: string): string[] {
  const root = path.join(repoDir, PACKS_DIR);
  return fs.readdirSync(root).flatMap((s) => fs.readdirSync(path.join(root, s)).filter((f) => f.endsWith(ext)).map((f) => path.join(root, s, f)));
}

function ageIndexes(repoDir: string, ms: number): void {
  const t = new Date(Date.now() - ms);
  for (const f of [...packFiles(repoDir, '.idx'), ...packFiles(repoDir, '.pack')]) fs.utimesSync(f, t, t);
}

describe('garbage collection (format 2)', () => {
  let dir: string;
  let repo: Repository;

  beforeEach(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK });
    expect(repo.format).toBe(2);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function restoresExactly(id: string, img: string): Promise<void> {
    const out = path.join(dir, 'check.raw');
    await repo.restoreDisk(id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(sha256File(img));
    fs.rmSync(out);
  }

  function image(name: string, seed: string): string {
    const img = path.join(dir, name);
    fs.writeFileSync(img, seededBytes(seed, SIZE));
    return img;
  }

  it('removes the packs of a removed backup only once their .idx is older than the grace period', async () => {
    const imgA = image('a.img', 'gc-a');
    const imgB = image('b.img', 'gc-b');
    const a = await backupImage(repo, imgA, { vmid: 100 });
    const b = await backupImage(repo, imgB, { vmid: 101 });
    const packsBefore = packFiles(repo.dir, '.idx').length;
    expect(await countBlobs(repo, 'chunk')).toBe(2 * (SIZE / CHUNK));

    expect((await repo.gc({ graceMs: 0 })).packsRemoved).toBe(0);
    await repo.removeBackup(a.id);
    ageIndexes(repo.dir, 10 * 60_000);
    expect(await repo.gc({ graceMs: 60 * 60_000 })).toMatchObject({ packsRemoved: 0, chunksRemoved: 0 });

    const old = await repo.gc({ graceMs: 60_000 });
    expect(old.chunksRemoved).toBe(SIZE / CHUNK);
    expect(old.pagesRemoved).toBeGreaterThanOrEqual(1);
    expect(old.packsRemoved).toBeGreaterThanOrEqual(1);
    expect(old.chunkBytesRemoved).toBeGreaterThan(SIZE);
    expect(packFiles(repo.dir, '.idx').length).toBe(packsBefore - (old.packsRemoved ?? 0));
    expect(packFiles(repo.dir, '.pack').length).toBe(packFiles(repo.dir, '.idx').length);
    expect(await countBlobs(repo, 'chunk')).toBe(SIZE / CHUNK);
    expect((await repo.verify()).ok).toBe(true);
    await restoresExactly(b.id, imgB);
  });

  it('keeps a pack a running writer relies on (its .idx touched), and what the writer sealed', async () => {
    const img = image('a.img', 'gc-touch');
    const data = fs.readFileSync(img);
    const a = await backupImage(repo, img, { vmid: 100 });
    await repo.removeBackup(a.id);
    ageIndexes(repo.dir, 60 * 60_000);

    const w = await repo.startBackup({ vmid: 200 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: SIZE });
    const first = await d.putChunk(0, data.subarray(0, CHUNK));
    expect(first).toMatchObject({ stored: false, unchanged: false, zero: false });
    const fresh = Buffer.alloc(CHUNK, 7);
    expect((await d.putChunk(1, fresh)).stored).toBe(true);

    const relied = await blobPlace(repo, 'chunk', sha256Hex(data.subarray(0, CHUNK)));
    const r = await repo.gc({ graceMs: 0 });
    expect(r.partialsRemoved).toEqual([]);
    // The pack of chunk 0 is kept (touched); A's other packs, if any, had nothing live.
    expect(fs.existsSync(relied.file)).toBe(true);
    expect((await repo.blobs.chunks.locate(sha256Hex(data.subarray(0, CHUNK))))?.pack).toBe(relied.packId);

    for (let i = 2; i < d.chunkCount; i++) await d.putChunk(i, data.subarray(i * CHUNK, (i + 1) * CHUNK));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: SIZE, durationMs: 1 });
    const m = await w.commit();
    expect((await repo.verify()).ok).toBe(true);
    fresh.copy(data, CHUNK);
    fs.writeFileSync(img, data);
    await restoresExactly(m.id, img);
  });

  it('a pack removed by GC behind a writer’s lookup is stored anew, not referenced', async () => {
    const img = image('a.img', 'gc-gone');
    const a = await backupImage(repo, img, { vmid: 100 });
    await repo.removeBackup(a.id);
    ageIndexes(repo.dir, 60 * 60_000);
    // Another process's GC: this repository object's lookup still lists the packs.
    const other = await Repository.open(repo.dir);
    expect((await other.gc({ graceMs: 60_000 })).chunksRemoved).toBe(SIZE / CHUNK);
    const m = await backupImage(repo, img, { vmid: 101 });
    expect(m.disks[0].chunksStored).toBe(SIZE / CHUNK);
    expect((await repo.verify()).ok).toBe(true);
    await restoresExactly(m.id, img);
  });

  it('removes unsealed packs once old, keeps young ones, and refuses to sweep past an unreadable .idx', async () => {
    const img = image('a.img', 'gc-unsealed');
    const a = await backupImage(repo, img, { vmid: 100 });
    const shard = path.join(repo.dir, PACKS_DIR, 'ab');
    fs.mkdirSync(shard, { recursive: true });
    const oldPack = path.join(shard, `ab${'0'.repeat(30)}.pack`);
    const youngPack = path.join(shard, `ab${'1'.repeat(30)}.pack`);
    fs.writeFileSync(oldPack, 'a killed writer');
    fs.writeFileSync(youngPack, 'a live writer');
    const t = new Date(Date.now() - 3_600_000);
    fs.utimesSync(oldPack, t, t);
    const r = await repo.gc({ graceMs: 60_000 });
    expect(r.tempFilesRemoved).toBe(1);
    expect(fs.existsSync(oldPack)).toBe(false);
    expect(fs.existsSync(youngPack)).toBe(true);

    const idx = packFiles(repo.dir, '.idx')[0];
    const bytes = fs.readFileSync(idx);
    bytes[20] ^= 0xff;
    fs.writeFileSync(idx, bytes);
    const packId = path.basename(idx, '.idx');
    const fresh = await Repository.open(repo.dir);
    await expect(fresh.gc({ graceMs: 0 })).rejects.toMatchObject({ code: 'CBT_REPO_GC_BLOCKED_PACK_INDEX', details: { packs: [{ packId, reason: 'checksum mismatch' }] } });
    const report = await fresh.verify();
    expect(report.ok).toBe(false);
    expect(report.packProblems).toEqual([{ pack: packId, problem: 'index corrupt', reason: 'checksum mismatch' }]);
    expect(report.backups.find((b) => b.id === a.id)?.ok).toBe(false);
    expect(fresh.blobs).toBeInstanceOf(PackStore);
  });
});
