/**
 * Registry of blobs verify found missing or corrupt: one empty marker file per blob in `.bad/`
 * (`chunk-<digest>`, `page-<digest>`). Writers load it when a backup starts: a base chunk listed
 * here is reported by `badBaseChunks()` so the engine re-reads it, and an insert of a listed digest
 * rewrites the blob instead of trusting the existing file. The marker is dropped once a committed
 * backup has rewritten the blob. Markers are files rather than one JSON file so that concurrent
 * verify and writers never lose each other's updates.
 */
import type { RepositoryStorage } from './storage';
import type { BlobKind } from './file-formats';

export const BAD_DIR = '.bad';

export class BadBlobRegistry {
  constructor(private readonly storage: RepositoryStorage) {}

  async load(): Promise<{ chunks: Set<string>; pages: Set<string> }> {
    const chunks = new Set<string>();
    const pages = new Set<string>();
    for (const f of await this.storage.list(BAD_DIR)) {
      if (f.startsWith('chunk-')) chunks.add(f.slice(6));
      else if (f.startsWith('page-')) pages.add(f.slice(5));
    }
    return { chunks, pages };
  }

  async add(kind: BlobKind, digest: string): Promise<void> {
    await this.storage.writeAtomic(`${BAD_DIR}/${kind}-${digest}`, Buffer.alloc(0));
  }

  async clear(kind: BlobKind, digest: string): Promise<void> {
    await this.storage.remove(`${BAD_DIR}/${kind}-${digest}`);
  }
}
