/**
 * GC's repack on an S3 repository (radosgw), through the storage methods (pack-repack.ts): sparse
 * packs (most blobs dead after a forget) are read with ranged GETs, their live blobs copied raw
 * into new packs staged locally and uploaded before their .idx, and the old packs deleted under the
 * same grace rule as dead ones. Every kept backup restores byte for byte and verifies clean before
 * and after; a second GC has nothing left to do; a backup running during the GC that dedups against
 * a sparse pack keeps it (touch rule) and restores too; nothing is left staged or set aside.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../daemon/repository/repository';
import { decodePackIndex } from '../../daemon/repository/pack-index-file';
import type { S3Storage } from '../../daemon/repository/s3-storage';
import { backupImage, seededBytes, sha256File, tempDir } from '../daemon/repository/repo-test-helpers';
import { allObjects, dropBucket, makeBucket, s3Env, storageOf } from './s3-test-env';

const env = s3Env();
const CHUNK = 64 * 1024;
const CHUNKS = 40;

interface Kept {
  id: string;
  sha: string;
}

let bucket: string;
let storage: S3Storage;
let tmp: string;
beforeEach(async () => {
  bucket = await makeBucket(env);
  tmp = tempDir();
  storage = storageOf(env, bucket, { cacheDir: path.join(tmp, 'cache') });
});
afterEach(async () => {
  await dropBucket(env, bucket);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** As test/daemon/repository/repack-fixture.ts, in the bucket: fulls of two VMs, incrementals rewriting 30 of 40 chunks, fulls forgotten. */
async function sparseRepo(): Promise<{ repo: Repository; kept: Kept[] }> {
  const repo = await Repository.open('x', { storage, create: true, chunkSize: CHUNK });
  const kept: Kept[] = [];
  for (const vmid of [100, 101]) {
    const img = path.join(tmp, `${vmid}.img`);
    const data = seededBytes(`s3-repack-${vmid}`, CHUNKS * CHUNK);
    fs.writeFileSync(img, data);
    const full = await backupImage(repo, img, { vmid });
    seededBytes(`s3-repack-${vmid}-inc`, 30 * CHUNK).copy(data, 5 * CHUNK);
    fs.writeFileSync(img, data);
    const dirty = Array.from({ length: 30 }, (_, i) => i + 5);
    const inc = await backupImage(repo, img, { vmid, parent: full.id, base: { backupId: full.id, disk: 'scsi0' }, dirty });
    await repo.removeBackup(full.id);
    kept.push({ id: inc.id, sha: sha256File(img) });
  }
  return { repo, kept };
}

/** Opened anew (a fresh storage and cache, as another process), every kept backup verifies and restores byte-exact. */
async function expectKept(kept: Kept[]): Promise<Repository> {
  const repo = await Repository.open('x', { storage: storageOf(env, bucket, { cacheDir: path.join(tmp, `cache-${crypto.randomBytes(3).toString('hex')}`) }) });
  const listed = (await repo.listBackups()).map((b) => b.id);
  for (const k of kept) expect(listed).toContain(k.id);
  const report = await repo.verify();
  expect(report.backups.filter((b) => !b.ok)).toEqual([]);
  for (const k of kept) {
    const out = path.join(tmp, 'restored.raw');
    await repo.restoreDisk(k.id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(k.sha);
    fs.rmSync(out);
  }
  return repo;
}

/** Pack objects in the bucket: ids with an .idx, .pack objects without one, .idx set aside by a GC. */
async function packObjects(): Promise<{ sealed: string[]; unsealed: string[]; aside: string[] }> {
  const names = (await allObjects(env, bucket)).map((o) => o.name).filter((n) => n.startsWith('repo/.packs/')).map((n) => n.slice(n.lastIndexOf('/') + 1));
  const sealed = names.filter((n) => /^[0-9a-f]{32}\.idx$/.test(n)).map((n) => n.slice(0, 32)).sort();
  const unsealed = names.filter((n) => /^[0-9a-f]{32}\.pack$/.test(n) && !sealed.includes(n.slice(0, 32)));
  return { sealed, unsealed, aside: names.filter((n) => n.includes('.idx.gc-')) };
}

async function packsHolding(digest: string): Promise<string[]> {
  const want = Buffer.from(digest, 'hex');
  const out: string[] = [];
  for (const id of (await packObjects()).sealed) {
    const idx = decodePackIndex((await storage.read(`.packs/${id.slice(0, 2)}/${id}.idx`))!);
    if ('corrupt' in idx) continue;
    for (let i = 0; i < idx.count; i++) if (idx.entries.subarray(i * 52, i * 52 + 32).equals(want)) out.push(id);
  }
  return out;
}

const stagedFiles = () => {
  const root = path.join(tmp, 'cache', 'staging');
  return fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }).filter((n) => String(n).endsWith('.pack')) : [];
};

test('repacks sparse packs through ranged GETs and uploads, removes dead ones, loses nothing; a second GC has nothing to do', async () => {
  const { repo, kept } = await sparseRepo();
  await expectKept(kept);
  const before = (await packObjects()).sealed;
  const report = await repo.gc({ graceMs: 0 });
  expect(report.repackCandidates!.length).toBeGreaterThanOrEqual(1);
  expect(report.packsRepacked).toBe(report.repackCandidates!.length);
  expect(report.packsWritten).toBeGreaterThanOrEqual(1);
  expect(report.blobsCopied).toBeGreaterThan(0);
  expect(report.bytesReclaimed).toBeGreaterThan(0);
  expect(report.repackRefused).toEqual([]);
  const after = await packObjects();
  expect(after.unsealed).toEqual([]);
  expect(after.aside).toEqual([]);
  expect(stagedFiles()).toEqual([]);
  expect(before.filter((id) => after.sealed.includes(id)).length).toBe(before.length - report.packsRepacked! - report.packsRemoved!);
  const again = await (await expectKept(kept)).gc({ graceMs: 0 });
  expect(again).toMatchObject({ packsRepacked: 0, packsRemoved: 0 });
  await expectKept(kept);
});

test('a backup running during the GC keeps the sparse pack it dedups against; both restore byte-exact', async () => {
  const { repo, kept } = await sparseRepo();
  // Chunks 5..34 of VM 100's forgotten full live only in its sparse packs; VM 102 writes exactly that data.
  const img = path.join(tmp, '102.img');
  const data = seededBytes('s3-repack-100', CHUNKS * CHUNK);
  fs.writeFileSync(img, data);
  const w = await repo.startBackup({ vmid: 102 });
  const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: data.length });
  for (let i = 0; i < CHUNKS; i++) await d.putChunk(i, data.subarray(i * CHUNK, (i + 1) * CHUNK));
  await d.finish({ mode: 'full', reason: 'test', bytesRead: data.length, durationMs: 1 });
  const reused = crypto.createHash('sha256').update(data.subarray(5 * CHUNK, 6 * CHUNK)).digest('hex');
  const holders = await packsHolding(reused);
  expect(holders.length).toBeGreaterThan(0);
  const gc = await repo.gc({ graceMs: 0 });
  const sealed = (await packObjects()).sealed;
  for (const id of holders) expect(sealed).toContain(id);
  for (const id of holders) expect(gc.repackCandidates).not.toContain(id);
  expect(gc.repackRefused).toEqual([]);
  const m = await w.commit();
  const all = [...kept, { id: m.id, sha: sha256File(img) }];
  await expectKept(all);
  // Once the writer is done, the next GC may repack them; nothing is lost either way.
  await repo.gc({ graceMs: 0 });
  await expectKept(all);
  expect((await packObjects()).aside).toEqual([]);
});
