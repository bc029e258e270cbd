/**
 * The serving source (daemon/repository/serve-source.ts) on real repositories: runs of adjacent
 * chunks read in one worker trip give the backup's bytes (stored plain, lz4-compressed, encrypted),
 * and a chunk damaged inside a run fails alone, with the repository's own error, through the full read.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { ServeDiskSource } from '../../../daemon/repository/serve-source';
import { deriveKeys, generateMasterKey } from '../../../daemon/repository/key-file';
import { backupImage, seededBytes, tempDir } from './repo-test-helpers';
import { flipBlobByte } from './blob-files';

const CHUNK = 64 * 1024;
const COUNT = 12;

/** Chunks 0-3 random, 4 zero, 5-7 compressible text, 8-11 random. */
function image(): Buffer {
  const b = seededBytes('serve-source', COUNT * CHUNK);
  b.fill(0, 4 * CHUNK, 5 * CHUNK);
  Buffer.from('compressible text, line after line\n'.repeat(3 * CHUNK)).copy(b, 5 * CHUNK, 0, 3 * CHUNK);
  return b;
}

const chunk = (data: Buffer, i: number): Buffer => data.subarray(i * CHUNK, (i + 1) * CHUNK);

describe.each([{ encrypted: false }, { encrypted: true }])('ServeDiskSource (encrypted: $encrypted)', ({ encrypted }) => {
  let dir: string;
  let repo: Repository;
  let backupId: string;
  const data = image();
  const keys = encrypted ? deriveKeys(generateMasterKey()) : undefined;

  beforeAll(async () => {
    dir = tempDir();
    const file = path.join(dir, 'disk.raw');
    fs.writeFileSync(file, data);
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK, ...(keys ? { keys } : {}) });
    backupId = (await backupImage(repo, file, { vmid: 100 })).id;
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('runs of adjacent chunks come back as the backup has them, in one worker trip each', async () => {
    const src = await ServeDiskSource.open(repo.dir, backupId, 'scsi0', keys);
    try {
      expect(src.isZeroChunk(4)).toBe(true);
      const got = await Promise.all([...src.readRun(0, 4), ...src.readRun(5, 3), ...src.readRun(8, 4)]);
      const want = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11].map((i) => chunk(data, i));
      got.forEach((g, k) => expect(g.equals(want[k])).toBe(true));
      expect(src.counts).toEqual({ runChunks: 11, runs: 3, single: 0 });
    } finally {
      await src.close();
    }
  });

  test('a damaged chunk inside a run fails alone, with the repository error; its neighbours are served', async () => {
    // The digest of a chunk: SHA-256 of its content, or HMAC-SHA256 under the digest key.
    const plain = chunk(data, 9);
    const digest = keys ? crypto.createHmac('sha256', keys.id).update(plain).digest('hex') : crypto.createHash('sha256').update(plain).digest('hex');
    await flipBlobByte(repo, 'chunk', digest);
    const src = await ServeDiskSource.open(repo.dir, backupId, 'scsi0', keys);
    try {
      const got = await Promise.allSettled(src.readRun(8, 4));
      expect(got.map((g) => g.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      expect((got[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'CBT_REPO_CHUNK_CORRUPT' });
      [8, 10, 11].forEach((i, k) => expect((got[[0, 2, 3][k]] as PromiseFulfilledResult<Buffer>).value.equals(chunk(data, i))).toBe(true));
      expect(src.counts.single).toBe(1);
    } finally {
      await src.close();
    }
  });
});
