/**
 * The S3 client of the S3 backend: minio-js (SigV4, path-style), with every request bounded and
 * every failure turned into a coded error.
 *
 * Why minio and not @aws-sdk/client-s3: 28 packages instead of ~100 (@smithy/*), and it sends no
 * flexible-checksum headers (x-amz-checksum-crc32, x-amz-sdk-checksum-algorithm), which radosgw 16
 * rejects or ignores unless the AWS SDK is told `requestChecksumCalculation: WHEN_REQUIRED`
 * (see /work/shared/ceph/README.md: boto3 ≥ 1.36 has the same trap). It signs with SigV4 and
 * Content-MD5/x-amz-content-sha256, which every S3 endpoint accepts.
 *
 * Bounds: minio has no timeout of its own, so its HTTP transport is wrapped: a request whose socket
 * shows no progress for `timeoutMs` (no byte sent or received) is destroyed with CBT_S3_TIMEOUT.
 * That bounds a call of any size (a 64 MiB pack at 1 MiB/s still progresses) and a dead endpoint.
 */
import http from 'node:http';
import https from 'node:https';
import * as Minio from 'minio';
import { isCbtError } from '../../shared/errors/cbt-error';
import { RepoNoSpaceError } from './repository-errors';
import { S3AuthFailedError, S3BucketNotFoundError, S3InvalidUrlError, S3RequestFailedError, S3TimeoutError, S3UnreachableError } from './s3-errors';

export interface S3Endpoint {
  /** http(s)://host[:port] */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** SigV4 region; radosgw accepts any ('us-east-1' default). */
  region?: string;
  /** No progress on one request for this long fails it (default 30 s). */
  timeoutMs?: number;
}

export const DEFAULT_S3_TIMEOUT_MS = 30_000;

export interface BoundedClient {
  client: Minio.Client;
  timeoutMs: number;
  endpoint: string;
}

/** The transport minio calls `request` on: http(s).request with an inactivity bound. */
function boundedTransport(secure: boolean, timeoutMs: number, endpoint: string): typeof http {
  const base = secure ? https : http;
  const agent = new base.Agent({ keepAlive: true, maxSockets: 32 });
  const transport = {
    request(opts: http.RequestOptions, cb?: (res: http.IncomingMessage) => void): http.ClientRequest {
      const req = base.request({ ...opts, agent }, cb);
      req.setTimeout(timeoutMs, () => {
        req.destroy(S3TimeoutError({ endpoint, op: String(opts.method ?? 'GET'), key: String(opts.path ?? ''), timeoutMs }));
      });
      return req;
    },
  };
  return transport as unknown as typeof http;
}

export function makeClient(e: S3Endpoint): BoundedClient {
  let u: URL;
  try {
    u = new URL(e.endpoint);
  } catch {
    throw S3InvalidUrlError({ url: e.endpoint, hint: 'the endpoint must be http(s)://host[:port]' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw S3InvalidUrlError({ url: e.endpoint, hint: 'the endpoint must be http(s)://host[:port]' });
  const secure = u.protocol === 'https:';
  const timeoutMs = e.timeoutMs ?? DEFAULT_S3_TIMEOUT_MS;
  const client = new Minio.Client({
    endPoint: u.hostname,
    port: u.port ? Number(u.port) : secure ? 443 : 80,
    useSSL: secure,
    accessKey: e.accessKey,
    secretKey: e.secretKey,
    region: e.region ?? 'us-east-1',
    pathStyle: true,
    transport: boundedTransport(secure, timeoutMs, e.endpoint),
  });
  return { client, timeoutMs, endpoint: e.endpoint };
}

/** The S3 error code of a minio error ('' when it is no S3 answer). */
export function s3CodeOf(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : '';
}

export function isNotFound(err: unknown): boolean {
  const code = s3CodeOf(err);
  return code === 'NoSuchKey' || code === 'NotFound';
}

export function isPreconditionFailed(err: unknown): boolean {
  return s3CodeOf(err) === 'PreconditionFailed';
}

const AUTH_CODES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'RequestTimeTooSkewed', 'AuthorizationHeaderMalformed']);
const NET_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN']);

/** Any failure of a call as the coded error the repository reports. */
export function s3Failure(c: { endpoint: string; bucket: string; url: (key: string) => string }, op: string, key: string, err: unknown): Error {
  if (isCbtError(err)) return err;
  const code = s3CodeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'QuotaExceeded' || code === 'EntityTooLarge') return RepoNoSpaceError({ path: c.url(key) }, err);
  if (AUTH_CODES.has(code)) return S3AuthFailedError({ endpoint: c.endpoint, bucket: c.bucket, s3Code: code, op }, err);
  if (code === 'NoSuchBucket') return S3BucketNotFoundError({ endpoint: c.endpoint, bucket: c.bucket }, err);
  if (NET_CODES.has(code)) return S3UnreachableError({ endpoint: c.endpoint, op, key, reason: `${code} ${message}`.trim() }, err);
  return S3RequestFailedError({ endpoint: c.endpoint, op, key, s3Code: code || 'error', reason: message }, err);
}
