import crypto from 'node:crypto';
import fs from 'node:fs';
import { BlobWorkers } from '../../../daemon/repository/blob-workers';
import { ChunkStore } from '../../../daemon/repository/chunk-store';
import { LocalDirStorage, SyncBatch } from '../../../daemon/repository/storage';
import { tempDir } from './repo-test-helpers';

describe('chunk store inserts and the sync batch', () => {
  const workers = new BlobWorkers(2);
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(async () => {
    await workers.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a blob found present joins the batch too: its writer may not have synced it yet', async () => {
    const storage = new LocalDirStorage(dir);
    const store = new ChunkStore(storage, 'chunk', 'auto', workers);
    const plain = crypto.randomBytes(262144);
    const digest = crypto.createHash('sha256').update(plain).digest('hex');
    const first = new SyncBatch();
    expect(await store.insert(digest, plain, { batch: first })).toEqual({ existed: false, storedBytes: plain.length + 20, repaired: false });
    // A second backup that dedups against it before the first one synced.
    const second = new SyncBatch();
    expect(await store.insert(digest, plain, { batch: second })).toEqual({ existed: true, storedBytes: 0, repaired: false });
    expect([...first.keys]).toEqual([store.keyOf(digest)]);
    expect([...second.keys]).toEqual([store.keyOf(digest)]);
    await storage.syncBatch(second);
    expect(second.keys.size).toBe(0);
    expect((await store.read(digest)).equals(plain)).toBe(true);
  });

  it('a storage without local files is refused with a code, naming the blob, and nothing is written', async () => {
    const local = new LocalDirStorage(dir);
    // A backend like the S3 one to come: every method but the local-files capability.
    const remote = Object.assign(Object.create(LocalDirStorage.prototype) as LocalDirStorage, { root: dir, localPath: undefined });
    const store = new ChunkStore(remote, 'chunk', 'auto', workers);
    const plain = crypto.randomBytes(4096);
    const digest = crypto.createHash('sha256').update(plain).digest('hex');
    const refused = { code: 'CBT_REPO_STORAGE_NOT_LOCAL', details: { root: dir, key: store.keyOf(digest) } };
    await expect(store.insert(digest, plain, { batch: new SyncBatch() })).rejects.toMatchObject(refused);
    await expect(store.read(digest)).rejects.toMatchObject(refused);
    await expect(store.restoreBatch(0, [{ digest, offset: 0, length: plain.length }])).rejects.toMatchObject(refused);
    expect(await local.stat(store.keyOf(digest))).toBeNull();
  });

  it('a batch keeps each key once, and no keys at all once one syncfs will cover it', async () => {
    const storage = new LocalDirStorage(dir);
    const batch = new SyncBatch();
    storage.addToBatch(batch, 'a', 0);
    storage.addToBatch(batch, 'a', 0);
    expect([...batch.keys]).toEqual(['a']);
    for (let i = 0; i < 300; i++) storage.addToBatch(batch, `k${i}`, 0);
    expect(batch.wholeFileSystem).toBe(true);
    expect(batch.keys.size).toBe(0);
    await storage.syncBatch(batch);
    expect(batch.wholeFileSystem).toBe(false);
  });
});
