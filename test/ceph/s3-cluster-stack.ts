/**
 * The two-node cluster stack (test/e2e/cluster-harness.ts) of the S3 cluster suites: both nodes'
 * daemons configured with one S3 repository (`s3://BUCKET/repo`) in a bucket of the file's own,
 * made and the daemons started before the file's tests, everything stopped and the bucket removed
 * after them. Read `cs` and `bucket` inside the tests (they are set by the beforeAll).
 */
import { createClusterStack, startDaemons, type ClusterStack } from '../e2e/cluster-harness';
import { dropBucket, makeBucket, storageOf, type S3Env } from './s3-test-env';

export interface S3ClusterStack {
  cs: ClusterStack;
  bucket: string;
}

export function s3ClusterStack(env: S3Env): S3ClusterStack {
  const s = {} as S3ClusterStack;
  beforeAll(async () => {
    s.bucket = await makeBucket(env);
    s.cs = await createClusterStack({
      repository: {
        config: { repository: `s3://${s.bucket}/repo`, s3: { endpoint: env.endpoint, accessKey: env.accessKey, secretKey: env.secretKey } },
        storage: () => storageOf(env, s.bucket),
      },
    });
    await startDaemons(s.cs);
  });
  afterAll(async () => {
    await s.cs?.cleanup();
    if (s.bucket) await dropBucket(env, s.bucket);
  });
  return s;
}
