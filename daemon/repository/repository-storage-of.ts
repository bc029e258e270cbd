/**
 * The storage of the configured repository: a local directory, or an S3 bucket for an
 * `s3://BUCKET/PREFIX` repository (s3-storage.ts) with the endpoint and keys of config `s3` and
 * its per-node cache in `s3.cacheDir` (default `<stateDir>/s3-cache/BUCKET/PREFIX`).
 * load-config.ts has already refused an s3:// repository without an `s3` section.
 * s3-storage.ts (and the minio client under it, ~50 ms of module loading) is loaded only for an
 * s3:// repository: `pve-cbt list` on a local one does not pay for it.
 */
import path from 'node:path';
import type { CbtConfig } from '../config/config-schema';
import { LocalDirStorage, type RepositoryStorage } from './storage';
import type { S3Storage } from './s3-storage';
import { isS3Url, parseS3Url } from './s3-url';
import { S3InvalidUrlError } from './s3-errors';

export function repositoryStorageOf(config: Pick<CbtConfig, 'repository' | 's3' | 'stateDir'>): RepositoryStorage {
  if (!isS3Url(config.repository)) return new LocalDirStorage(path.resolve(config.repository));
  const location = parseS3Url(config.repository);
  const s3 = config.s3;
  if (!s3) throw S3InvalidUrlError({ url: config.repository, hint: 'the config has no s3 section with endpoint and keys' });
  const cacheRoot = s3.cacheDir ?? path.join(config.stateDir, 's3-cache');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { S3Storage: Storage } = require('./s3-storage') as { S3Storage: typeof S3Storage };
  return new Storage({
    endpoint: s3.endpoint.replace(/\/$/, ''),
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    region: s3.region,
    timeoutMs: s3.timeoutMs,
    location,
    cacheDir: path.join(cacheRoot, location.bucket, ...location.prefix.split('/').filter(Boolean)),
  });
}
