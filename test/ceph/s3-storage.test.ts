/**
 * The storage contract of storage.ts on a real radosgw (Ceph 16), method by method, plus what the
 * repository relies on from S3: exclusive create under a race, multipart, ranged reads, paging,
 * the per-node cache, and each failure as its own code (quota, keys, bucket, timeout, endpoint).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SyncBatch, type RepositoryStorage } from '../../daemon/repository/storage';
import { S3Storage } from '../../daemon/repository/s3-storage';
import { adminClient, allObjects, dropBucket, makeBucket, s3Env, setBucketQuota, storageOf } from './s3-test-env';

const env = s3Env();

describe('S3 storage on radosgw', () => {
  let bucket: string;
  let s: S3Storage;
  let tmp: string;
  beforeEach(async () => {
    bucket = await makeBucket(env);
    s = storageOf(env, bucket);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-s3-'));
  });
  afterEach(async () => {
    await dropBucket(env, bucket);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('reads back exactly what writeAtomic put, under the prefix; missing keys are null', async () => {
    const data = crypto.randomBytes(1024 * 1024 + 17);
    expect(await s.read('vm/100/manifest.json')).toBeNull();
    await s.writeAtomic('vm/100/manifest.json', data);
    expect((await s.read('vm/100/manifest.json'))!.equals(data)).toBe(true);
    await s.writeAtomic('vm/100/manifest.json', Buffer.from('second'));
    expect((await s.read('vm/100/manifest.json'))!.toString()).toBe('second');
    expect((await allObjects(env, bucket)).map((o) => o.name)).toEqual(['repo/vm/100/manifest.json']);
    expect((s as RepositoryStorage).localPath).toBeUndefined();
    const batch = new SyncBatch();
    s.addToBatch(batch, 'vm/100/manifest.json', 6);
    await s.syncBatch(batch);
    expect(batch.keys.size).toBe(0);
  });

  it('createExclusive: one winner of 20 concurrent creators, whose bytes stay', async () => {
    expect(await s.createExclusive('.locks/gc.lock', Buffer.from('a'))).toBe(true);
    expect(await s.createExclusive('.locks/gc.lock', Buffer.from('b'))).toBe(false);
    expect((await s.read('.locks/gc.lock'))!.toString()).toBe('a');
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => s.createExclusive('.locks/vm-1.lock', Buffer.from(`w${i}`))));
    expect(results.filter((r) => r).length).toBe(1);
    expect((await s.read('.locks/vm-1.lock'))!.toString()).toBe(`w${results.indexOf(true)}`);
    // The probe of If-None-Match support leaves nothing behind.
    expect(await s.list('.locks')).toEqual(['gc.lock', 'vm-1.lock']);
  });

  it('stat, mkdir, list (paged past 1000 entries) and removeTree behave as folders do', async () => {
    expect(await s.stat('vm')).toBeNull();
    expect(await s.mkdir('vm/100/2026-12-02T04:00:00Z')).toBe(true);
    expect(await s.mkdir('vm/100/2026-12-02T04:00:00Z')).toBe(false);
    expect(await s.list('vm')).toEqual(['100']);
    expect(await s.list('vm/100')).toEqual(['2026-12-02T04:00:00Z']);
    expect(await s.list('vm/100/2026-12-02T04:00:00Z')).toEqual([]);
    expect(await s.stat('vm/100')).toMatchObject({ isDirectory: true });
    await s.writeAtomic('vm/100/2026-12-02T04:00:00Z/manifest.json', Buffer.from('{}'));
    expect(await s.stat('vm/100/2026-12-02T04:00:00Z/manifest.json')).toMatchObject({ size: 2, isDirectory: false });
    expect(Math.abs((await s.stat('vm/100/2026-12-02T04:00:00Z/manifest.json'))!.mtimeMs - Date.now())).toBeLessThan(120_000);

    const names = Array.from({ length: 1005 }, (_, i) => `k${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => s.writeAtomic(`.packs/ab/${n}`, Buffer.from(n))));
    await s.writeAtomic('.packs/ab/sub/x', Buffer.from('x'));
    const listed = await s.list('.packs/ab');
    expect(listed).toEqual([...names, 'sub']);
    const entries = await s.listEntries('.packs/ab');
    expect(entries.find((e) => e.name === 'k0007')).toMatchObject({ size: 5, isDirectory: false, etag: crypto.createHash('md5').update('k0007').digest('hex') });
    expect(entries.find((e) => e.name === 'sub')).toMatchObject({ isDirectory: true });
    expect(await s.list('')).toEqual(['.packs', 'vm']);

    await s.removeTree('.packs');
    expect(await s.list('.packs/ab')).toEqual([]);
    await s.removeTree('vm/100/2026-12-02T04:00:00Z');
    expect(await s.list('vm/100')).toEqual([]);
    expect(await allObjects(env, bucket)).toEqual([]);
  });

  it('remove and rename answer whether the key existed', async () => {
    expect(await s.remove('a')).toBe(false);
    expect(await s.rename('a', 'b')).toBe(false);
    await s.writeAtomic('vm/1/x/manifest.json', Buffer.from('m'));
    expect(await s.rename('vm/1/x/manifest.json', 'vm/1/x/manifest.removed')).toBe(true);
    expect(await s.read('vm/1/x/manifest.json')).toBeNull();
    expect((await s.read('vm/1/x/manifest.removed'))!.toString()).toBe('m');
    expect(await s.remove('vm/1/x/manifest.removed')).toBe(true);
    expect(await s.remove('vm/1/x/manifest.removed')).toBe(false);
  });

  it('putFile uploads a large pack in parts; ranged reads across the part boundary are exact', async () => {
    const file = path.join(tmp, 'p.pack');
    const data = crypto.randomBytes(70 * 1024 * 1024);
    fs.writeFileSync(file, data);
    await s.putFile('.packs/0a/0a11.pack', file);
    const st = await adminClient(env).statObject(bucket, 'repo/.packs/0a/0a11.pack');
    expect(st.size).toBe(data.length);
    expect(st.etag).toMatch(/-2$/); // two parts of 64 MiB + 6 MiB
    for (const [off, len] of [[0, 16], [64 * 1024 * 1024 - 100, 300], [data.length - 5, 5], [12345, 1 << 20]]) {
      expect((await s.readRange('.packs/0a/0a11.pack', off, len))!.equals(data.subarray(off, off + len))).toBe(true);
    }
    expect(await s.readRange('.packs/0a/none.pack', 0, 10)).toBeNull();
  });

  it('multipart uploads a killed writer left are aborted by abortStaleUploads, newer ones kept', async () => {
    const admin = adminClient(env) as unknown as { initiateNewMultipartUpload(b: string, o: string, h: Record<string, string>): Promise<string> };
    await admin.initiateNewMultipartUpload(bucket, 'repo/.packs/0d/left.pack', {});
    const pending = async () => {
      const keys: string[] = [];
      for await (const u of adminClient(env).listIncompleteUploads(bucket, '', true)) keys.push((u as { key: string }).key);
      return keys;
    };
    expect(await pending()).toEqual(['repo/.packs/0d/left.pack']);
    expect(await s.abortStaleUploads(Date.now() - 3_600_000)).toEqual([]);
    expect(await pending()).toEqual(['repo/.packs/0d/left.pack']);
    expect(await s.abortStaleUploads(Date.now() + 60_000)).toEqual(['.packs/0d/left.pack']);
    expect(await pending()).toEqual([]);
  });

  it('mtimes survive a rename; touch of a pack index is seen through its rename aside, and fails once it is gone', async () => {
    await s.writeAtomic('.packs/0b/p.idx', Buffer.from('idx'));
    const before = (await s.stat('.packs/0b/p.idx'))!.mtimeMs;
    const later = async () => {
      while (Date.now() <= before + 1) await new Promise((r) => setImmediate(r));
    };
    await later();
    // A copy keeps the writer's mtime (S3's Last-Modified would be the copy's time).
    expect(await s.rename('.packs/0b/p.idx', '.packs/0b/p.idx.gc-1')).toBe(true);
    expect((await s.stat('.packs/0b/p.idx.gc-1'))!.mtimeMs).toBe(before);
    expect(await s.rename('.packs/0b/p.idx.gc-1', '.packs/0b/p.idx')).toBe(true);
    expect(await s.touch('.packs/0b/p.idx')).toBe(true);
    const touched = (await s.stat('.packs/0b/p.idx'))!.mtimeMs;
    expect(touched).toBeGreaterThan(before);
    expect(await s.list('.packs/0b')).toEqual(['p.idx']); // the marker is not listed
    // Renamed aside (GC), the touch still counts: GC puts it back.
    expect(await s.rename('.packs/0b/p.idx', '.packs/0b/p.idx.gc-2')).toBe(true);
    expect((await s.stat('.packs/0b/p.idx.gc-2'))!.mtimeMs).toBe(touched);
    // A touch after the rename finds no .idx: the writer must store its blob anew.
    expect(await s.touch('.packs/0b/p.idx')).toBe(false);
    expect(await s.remove('.packs/0b/p.idx.gc-2')).toBe(true);
    expect((await allObjects(env, bucket)).map((o) => o.name)).toEqual([]);
    // Other keys: a copy onto itself with a new mtime, bytes kept.
    await s.writeAtomic('vm/1/x/verify.json', Buffer.from('v'));
    const v0 = (await s.stat('vm/1/x/verify.json'))!.mtimeMs;
    while (Date.now() <= v0 + 1) await new Promise((r) => setImmediate(r));
    expect(await s.touch('vm/1/x/verify.json')).toBe(true);
    expect((await s.stat('vm/1/x/verify.json'))!.mtimeMs).toBeGreaterThan(v0);
    expect((await s.read('vm/1/x/verify.json'))!.toString()).toBe('v');
    expect(await s.touch('vm/1/x/none.json')).toBe(false);
  });

  it('the node cache serves pack indexes and manifests by ETag, never a stale copy', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const c = storageOf(env, bucket, { cacheDir });
    await c.writeAtomic('.packs/0c/p.idx', Buffer.from('index one'));
    expect(fs.existsSync(path.join(cacheDir, '.packs', '0c', 'p.idx'))).toBe(true);
    // Another node rewrites it: the ETag differs, so the new bytes are downloaded.
    await adminClient(env).putObject(bucket, 'repo/.packs/0c/p.idx', Buffer.from('index two'));
    expect((await c.read('.packs/0c/p.idx'))!.toString()).toBe('index two');
    const [entry] = await c.listEntries('.packs/0c');
    // With the ETag from a listing, a cached copy costs no request: it answers even after the object went.
    await adminClient(env).removeObject(bucket, 'repo/.packs/0c/p.idx');
    expect((await c.readListed('.packs/0c/p.idx', entry!.etag))!.toString()).toBe('index two');
    // A read by a storage that has not listed it asks the bucket first (HEAD): gone is gone ...
    expect(await storageOf(env, bucket, { cacheDir }).read('.packs/0c/p.idx')).toBeNull();
    // ... unless a listing of its folder by this storage just saw the (immutable) index.
    await c.writeAtomic('.packs/0c/q.idx', Buffer.from('index q'));
    await c.list('.packs/0c');
    await adminClient(env).removeObject(bucket, 'repo/.packs/0c/q.idx');
    expect((await c.read('.packs/0c/q.idx'))!.toString()).toBe('index q');
    expect(await c.remove('.packs/0c/q.idx')).toBe(false);
    expect(await c.read('.packs/0c/q.idx')).toBeNull();
    // Keys that are not immutable are never cached.
    await c.writeAtomic('.locks/x.lock', Buffer.from('l'));
    expect(fs.existsSync(path.join(cacheDir, '.locks'))).toBe(false);
  });

  it('a full bucket (quota) fails the write with CBT_REPO_NO_SPACE and leaves no object', async () => {
    setBucketQuota(env, bucket, 1024 * 1024);
    await s.writeAtomic('a', Buffer.alloc(700 * 1024));
    await expect(s.writeAtomic('b', Buffer.alloc(700 * 1024))).rejects.toMatchObject({ code: 'CBT_REPO_NO_SPACE', details: { path: `s3://${bucket}/repo/b` } });
    expect(await s.read('b')).toBeNull();
  });

  it('wrong keys, a missing bucket, a silent and a closed endpoint each have their code', async () => {
    const bad = storageOf(env, bucket, { secretKey: 'wrong' });
    await expect(bad.list('vm')).rejects.toMatchObject({ code: 'CBT_S3_AUTH_FAILED' });
    await expect(bad.read('x')).rejects.toMatchObject({ code: 'CBT_S3_AUTH_FAILED' });
    const none = storageOf(env, `${bucket}-none`);
    await expect(none.list('vm')).rejects.toMatchObject({ code: 'CBT_S3_BUCKET_NOT_FOUND' });
    await expect(none.read('x')).rejects.toMatchObject({ code: 'CBT_S3_BUCKET_NOT_FOUND' });

    const sockets: net.Socket[] = [];
    const silent = net.createServer((sock) => sockets.push(sock));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const hung = storageOf(env, bucket, { endpoint: `http://127.0.0.1:${port}`, timeoutMs: 500 });
      await expect(hung.read('x')).rejects.toMatchObject({ code: 'CBT_S3_TIMEOUT', details: { timeoutMs: 500 } });
      await expect(hung.writeAtomic('x', Buffer.from('x'))).rejects.toMatchObject({ code: 'CBT_S3_TIMEOUT' });
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => silent.close(r));
    }
    const closedPort = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const closed = storageOf(env, bucket, { endpoint: `http://127.0.0.1:${closedPort}` });
    await expect(closed.read('x')).rejects.toMatchObject({ code: 'CBT_S3_UNREACHABLE' });
  });
});
