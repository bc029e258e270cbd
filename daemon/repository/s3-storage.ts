/**
 * A repository on any S3-compatible endpoint (tested against Ceph radosgw 16): the storage
 * interface of storage.ts on objects of one bucket, under an optional prefix (s3-url.ts,
 * s3-keys.ts), through the bounded SigV4 client of s3-client.ts.
 *
 * How each method maps (the contract of storage.ts, and what S3 gives it):
 * - `read`: GET; NoSuchKey is `null`. Pack index files and manifests come through the per-node
 *   cache (s3-object-cache.ts) when one is configured: a HEAD gives the current ETag, a cached copy
 *   of that ETag is served without downloading (`readListed` skips the HEAD when a listing gave
 *   the ETag).
 * - `writeAtomic`: one PUT (multipart above 64 MiB, minio's part size); S3 makes an object appear
 *   whole on a successful PUT or CompleteMultipartUpload, never partly, and durable when it
 *   answers 200. `putFile` does the same from a local file (a sealed pack).
 * - `createExclusive` (locks): PUT with `If-None-Match: *`. radosgw 16 implements it as an
 *   exclusive create of the head RADOS object: of 20 concurrent PUTs exactly one gets 200, the
 *   others 412 (test/ceph/s3-storage.test.ts). AWS S3 has it since 2024-08; an endpoint that
 *   ignores the header would make locks non-exclusive, so the first call probes it (PUT twice on a
 *   probe key) and refuses with CBT_S3_NO_CONDITIONAL_PUT instead of pretending.
 * - `rename`: server-side COPY, then DELETE of the source: not atomic (for a moment both exist,
 *   after a crash both may remain). The repository renames only manifests aside (removeBackup:
 *   both copies hold the same bytes) and stale locks (repository-lock.ts re-reads after it).
 * - `stat`: HEAD; a key with objects under it, or with a folder marker, is a directory. The mtime
 *   is the writer's clock in `x-amz-meta-cbt-mtime` (set on every PUT, kept by COPY), else
 *   Last-Modified: S3's Last-Modified of a copy is the copy's time, so a `rename` would otherwise
 *   make an old object new (GC's per-pack rule renames an .idx aside and re-stats it).
 * - `touch` (GC's per-pack rule, pack-format.ts): of a pack index it PUTs the marker
 *   `<idx>.touch` and then HEADs the .idx: true only if the .idx still exists after the marker
 *   is there. `stat` of an .idx (or of it renamed aside, `<idx>.gc-*`) is the newer of the two.
 *   So a GC that renamed the .idx aside after the writer's HEAD sees the marker when it re-stats
 *   and puts it back, and a writer whose HEAD comes after the rename stores its blob anew: the
 *   same guarantee as utimes/rename give on a local file system, where a copy onto itself
 *   racing GC's copy+delete would not give it. Markers are hidden from `list`. Other keys are
 *   touched by a copy onto themselves with a new cbt-mtime.
 * - `list`: ListObjectsV2 with delimiter '/', paged by continuation token until the end.
 * - `mkdir`: the folder marker `key/` created exclusively (so a backup id is reserved once).
 * - `remove`/`removeTree`: DELETE / listing + DeleteObjects in pages of 1000.
 * - `addToBatch`/`syncBatch`: nothing to do, a PUT is durable when it returns.
 * - `localPath`: absent (no local files). Packs (format 2) go through remote-packs.ts instead:
 *   `stagingDir` (the workers' local folder for open packs), `upload` of a sealed pack,
 *   `readRange`. A format-1 repository (one file per blob) is refused on S3
 *   (CBT_REPO_STORAGE_NOT_LOCAL): new repositories are format 2.
 * Errors: every call is bounded (s3-client.ts); a full bucket (QuotaExceeded) is CBT_REPO_NO_SPACE,
 * bad keys CBT_S3_AUTH_FAILED, a missing bucket CBT_S3_BUCKET_NOT_FOUND.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIR_MODE } from './storage';
import type { Readable } from 'node:stream';
import type { RepositoryStorage, StorageStat, SyncBatch } from './storage';
import { makeClient, isNotFound, isPreconditionFailed, s3Failure, type BoundedClient, type S3Endpoint } from './s3-client';
import { childNames, childrenPrefix, folderMarker, objectName } from './s3-keys';
import { formatS3Url, type S3Location } from './s3-url';
import { S3ObjectCache, isCacheableKey } from './s3-object-cache';
import { S3NoConditionalPutError } from './s3-errors';

export interface S3StorageOptions extends S3Endpoint {
  location: S3Location;
  /** Folder of the per-node object cache; none: every read downloads. */
  cacheDir?: string;
}

/** One entry of `listEntries`: a child object or folder of a listed folder. */
export interface S3ListEntry {
  name: string;
  isDirectory: boolean;
  size: number;
  mtimeMs: number;
  etag: string;
}

/** User metadata holding the writer's mtime (see the header). */
const MTIME_META = 'cbt-mtime';
const MTIME_HEADER = `x-amz-meta-${MTIME_META}`;
const TOUCH_SUFFIX = '.touch';

/** The pack index a key is, or was before GC renamed it aside: its touch marker applies. */
function indexKeyOf(key: string): string | null {
  if (key.endsWith('.idx')) return key;
  const m = /^(.*\.idx)\.gc-[^/]*$/.exec(key);
  return m ? m[1]! : null;
}

function mtimeHeaders(): Record<string, string> {
  return { [MTIME_HEADER]: String(Date.now()) };
}

/** S3 DeleteObjects takes at most this many keys per request. */
const DELETE_PAGE = 1000;

/** Where a storage made without `cacheDir` stages its open packs (the daemon and CLI always pass one). */
export function defaultCacheRoot(bucket: string): string {
  return path.join(os.tmpdir(), `pve-cbt-s3-${bucket}`);
}

export class S3Storage implements RepositoryStorage {
  readonly root: string;
  readonly bucket: string;
  private readonly c: BoundedClient;
  private readonly loc: S3Location;
  private readonly cache: S3ObjectCache | null;
  private conditionalPutChecked: Promise<void> | null = null;
  private readonly cacheRoot: string;
  private staging: string | null = null;
  /** ETags of .idx keys seen in the last listing of their folder (see `read`). */
  private readonly listedIndexes = new Map<string, string>();

  constructor(opts: S3StorageOptions) {
    this.loc = opts.location;
    this.bucket = opts.location.bucket;
    this.root = formatS3Url(opts.location);
    this.c = makeClient(opts);
    this.cache = opts.cacheDir ? new S3ObjectCache(opts.cacheDir) : null;
    this.cacheRoot = opts.cacheDir ?? defaultCacheRoot(opts.location.bucket);
  }

  get endpoint(): string {
    return this.c.endpoint;
  }

  /** The URL of a key, for messages. */
  url(key: string): string {
    return `${this.root}${key}`;
  }

  private fail(op: string, key: string, err: unknown): Error {
    return s3Failure({ endpoint: this.c.endpoint, bucket: this.bucket, url: (k) => this.url(k) }, op, key, err);
  }

  async read(key: string): Promise<Buffer | null> {
    if (this.cache && isCacheableKey(key)) {
      // A pack index never changes under its key (random pack id): listed just now, its cached
      // copy needs no HEAD (the pack lookup lists every .idx, then reads each).
      const listed = key.endsWith('.idx') ? this.listedIndexes.get(key) : undefined;
      if (listed !== undefined) return await this.readListed(key, listed);
      const head = await this.head(key);
      if (!head) return null;
      return await this.readListed(key, head.etag);
    }
    return (await this.get(key))?.data ?? null;
  }

  /** `read` of a key whose current ETag the caller knows (from `listEntries`): a cache hit costs no request. */
  async readListed(key: string, etag: string): Promise<Buffer | null> {
    const cached = this.cache ? await this.cache.get(key, etag) : null;
    if (cached) return cached;
    const got = await this.get(key);
    if (got && this.cache && isCacheableKey(key)) await this.cache.put(key, got.etag, got.data);
    return got?.data ?? null;
  }

  private async get(key: string): Promise<{ data: Buffer; etag: string } | null> {
    try {
      const res = await this.c.client.getObject(this.bucket, objectName(this.loc, key));
      const data = await collect(res);
      return { data, etag: etagOf((res as unknown as { headers?: Record<string, string> }).headers?.etag) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.fail('GET', key, err);
    }
  }

  /** `length` bytes at `offset` of an object (a pack's blobs): one ranged GET. Null if the object is gone. */
  async readRange(key: string, offset: number, length: number): Promise<Buffer | null> {
    if (length === 0) return (await this.head(key)) ? Buffer.alloc(0) : null;
    try {
      return await collect(await this.c.client.getPartialObject(this.bucket, objectName(this.loc, key), offset, length));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.fail('GET range', key, err);
    }
  }

  async writeAtomic(key: string, data: Buffer): Promise<void> {
    let etag: string;
    try {
      etag = etagOf((await this.c.client.putObject(this.bucket, objectName(this.loc, key), data, data.length, { [MTIME_META]: String(Date.now()) })).etag);
    } catch (err) {
      await this.abortUpload(key);
      throw this.fail('PUT', key, err);
    }
    if (this.cache && isCacheableKey(key)) await this.cache.put(key, etag, data);
  }

  /**
   * The local folder where this process's blob workers append open packs before they are uploaded
   * (remote-packs.ts): `<cacheDir>/staging/<pid>`. Made on first use, when the staging folders of
   * processes that are gone (killed mid-backup) are removed.
   */
  stagingDir(): string {
    if (this.staging) return this.staging;
    const root = path.join(this.cacheRoot, 'staging');
    fs.mkdirSync(root, { recursive: true, mode: DIR_MODE });
    for (const name of fs.readdirSync(root)) {
      const pid = Number(name);
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid)) fs.rmSync(path.join(root, name), { recursive: true, force: true });
    }
    this.staging = path.join(root, String(process.pid));
    fs.mkdirSync(this.staging, { recursive: true, mode: DIR_MODE });
    return this.staging;
  }

  /** A sealed pack as one object (remote-packs.ts). */
  upload(key: string, file: string): Promise<void> {
    return this.putFile(key, file);
  }

  /** Uploads a local file as one object (multipart when large); it appears whole or not at all. */
  async putFile(key: string, file: string): Promise<void> {
    try {
      await this.c.client.fPutObject(this.bucket, objectName(this.loc, key), file, { [MTIME_META]: String(Date.now()) });
    } catch (err) {
      await this.abortUpload(key);
      throw this.fail('PUT', key, err);
    }
  }

  /**
   * A failed multipart upload keeps its parts (and their space, counted by a quota) until it is
   * aborted; minio would even resume it on the next PUT of the key. Best effort: the endpoint may
   * be the reason it failed. A kill -9 mid-upload leaves them too: `abortStaleUploads`.
   */
  private async abortUpload(key: string): Promise<void> {
    await this.c.client.removeIncompleteUpload(this.bucket, objectName(this.loc, key)).catch(() => undefined);
  }

  /** Aborts multipart uploads under the repository started before `beforeMs` (left by a killed writer); returns their keys. */
  async abortStaleUploads(beforeMs: number): Promise<string[]> {
    const stale: string[] = [];
    try {
      for await (const u of this.c.client.listIncompleteUploads(this.bucket, this.loc.prefix, true)) {
        const item = u as { key: string; initiated?: Date | string };
        if (item.initiated !== undefined && new Date(item.initiated).getTime() < beforeMs) stale.push(item.key);
      }
    } catch (err) {
      throw this.fail('LIST uploads', this.loc.prefix, err);
    }
    for (const name of [...new Set(stale)]) await this.c.client.removeIncompleteUpload(this.bucket, name).catch(() => undefined);
    return [...new Set(stale)].map((n) => n.slice(this.loc.prefix.length));
  }

  async createExclusive(key: string, data: Buffer): Promise<boolean> {
    await this.checkConditionalPut();
    return await this.putIfAbsent(key, data);
  }

  private async putIfAbsent(key: string, data: Buffer): Promise<boolean> {
    try {
      const res = await this.c.client.makeRequestAsync(
        { method: 'PUT', bucketName: this.bucket, objectName: objectName(this.loc, key), headers: { 'If-None-Match': '*', ...mtimeHeaders() } },
        data,
        [200],
      );
      res.resume();
      return true;
    } catch (err) {
      if (isPreconditionFailed(err)) return false;
      throw this.fail('PUT If-None-Match', key, err);
    }
  }

  /** Once per storage: an endpoint that ignores If-None-Match: * cannot hold locks (see the header). */
  private checkConditionalPut(): Promise<void> {
    this.conditionalPutChecked ??= (async () => {
      const probe = `.locks/.probe-${crypto.randomBytes(8).toString('hex')}`;
      try {
        const first = await this.putIfAbsent(probe, Buffer.from('1'));
        const second = await this.putIfAbsent(probe, Buffer.from('2'));
        if (!first || second) throw S3NoConditionalPutError({ endpoint: this.c.endpoint, bucket: this.bucket });
      } finally {
        await this.remove(probe).catch(() => undefined);
      }
    })().catch((err: unknown) => {
      this.conditionalPutChecked = null;
      throw err;
    });
    return this.conditionalPutChecked;
  }

  addToBatch(_batch: SyncBatch, _key: string, _bytes: number): void {
    // A PUT is durable when it returns: nothing to collect.
  }

  async syncBatch(batch: SyncBatch): Promise<void> {
    batch.keys.clear();
    batch.wholeFileSystem = false;
  }

  private async head(key: string): Promise<{ size: number; mtimeMs: number; etag: string } | null> {
    try {
      const st = await this.c.client.statObject(this.bucket, objectName(this.loc, key));
      const meta = Number((st.metaData as Record<string, string> | undefined)?.[MTIME_META]);
      return { size: st.size, mtimeMs: Number.isFinite(meta) && meta > 0 ? meta : st.lastModified.getTime(), etag: etagOf(st.etag) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.fail('HEAD', key, err);
    }
  }

  async stat(key: string): Promise<StorageStat | null> {
    const st = await this.head(key);
    if (st) {
      const idx = indexKeyOf(key);
      const touched = idx ? await this.head(idx + TOUCH_SUFFIX) : null;
      return { size: st.size, mtimeMs: Math.max(st.mtimeMs, touched?.mtimeMs ?? 0), isDirectory: false };
    }
    const page = await this.listPage(childrenPrefix(this.loc, key), '', '', 1);
    const first = page.objects[0];
    if (!first) return null;
    return { size: 0, mtimeMs: first.lastModified ? new Date(first.lastModified).getTime() : Date.now(), isDirectory: true };
  }

  async remove(key: string): Promise<boolean> {
    this.listedIndexes.delete(key);
    const existed = (await this.head(key)) !== null;
    if (!existed) return false;
    try {
      await this.c.client.removeObject(this.bucket, objectName(this.loc, key));
    } catch (err) {
      if (isNotFound(err)) return false;
      throw this.fail('DELETE', key, err);
    }
    if (this.cache) await this.cache.drop(key);
    this.listedIndexes.delete(key);
    const idx = indexKeyOf(key);
    if (idx) await this.c.client.removeObject(this.bucket, objectName(this.loc, idx + TOUCH_SUFFIX)).catch(() => undefined);
    return true;
  }

  async rename(from: string, to: string): Promise<boolean> {
    try {
      await this.c.client.copyObject(this.bucket, objectName(this.loc, to), `/${this.bucket}/${objectName(this.loc, from)}`);
    } catch (err) {
      if (isNotFound(err)) return false;
      throw this.fail('COPY', `${from} -> ${to}`, err);
    }
    if (this.cache) await this.cache.drop(to);
    // The source only: a pack index's touch marker belongs to the index under either name.
    try {
      await this.c.client.removeObject(this.bucket, objectName(this.loc, from));
    } catch (err) {
      if (!isNotFound(err)) throw this.fail('DELETE', from, err);
    }
    if (this.cache) await this.cache.drop(from);
    this.listedIndexes.delete(from);
    return true;
  }

  /**
   * Sets an object's Last-Modified to now (GC's touch rule: a writer relying on an existing object
   * keeps it alive): a copy onto itself with the metadata replaced, no bytes moved by the client.
   */
  async touch(key: string): Promise<boolean> {
    const name = objectName(this.loc, key);
    if (key.endsWith('.idx')) {
      try {
        await this.c.client.putObject(this.bucket, objectName(this.loc, key + TOUCH_SUFFIX), Buffer.alloc(0), 0, { [MTIME_META]: String(Date.now()) });
      } catch (err) {
        throw this.fail('PUT (touch)', key, err);
      }
      return (await this.head(key)) !== null;
    }
    try {
      const res = await this.c.client.makeRequestAsync(
        {
          method: 'PUT',
          bucketName: this.bucket,
          objectName: name,
          headers: { 'x-amz-copy-source': encodeURI(`/${this.bucket}/${name}`), 'x-amz-metadata-directive': 'REPLACE', ...mtimeHeaders() },
        },
        '',
        [200],
      );
      res.resume();
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw this.fail('COPY (touch)', key, err);
    }
  }

  async list(prefix: string): Promise<string[]> {
    return (await this.listEntries(prefix)).map((e) => e.name);
  }

  /** The children of folder `prefix` with size, mtime and ETag (one paged delimiter listing). */
  async listEntries(prefix: string): Promise<S3ListEntry[]> {
    const listed = childrenPrefix(this.loc, prefix);
    const byName = new Map<string, S3ListEntry>();
    let token = '';
    for (;;) {
      const page = await this.listPage(listed, token, '/', 1000);
      for (const o of page.objects) {
        const raw = o.name ?? o.prefix ?? '';
        const [name] = childNames(listed, [raw]);
        if (name === undefined || name.endsWith(`.idx${TOUCH_SUFFIX}`)) continue;
        const isDirectory = o.prefix !== undefined || raw.endsWith('/');
        const prev = byName.get(name);
        if (prev && prev.isDirectory) continue;
        byName.set(name, {
          name,
          isDirectory,
          size: o.size ?? 0,
          mtimeMs: o.lastModified ? new Date(o.lastModified).getTime() : 0,
          etag: etagOf(o.etag),
        });
      }
      if (!page.isTruncated || !page.nextContinuationToken) break;
      token = page.nextContinuationToken;
    }
    for (const e of byName.values()) {
      if (!e.isDirectory && e.name.endsWith('.idx')) this.listedIndexes.set(prefix === '' ? e.name : `${prefix}/${e.name}`, e.etag);
    }
    return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private async listPage(listed: string, token: string, delimiter: string, maxKeys: number): Promise<ListPage> {
    try {
      return (await this.c.client.listObjectsV2Query(this.bucket, listed, token, delimiter, maxKeys, '')) as unknown as ListPage;
    } catch (err) {
      throw this.fail('LIST', listed, err);
    }
  }

  async removeTree(key: string): Promise<void> {
    const listed = childrenPrefix(this.loc, key);
    const names: string[] = [];
    let token = '';
    for (;;) {
      const page = await this.listPage(listed, token, '', 1000);
      for (const o of page.objects) if (o.name) names.push(o.name);
      if (!page.isTruncated || !page.nextContinuationToken) break;
      token = page.nextContinuationToken;
    }
    if (key !== '') names.push(objectName(this.loc, key));
    for (let i = 0; i < names.length; i += DELETE_PAGE) {
      try {
        await this.c.client.removeObjects(this.bucket, names.slice(i, i + DELETE_PAGE));
      } catch (err) {
        throw this.fail('DELETE', key, err);
      }
    }
    if (this.cache) for (const n of names) await this.cache.drop(n.slice(this.loc.prefix.length));
  }

  async mkdir(key: string): Promise<boolean> {
    await this.checkConditionalPut();
    return await this.putIfAbsent(folderMarker(this.loc, key).slice(this.loc.prefix.length), Buffer.alloc(0));
  }
}

interface ListPage {
  objects: { name?: string; prefix?: string; size?: number; lastModified?: Date | string; etag?: string }[];
  isTruncated: boolean;
  nextContinuationToken?: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function etagOf(raw: string | undefined): string {
  return (raw ?? '').replace(/^"|"$/g, '');
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
