/**
 * A full bucket: a backup into an S3 repository whose bucket quota runs out fails with
 * CBT_REPO_NO_SPACE, and nothing that looks complete remains (no manifest, not listed, verify
 * clean). With the quota raised the same backup goes through and restores byte-exact.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from '../daemon/repository/repo-test-helpers';
import { allObjects, dropBucket, makeBucket, s3Env, setBucketQuota, storageOf } from './s3-test-env';

const env = s3Env();
const MiB = 1024 * 1024;

describe('S3 repository with a bucket quota', () => {
  let bucket: string;
  let tmp: string;
  beforeEach(async () => {
    bucket = await makeBucket(env);
    tmp = tempDir();
  });
  afterEach(async () => {
    await dropBucket(env, bucket);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('fails the backup with CBT_REPO_NO_SPACE, leaves nothing complete, and works once there is room', async () => {
    const repo = await Repository.open('s3', { storage: storageOf(env, bucket), create: true });
    const img = path.join(tmp, 'disk.raw');
    fs.writeFileSync(img, seededBytes('s3-quota', 96 * MiB));
    setBucketQuota(env, bucket, 24 * MiB);
    await expect(backupImage(repo, img, { vmid: 100 })).rejects.toMatchObject({ code: 'CBT_REPO_NO_SPACE' });
    expect(await repo.listBackups()).toEqual([]);
    expect((await allObjects(env, bucket)).filter((o) => o.name.endsWith('/manifest.json'))).toEqual([]);
    expect((await repo.verify()).ok).toBe(true);

    setBucketQuota(env, bucket, 1024 * MiB);
    const m = await backupImage(repo, img, { vmid: 100 });
    const out = path.join(tmp, 'restored.raw');
    await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(sha256File(img));
  });
});
