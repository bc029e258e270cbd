/**
 * The repository URL of an S3 repository: `s3://BUCKET` or `s3://BUCKET/PREFIX` (pure, tested with
 * a table in test/daemon/repository/s3-url.test.ts). The endpoint and keys are not part of it
 * (config `s3`), so the URL can be shown and logged.
 *
 * Bucket names follow S3's rules (3-63 characters of lowercase letters, digits, '.', '-', starting
 * and ending with a letter or digit). The prefix is normalised to end in '/' (or to be empty), so
 * every object name is `prefix + key` (s3-keys.ts).
 */
import { S3InvalidUrlError } from './s3-errors';

export interface S3Location {
  bucket: string;
  /** '' or 'a/b/' (no leading slash, one trailing slash). */
  prefix: string;
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isS3Url(value: string): boolean {
  return value.startsWith('s3://');
}

export function parseS3Url(url: string): S3Location {
  if (!isS3Url(url)) throw S3InvalidUrlError({ url, hint: 'it must start with s3://' });
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  if (!BUCKET_RE.test(bucket) || bucket.includes('..')) {
    throw S3InvalidUrlError({ url, hint: `bucket '${bucket}' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)` });
  }
  const parts = (slash < 0 ? '' : rest.slice(slash + 1)).split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '.' || p === '..')) throw S3InvalidUrlError({ url, hint: "the prefix may not contain '.' or '..' segments" });
  return { bucket, prefix: parts.length ? `${parts.join('/')}/` : '' };
}

export function formatS3Url(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.prefix}`;
}
