/**
 * `repository unlock` on radosgw: the same cases as on a local directory
 * (test/daemon/repository/lock-unlock-cases.ts), each in a bucket of its own. Locks on S3 are
 * conditional PUTs (`If-None-Match: *`); a dead node's lock is the case this command exists for.
 */
import { unlockCases } from '../daemon/repository/lock-unlock-cases';
import type { S3Storage } from '../../daemon/repository/s3-storage';
import { dropBucket, makeBucket, s3Env, storageOf } from './s3-test-env';

const env = s3Env();
let bucket: string;
let storage: S3Storage;
beforeEach(async () => {
  bucket = await makeBucket(env);
  storage = storageOf(env, bucket);
});
afterEach(async () => dropBucket(env, bucket));

unlockCases(() => storage);
