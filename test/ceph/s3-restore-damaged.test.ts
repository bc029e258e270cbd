/**
 * A restore from an S3 repository (remote-restore.ts) whose pack objects were damaged in the
 * bucket: a flipped byte in one blob is reported by verify and restore (that chunk's offset, no
 * output left), the next backup re-sends it, and then both backups restore byte-exact — the first
 * through the retry of a chunk bad at its first location; a pack object gone makes the restore
 * name exactly the chunks that were in it. 96 chunks of 64 KiB: two restore batches side by side,
 * the damage in the middle of a run fetched with one GET whose other blobs restore.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../daemon/repository/repository';
import { PackStore } from '../../daemon/repository/pack-store';
import { packKeyOf } from '../../daemon/repository/pack-format';
import { backupImage, seededBytes, sha256File, tempDir } from '../daemon/repository/repo-test-helpers';
import { adminClient, dropBucket, flipObjectByte, makeBucket, s3Env, storageOf } from './s3-test-env';

const env = s3Env();
const CHUNK = 64 * 1024;
const CHUNKS = 96;

function digestOf(data: Buffer, i: number): string {
  return crypto.createHash('sha256').update(data.subarray(i * CHUNK, (i + 1) * CHUNK)).digest('hex');
}

describe('restore from S3 with damaged pack objects', () => {
  let bucket: string;
  let tmp: string;
  let repo: Repository;
  let store: PackStore;
  let img: string;
  let data: Buffer;
  beforeEach(async () => {
    bucket = await makeBucket(env);
    tmp = tempDir();
    repo = await Repository.open('s3', { storage: storageOf(env, bucket), create: true });
    if (!(repo.blobs instanceof PackStore)) throw new Error('an S3 repository has packs');
    store = repo.blobs;
    img = path.join(tmp, 'disk.raw');
    data = seededBytes('s3-restore-damaged', CHUNKS * CHUNK);
    fs.writeFileSync(img, data);
  });
  afterEach(async () => {
    await dropBucket(env, bucket);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function expectRestoreFails(id: string, offsets: number[]): Promise<void> {
    const out = path.join(tmp, 'out.raw');
    await expect(repo.restoreDisk(id, 'scsi0', { path: out, format: 'raw' })).rejects.toMatchObject({ code: 'CBT_REPO_RESTORE_FAILED', details: { backupId: id, disk: 'scsi0', offsets } });
    expect(fs.readdirSync(tmp).filter((f) => f.includes('out.raw'))).toEqual([]);
  }

  it('a flipped byte in a blob: verify and restore report that chunk; the next backup repairs it and both restore byte-exact', async () => {
    const m1 = await backupImage(repo, img, { vmid: 100, chunkSize: CHUNK });
    const digest = digestOf(data, 37);
    const [bad] = await store.lookup.all(digest);
    await flipObjectByte(env, bucket, `repo/${packKeyOf(bad!.packId)}`, bad!.offset + bad!.storedLength - 100);

    await expectRestoreFails(m1.id, [37 * CHUNK]);
    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(report.backups[0]!.problems).toEqual([expect.objectContaining({ backupId: m1.id, disk: 'scsi0', offset: 37 * CHUNK, kind: 'chunk', digest, problem: 'corrupt' })]);

    const m2 = await backupImage(repo, img, { vmid: 100, chunkSize: CHUNK, base: { backupId: m1.id, disk: 'scsi0' }, parent: m1.id, dirty: [] });
    expect(m2.disks[0]!.chunksStored).toBe(1);
    // The damaged copy is still the first location: the restore reads it, finds it bad, and takes the good one through `read`.
    expect(store.lookup.allSync(digest).map((l) => l.packId)[0]).toBe(bad!.packId);
    expect(store.lookup.allSync(digest)).toHaveLength(2);
    for (const m of [m1, m2]) {
      const out = path.join(tmp, `${m.id.replace(/\//g, '_')}.raw`);
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(sha256File(img));
    }
  });

  it('a pack object gone: the restore names exactly the chunks that were in it', async () => {
    store.sealBytes = 1024 * 1024; // several packs, so that one holds chunks only (a gone index page fails the whole restore)
    const m = await backupImage(repo, img, { vmid: 100, chunkSize: CHUNK });
    const pagePacks = new Set(m.disks[0]!.pages.flatMap((p) => store.lookup.allSync(p.split('*')[0]!).map((l) => l.packId)));
    const packOf = (i: number): string => store.lookup.allSync(digestOf(data, i))[0]!.packId;
    const chunkIndexes = Array.from({ length: CHUNKS }, (_, i) => i);
    const gone = chunkIndexes.map(packOf).find((p) => !pagePacks.has(p));
    if (!gone) throw new Error('every pack holds an index page');
    const inGone = chunkIndexes.filter((i) => packOf(i) === gone);
    await adminClient(env).removeObject(bucket, `repo/${packKeyOf(gone)}`);
    await expectRestoreFails(m.id, inGone.map((i) => i * CHUNK));
  });
});
