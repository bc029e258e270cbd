import { defineError } from '../../shared/errors/cbt-error';

/**
 * Error codes of the S3 repository backend (s3-storage.ts). A full bucket (radosgw's
 * QuotaExceeded) is not here: it is CBT_REPO_NO_SPACE, as a full local disk is.
 */

export const S3InvalidUrlError = defineError<{ url: string; hint: string }>(
  'CBT_S3_INVALID_URL',
  (d) => `'${d.url}' is not an S3 repository URL: ${d.hint}`,
);
export const S3AuthFailedError = defineError<{ endpoint: string; bucket: string; s3Code: string; op: string }>(
  'CBT_S3_AUTH_FAILED',
  (d) => `S3 endpoint ${d.endpoint} refused the credentials for bucket ${d.bucket} (${d.s3Code} on ${d.op}): check accessKey/secretKey and the user's permissions`,
);
export const S3BucketNotFoundError = defineError<{ endpoint: string; bucket: string }>(
  'CBT_S3_BUCKET_NOT_FOUND',
  (d) => `S3 bucket ${d.bucket} does not exist at ${d.endpoint} (create it first, e.g. with radosgw-admin or any S3 client)`,
);
export const S3TimeoutError = defineError<{ endpoint: string; op: string; key: string; timeoutMs: number }>(
  'CBT_S3_TIMEOUT',
  (d) => `S3 ${d.op} of ${d.key} at ${d.endpoint} made no progress for ${d.timeoutMs} ms`,
);
export const S3UnreachableError = defineError<{ endpoint: string; op: string; key: string; reason: string }>(
  'CBT_S3_UNREACHABLE',
  (d) => `S3 endpoint ${d.endpoint} is unreachable (${d.op} of ${d.key}): ${d.reason}`,
);
export const S3RequestFailedError = defineError<{ endpoint: string; op: string; key: string; s3Code: string; reason: string }>(
  'CBT_S3_REQUEST_FAILED',
  (d) => `S3 ${d.op} of ${d.key} at ${d.endpoint} failed: ${d.s3Code}${d.reason ? ` (${d.reason})` : ''}`,
);
/** The endpoint ignored `If-None-Match: *` on PUT, so it cannot hold the repository's locks. */
export const S3NoConditionalPutError = defineError<{ endpoint: string; bucket: string }>(
  'CBT_S3_NO_CONDITIONAL_PUT',
  (d) => `S3 endpoint ${d.endpoint} (bucket ${d.bucket}) overwrote an object despite If-None-Match: *, so repository locks cannot be exclusive there`,
);
