/**
 * The S3 side of the Ceph test project: the endpoint and keys come from the environment that the
 * project's globalSetup sets after starting Ceph (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY,
 * CEPH_CONF). Without them a test fails, it is never skipped. Each test works in a bucket of its
 * own (random name), emptied and removed afterwards.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as Minio from 'minio';
import { defaultCacheRoot, S3Storage, type S3StorageOptions } from '../../daemon/repository/s3-storage';

export interface S3Env {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  cephConf: string;
}

export function s3Env(): S3Env {
  const need = ['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY', 'CEPH_CONF'];
  const missing = need.filter((n) => !process.env[n]);
  if (missing.length) throw new Error(`Ceph tests need ${missing.join(', ')} (set by the ceph project's globalSetup, or from micro-ceph.sh env)`);
  return {
    endpoint: process.env.S3_ENDPOINT!,
    accessKey: process.env.S3_ACCESS_KEY!,
    secretKey: process.env.S3_SECRET_KEY!,
    cephConf: process.env.CEPH_CONF!,
  };
}

export function adminClient(env: S3Env): Minio.Client {
  const u = new URL(env.endpoint);
  return new Minio.Client({
    endPoint: u.hostname,
    port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)),
    useSSL: u.protocol === 'https:',
    accessKey: env.accessKey,
    secretKey: env.secretKey,
    region: 'us-east-1',
    pathStyle: true,
  });
}

export async function makeBucket(env: S3Env): Promise<string> {
  const name = `cbt-test-${crypto.randomBytes(6).toString('hex')}`;
  await adminClient(env).makeBucket(name, 'us-east-1');
  return name;
}

export async function allObjects(env: S3Env, bucket: string): Promise<{ name: string; size: number }[]> {
  const out: { name: string; size: number }[] = [];
  for await (const o of adminClient(env).listObjectsV2(bucket, '', true)) out.push({ name: (o as { name: string }).name, size: (o as { size: number }).size });
  return out;
}

export async function dropBucket(env: S3Env, bucket: string): Promise<void> {
  const c = adminClient(env);
  const names = (await allObjects(env, bucket)).map((o) => o.name);
  for (let i = 0; i < names.length; i += 1000) await c.removeObjects(bucket, names.slice(i, i + 1000));
  await c.removeBucket(bucket);
  // The staging folder a storage without cacheDir made under the system's temp folder.
  fs.rmSync(defaultCacheRoot(bucket), { recursive: true, force: true });
}

export function storageOf(env: S3Env, bucket: string, extra: Partial<S3StorageOptions> = {}): S3Storage {
  return new S3Storage({
    endpoint: env.endpoint,
    accessKey: env.accessKey,
    secretKey: env.secretKey,
    location: { bucket, prefix: 'repo/' },
    ...extra,
  });
}

/** radosgw-admin against the test cluster (quota), bounded like every Ceph call. */
export function radosgwAdmin(env: S3Env, args: string[]): string {
  return execFileSync('radosgw-admin', ['-c', env.cephConf, ...args], { timeout: 60_000, encoding: 'utf8' });
}

/** A bucket quota of `maxBytes`, enforced from the next request on. */
export function setBucketQuota(env: S3Env, bucket: string, maxBytes: number): void {
  radosgwAdmin(env, ['quota', 'set', '--quota-scope=bucket', `--bucket=${bucket}`, `--max-size=${maxBytes}`]);
  radosgwAdmin(env, ['quota', 'enable', '--quota-scope=bucket', `--bucket=${bucket}`]);
}

/** XORs `mask` into the byte at `at` of an object in the bucket (a blob damaged in place, same size). */
export async function flipObjectByte(env: S3Env, bucket: string, name: string, at: number, mask = 0x01): Promise<void> {
  const c = adminClient(env);
  const parts: Buffer[] = [];
  for await (const part of await c.getObject(bucket, name)) parts.push(part as Buffer);
  const data = Buffer.concat(parts);
  data[at] = data[at]! ^ mask;
  await c.putObject(bucket, name, data, data.length);
}
