import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { seededBytes, sha256File, tempDir } from './repo-test-helpers';
import { expectKeptRestore, packFiles, packsHolding, REPACK_CHUNK, sparsePackRepo } from './repack-fixture';
import { decodePackIndex } from '../../../daemon/repository/pack-index-file';

/**
 * GC's repack on a real format-2 repository: sparse packs (most of their blobs dead after a
 * forget) are copied into new packs and deleted, dead packs are deleted, and every kept backup
 * restores byte for byte and verifies; a second GC finds nothing more to do; a backup running
 * during the GC that relies on a blob of a sparse pack keeps it alive (per-pack touch rule).
 */
describe('gc repack (format 2)', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('repacks sparse packs, removes dead ones, loses nothing', async () => {
    const { repoDir, kept } = await sparsePackRepo(dir, 'plain');
    const before = packFiles(repoDir).sealed;
    const repo = await expectKeptRestore(repoDir, kept, dir);
    const report = await repo.gc({ graceMs: 0 });
    expect(report.packsRepacked).toBeGreaterThanOrEqual(1);
    expect(report.bytesReclaimed).toBeGreaterThan(0);
    expect(report.repackRefused).toEqual([]);
    const after = packFiles(repoDir);
    expect(after.unsealed).toEqual([]);
    expect(after.aside).toEqual([]);
    // Every old pack that was repacked or removed is gone; the new ones are dense.
    expect(before.filter((id) => after.sealed.includes(id)).length).toBe(before.length - report.packsRepacked! - report.packsRemoved!);
    await expectKeptRestore(repoDir, kept, dir);

    const again = await (await expectKeptRestore(repoDir, kept, dir)).gc({ graceMs: 0 });
    expect(again.packsRepacked).toBe(0);
    expect(again.packsRemoved).toBe(0);
    await expectKeptRestore(repoDir, kept, dir);
  });

  it('threshold 0 never repacks', async () => {
    const { repoDir, kept } = await sparsePackRepo(dir, 'off');
    const repo = await expectKeptRestore(repoDir, kept, dir);
    const report = await repo.gc({ graceMs: 0, repackThreshold: 0 });
    expect(report.packsRepacked).toBe(0);
    await expectKeptRestore(repoDir, kept, dir);
  });

  it('a backup running during the GC keeps the sparse pack it dedups against, and restores', async () => {
    const { repoDir, kept } = await sparsePackRepo(dir, 'concurrent');
    const repo = await expectKeptRestore(repoDir, kept, dir);
    // The dead chunks 5..34 of VM 100's first full live only in its (sparse) packs; a new backup
    // of VM 102 with exactly that data dedups against them, started before the GC, committed after.
    const img = path.join(dir, 'concurrent-102.img');
    fs.writeFileSync(img, seededBytes('concurrent-100', 40 * REPACK_CHUNK));
    const w = await repo.startBackup({ vmid: 102 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: 40 * REPACK_CHUNK });
    const data = fs.readFileSync(img);
    for (let i = 0; i < 40; i++) await d.putChunk(i, data.subarray(i * REPACK_CHUNK, (i + 1) * REPACK_CHUNK));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: data.length, durationMs: 1 });
    const reused = crypto.createHash('sha256').update(data.subarray(5 * REPACK_CHUNK, 6 * REPACK_CHUNK)).digest('hex');
    const holders = packsHolding(repoDir, reused);
    expect(holders.length).toBeGreaterThan(0);
    const gc = await repo.gc({ graceMs: 0 });
    // The writer relied on that pack (it touched its .idx): not repacked, not deleted.
    for (const id of holders) expect(packFiles(repoDir).sealed).toContain(id);
    for (const id of holders) expect(gc.repackCandidates).not.toContain(id);
    const m = await w.commit();
    expect(gc.repackRefused).toEqual([]);
    await expectKeptRestore(repoDir, [...kept, { id: m.id, disk: 'scsi0', sha: sha256File(img) }], dir);
    // And once the writer is done, the next GC may repack them (nothing is lost either way).
    await (await expectKeptRestore(repoDir, kept, dir)).gc({ graceMs: 0 });
    await expectKeptRestore(repoDir, [...kept, { id: m.id, disk: 'scsi0', sha: sha256File(img) }], dir);
  });

  it('a damaged live blob: its pack is kept and reported, the rest repacked', async () => {
    const { repoDir, kept } = await sparsePackRepo(dir, 'damaged');
    const repo = await expectKeptRestore(repoDir, kept, dir);
    // Flip a byte of the first live blob of one sparse pack: find a pack whose entries include a
    // chunk of the kept backup's image (chunk 0 is unchanged since the full).
    const { sealed } = packFiles(repoDir);
    const chunk0 = fs.readFileSync(path.join(dir, 'damaged-100.img')).subarray(0, REPACK_CHUNK);
    const digest = crypto.createHash('sha256').update(chunk0).digest();
    let victim: { id: string; offset: number } | null = null;
    for (const id of sealed) {
      const idx = decodePackIndex(fs.readFileSync(path.join(repoDir, '.packs', id.slice(0, 2), `${id}.idx`)));
      if ('corrupt' in idx) continue;
      for (let i = 0; i < idx.count; i++) {
        const o = i * 52;
        if (idx.entries.subarray(o, o + 32).equals(digest)) victim = { id, offset: Number(idx.entries.readBigUInt64LE(o + 32)) };
      }
    }
    expect(victim).not.toBeNull();
    const packFile = path.join(repoDir, '.packs', victim!.id.slice(0, 2), `${victim!.id}.pack`);
    const fd = fs.openSync(packFile, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, victim!.offset + 100);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, victim!.offset + 100);
    fs.closeSync(fd);
    const report = await repo.gc({ graceMs: 0 });
    expect(report.repackRefused!.map((r) => r.packId)).toEqual([victim!.id]);
    expect(fs.existsSync(packFile)).toBe(true);
    expect((await repo.verify()).ok).toBe(false);
  });
});
