/**
 * One disk of a committed backup, read chunk by chunk: the reader restore (restore.ts) and the
 * NBD server's backup view (backup-reader.ts) share.
 *
 * `open` loads the disk's whole digest table from its index pages (digest-table.ts) and reports
 * the pages it could not read; the caller decides how to fail. Then a zero chunk is known from the
 * table without any I/O, and any other chunk is read through the chunk store and checked the way
 * every blob read is (load-blob.ts, on the blob workers): SHA-256 against its name, and its length
 * against the index. Restore into a file hands the same chunks to the workers in batches instead
 * (`restoreJobs`, restore-workers.ts), checked by the same code.
 */
import type { BlobStore } from './blob-store';
import { DIGEST_BYTES } from './digest';
import { loadDigestTable, type BadPage } from './digest-table';
import { chunkLength, geometry, isZeroDigest, type IndexGeometry } from './disk-index';
import { diskPages, type Manifest } from './manifest';
import type { ChunkJob } from './restore-workers';
import {
  RepoChunkCorruptError,
  RepoChunkMissingError,
  RepoDiskNotFoundError,
  RepoPageCorruptError,
  RepoPageMissingError,
} from './repository-errors';

export function isBlobProblem(err: unknown): boolean {
  return RepoChunkCorruptError.is(err) || RepoChunkMissingError.is(err) || RepoPageCorruptError.is(err) || RepoPageMissingError.is(err);
}

export class DiskChunkReader {
  private constructor(
    readonly geometry: IndexGeometry,
    private readonly table: Buffer,
    private readonly chunks: BlobStore,
  ) {}

  /** The reader of `diskName` in `manifest`, and the index pages that were missing or corrupt. */
  static async open(stores: { chunks: BlobStore; pages: BlobStore }, manifest: Manifest, diskName: string): Promise<{ reader: DiskChunkReader; badPages: BadPage[] }> {
    const entry = manifest.disks.find((d) => d.name === diskName);
    if (!entry) throw RepoDiskNotFoundError({ backupId: manifest.id, disk: diskName });
    const g = geometry(entry.size, entry.chunkSize, entry.pageEntries);
    const { table, badPages } = await loadDigestTable(stores.pages, g, diskPages(entry));
    return { reader: new DiskChunkReader(g, table, stores.chunks), badPages };
  }

  /** Disk offset where bad page `b`'s range starts. */
  pageOffset(b: BadPage): number {
    return b.page * this.geometry.pageEntries * this.geometry.chunkSize;
  }

  digestAt(i: number): string {
    return this.table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  isZeroChunk(i: number): boolean {
    return isZeroDigest(this.digestAt(i));
  }

  chunkLength(i: number): number {
    return chunkLength(this.geometry, i);
  }

  /** Plain content of non-zero chunk `i`, checked; a missing or corrupt one throws the chunk store's error. */
  async read(i: number): Promise<Buffer> {
    const digest = this.digestAt(i);
    const data = await this.chunks.read(digest, { maxPlain: this.chunkLength(i), fast: true });
    if (data.length !== this.chunkLength(i)) {
      throw RepoChunkCorruptError({ digest, path: this.chunks.whereIs(digest), reason: `length ${data.length}, the index expects ${this.chunkLength(i)}` });
    }
    return data;
  }

  /** Like read, but null for a chunk that is missing or corrupt. */
  async readOrNull(i: number): Promise<Buffer | null> {
    try {
      return await this.read(i);
    } catch (err) {
      if (!isBlobProblem(err)) throw err;
      return null;
    }
  }

  /** The non-zero chunks as restore jobs (restore-workers.ts), and the bytes the zero ones cover. */
  restoreJobs(): { jobs: ChunkJob[]; zeroBytes: number } {
    const jobs: ChunkJob[] = [];
    let zeroBytes = 0;
    for (let i = 0; i < this.geometry.chunkCount; i++) {
      if (this.isZeroChunk(i)) zeroBytes += this.chunkLength(i);
      else jobs.push({ digest: this.digestAt(i), offset: i * this.geometry.chunkSize, length: this.chunkLength(i) });
    }
    return { jobs, zeroBytes };
  }
}
