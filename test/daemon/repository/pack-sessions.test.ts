/**
 * Pack sessions (pack-store.ts, pack-format.ts): packs sealed mid-backup at the seal size, the
 * .idx written only after the pack, abort deleting what is unsealed, and what a writer that never
 * committed (killed) leaves: sealed packs another writer may trust (their .idx came after the
 * fsync), unsealed packs nobody reads. Every backup is restored and compared byte for byte.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { PackStore } from '../../../daemon/repository/pack-store';
import { PACKS_DIR, isPackHeader } from '../../../daemon/repository/pack-format';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';
import { countBlobs } from './blob-files';

const CHUNK = 64 * 1024;
const CHUNKS = 64;

function packFiles(repoDir: string, ext: string): string[] {
  const root = path.join(repoDir, PACKS_DIR);
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).flatMap((s) => fs.readdirSync(path.join(root, s)).filter((f) => f.endsWith(ext)).map((f) => path.join(root, s, f)));
}

const ids = (files: string[]): string[] => files.map((f) => path.basename(f).slice(0, 32)).sort();

describe('pack sessions', () => {
  let dir: string;
  let repo: Repository;
  let img: string;
  let data: Buffer;

  beforeEach(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true });
    // Seal after ~4 chunks, so one backup makes many packs.
    (repo.blobs as PackStore).sealBytes = 4 * CHUNK;
    img = path.join(dir, 'disk.img');
    data = seededBytes('sessions', CHUNKS * CHUNK);
    fs.writeFileSync(img, data);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function restoresExactly(r: Repository, id: string): Promise<void> {
    const out = path.join(dir, 'out.raw');
    await r.restoreDisk(id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(sha256File(img));
    fs.rmSync(out);
  }

  it('seals packs as they fill; every pack has its .idx and header once committed; a new reader finds every blob', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    expect(m.disks[0].chunksStored).toBe(CHUNKS);
    const packs = packFiles(repo.dir, '.pack');
    expect(packs.length).toBeGreaterThanOrEqual(CHUNKS / 5);
    expect(ids(packs)).toEqual(ids(packFiles(repo.dir, '.idx')));
    for (const p of packs) expect(isPackHeader(fs.readFileSync(p).subarray(0, 16))).toBe(true);
    const fresh = await Repository.open(repo.dir);
    expect(await countBlobs(fresh, 'chunk')).toBe(CHUNKS);
    expect((await fresh.verify()).ok).toBe(true);
    await restoresExactly(fresh, m.id);
  });

  it('one batch of chunks (one worker trip): packs sealed inside the batch, duplicates and zero chunks in it, restored exactly', async () => {
    // Chunks 8..15 repeat 0..7 and chunks 20..23 are zero: in-batch dedup and zero chunks.
    for (let i = 8; i < 16; i++) data.copy(data, i * CHUNK, (i - 8) * CHUNK, (i - 7) * CHUNK);
    data.fill(0, 20 * CHUNK, 24 * CHUNK);
    fs.writeFileSync(img, data);
    const w = await repo.startBackup({ vmid: 100 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: data.length });
    const half = CHUNKS / 2;
    const batch = (from: number, to: number): { index: number; data: Buffer }[] =>
      Array.from({ length: to - from }, (_, k) => ({ index: from + k, data: data.subarray((from + k) * CHUNK, (from + k + 1) * CHUNK) }));
    const rs = [...(await d.putChunks(batch(0, half))), ...(await d.putChunks(batch(half, CHUNKS)))];
    expect(rs.filter((r) => r.zero)).toHaveLength(4);
    expect(rs.filter((r) => r.stored)).toHaveLength(CHUNKS - 8 - 4);
    for (let i = 8; i < 16; i++) expect(rs[i].digest).toBe(rs[i - 8].digest);
    await d.finish({ mode: 'full', reason: 'test', bytesRead: data.length, durationMs: 0 });
    const m = await w.commit();
    expect(m.disks[0].chunksStored).toBe(CHUNKS - 12);
    expect(ids(packFiles(repo.dir, '.pack'))).toEqual(ids(packFiles(repo.dir, '.idx')));
    expect(packFiles(repo.dir, '.pack').length).toBeGreaterThanOrEqual(8);
    const fresh = await Repository.open(repo.dir);
    expect((await fresh.verify()).ok).toBe(true);
    await restoresExactly(fresh, m.id);
  });

  it('abort deletes the unsealed packs and keeps the sealed ones for GC', async () => {
    const w = await repo.startBackup({ vmid: 100 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: data.length });
    for (let i = 0; i < 10; i++) await d.putChunk(i, data.subarray(i * CHUNK, (i + 1) * CHUNK));
    expect(packFiles(repo.dir, '.pack').length).toBeGreaterThan(packFiles(repo.dir, '.idx').length);
    await w.abort();
    const sealed = ids(packFiles(repo.dir, '.idx'));
    expect(sealed.length).toBeGreaterThanOrEqual(1);
    expect(ids(packFiles(repo.dir, '.pack'))).toEqual(sealed);
    expect((await repo.gc({ graceMs: 0 })).packsRemoved).toBe(sealed.length);
    expect(packFiles(repo.dir, '.pack')).toEqual([]);
  });

  it('a writer that never commits (killed) leaves sealed packs later backups may use and unsealed ones nobody trusts', async () => {
    // A writer's session through the blob-store API, as a backup writer drives it.
    const session = repo.blobs.openSession();
    for (let i = 0; i < 10; i++) {
      const r = await repo.blobs.chunks.putChunk(data.subarray(i * CHUNK, (i + 1) * CHUNK), { base: null, forced: () => false, session });
      expect(r.outcome).toBe('stored');
    }
    await (session as import('../../../daemon/repository/pack-store').PackSession).settled();
    const sealedBlobs = await countBlobs(await Repository.open(repo.dir), 'chunk');
    expect(sealedBlobs).toBeGreaterThanOrEqual(4);
    expect(sealedBlobs).toBeLessThan(10);
    expect(packFiles(repo.dir, '.pack').length).toBe(packFiles(repo.dir, '.idx').length + 1);
    // As after kill -9: nothing more happens to that session; another process backs up the data.
    const other = await Repository.open(repo.dir);
    (other.blobs as PackStore).sealBytes = 4 * CHUNK;
    const m = await backupImage(other, img, { vmid: 101 });
    // What the sealed packs held is reused; the blobs of the unsealed pack are stored again.
    expect(m.disks[0].chunksStored).toBe(CHUNKS - sealedBlobs);
    expect((await other.verify()).ok).toBe(true);
    await restoresExactly(other, m.id);
    // GC (the writer is gone) removes the unsealed pack once older than the cutoff.
    expect((await other.gc({ graceMs: 0 })).tempFilesRemoved).toBe(1);
    expect(ids(packFiles(repo.dir, '.pack'))).toEqual(ids(packFiles(repo.dir, '.idx')));
    expect((await other.verify()).ok).toBe(true);
    await restoresExactly(other, m.id);
  });

  it('a reader whose lookup names a pack that moved (a repack elsewhere) refreshes and reads it from its new pack', async () => {
    const m = await backupImage(repo, img, { vmid: 100 });
    const reader = await Repository.open(repo.dir);
    await restoresExactly(reader, m.id); // its lookup is loaded now
    // Every pack copied under a new id (same bytes, same .idx), then the old ones removed.
    for (const idx of packFiles(repo.dir, '.idx')) {
      const id = path.basename(idx, '.idx');
      const moved = `${id.slice(0, 2)}${'f'.repeat(8)}${id.slice(10)}`;
      fs.copyFileSync(path.join(path.dirname(idx), `${id}.pack`), path.join(path.dirname(idx), `${moved}.pack`));
      fs.copyFileSync(idx, path.join(path.dirname(idx), `${moved}.idx`));
      fs.rmSync(idx);
      fs.rmSync(path.join(path.dirname(idx), `${id}.pack`));
    }
    await restoresExactly(reader, m.id);
    expect((await reader.verify()).ok).toBe(true);
  });

  it('identical chunks in flight at once are appended at most once per worker, never once per chunk', async () => {
    (repo.blobs as PackStore).sealBytes = 64 * 1024 * 1024;
    const same = seededBytes('same', CHUNK);
    const w = await repo.startBackup({ vmid: 100 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: 32 * CHUNK });
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => d.putChunk(i, same)));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: 32 * CHUNK, durationMs: 1 });
    const m = await w.commit();
    // Several workers may each append one copy before any learns of the other's; never more.
    const stored = results.filter((r) => r.stored).length;
    expect(stored).toBeGreaterThanOrEqual(1);
    const workers = Math.max(1, (await import('node:os')).availableParallelism());
    const packBytes = packFiles(repo.dir, '.pack').reduce((n, f) => n + fs.statSync(f).size, 0);
    expect(packBytes).toBeLessThanOrEqual(workers * (16 + CHUNK + 20) + 64 * 1024);
    fs.writeFileSync(img, Buffer.concat(Array.from({ length: 32 }, () => same)));
    await restoresExactly(repo, m.id);
    expect((await repo.verify()).ok).toBe(true);
  });
});
