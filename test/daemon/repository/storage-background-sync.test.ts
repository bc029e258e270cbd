import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LocalDirStorage, SyncBatch } from '../../../daemon/repository/storage';
import { tempDir } from './repo-test-helpers';

/** A large batch starts syncfs in the background (real file system); the commit's sync waits for it. */
describe('background flushing of a large batch', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('starts a flush once 128 MiB are written, and syncBatch completes the batch after it', async () => {
    const storage = new LocalDirStorage(dir);
    const batch = new SyncBatch();
    const blob = crypto.randomBytes(4 * 1024 * 1024);
    let flushSeen = false;
    for (let i = 0; i < 33; i++) {
      // As the chunk store's workers write blobs: no fsync, then the key joins the batch.
      const key = `.chunks/${String(i % 4).padStart(2, '0')}/blob-${i}`;
      fs.mkdirSync(path.dirname(storage.localPath(key)), { recursive: true });
      await fs.promises.writeFile(storage.localPath(key), blob);
      storage.addToBatch(batch, key, blob.length);
      flushSeen ||= batch.background?.flushing === true;
    }
    expect(flushSeen).toBe(true);
    await storage.syncBatch(batch);
    expect(batch.background?.flushing).toBe(false);
    expect(await batch.background?.settle()).toBeUndefined();
    expect(batch.keys.size).toBe(0);
    expect(batch.wholeFileSystem).toBe(false);
    expect(fs.statSync(path.join(dir, '.chunks', '00', 'blob-0')).size).toBe(blob.length);
  });
});
