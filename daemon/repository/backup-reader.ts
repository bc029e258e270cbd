/**
 * Random-access, read-only view of one disk of a committed backup (the NBD server's source).
 *
 * Opens the repository without creating anything, loads the disk's digest table once (every index
 * page checked), then answers chunk reads by index: a zero chunk is known from the table without
 * any I/O, other chunks are read and checked (SHA-256 against their name) on the blob workers.
 * A missing or corrupt chunk rejects with the repository's error; the caller turns it into EIO.
 */
import { BlobWorkers } from './blob-workers';
import { ChunkStore } from './chunk-store';
import { DIGEST_BYTES } from './digest';
import { loadDigestTable } from './digest-table';
import { chunkLength, geometry, isZeroDigest, type IndexGeometry } from './disk-index';
import { diskPages } from './manifest';
import { Repository } from './repository';
import { RepoDiskNotFoundError, RepoRestoreFailedError } from './repository-errors';

export class BackupDiskReader {
  private constructor(
    readonly backupId: string,
    readonly disk: string,
    readonly geometry: IndexGeometry,
    private readonly table: Buffer,
    private readonly chunks: ChunkStore,
    private readonly workers: BlobWorkers,
  ) {}

  static async open(repoDir: string, backupId: string, disk: string): Promise<BackupDiskReader> {
    const repo = await Repository.open(repoDir, { create: false });
    const manifest = await repo.readManifest(backupId);
    const entry = manifest.disks.find((d) => d.name === disk);
    if (!entry) throw RepoDiskNotFoundError({ backupId, disk });
    const g = geometry(entry.size, entry.chunkSize, entry.pageEntries);
    const workers = new BlobWorkers();
    try {
      const pages = new ChunkStore(repo.storage, 'page', 'auto', workers);
      const { table, badPages } = await loadDigestTable(pages, g, diskPages(entry));
      if (badPages.length) {
        throw RepoRestoreFailedError({
          backupId,
          disk,
          offsets: badPages.map((b) => b.page * g.pageEntries * g.chunkSize),
          reason: 'index pages missing or corrupt',
        });
      }
      return new BackupDiskReader(backupId, disk, g, table, new ChunkStore(repo.storage, 'chunk', 'auto', workers), workers);
    } catch (err) {
      await workers.close();
      throw err;
    }
  }

  get size(): number {
    return this.geometry.size;
  }

  isZeroChunk(i: number): boolean {
    return isZeroDigest(this.table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES));
  }

  chunkLength(i: number): number {
    return chunkLength(this.geometry, i);
  }

  /** Plain content of non-zero chunk `i`, checked. */
  readChunk(i: number): Promise<Buffer> {
    const digest = this.table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
    return this.chunks.read(digest, { maxPlain: this.chunkLength(i), fast: true });
  }

  close(): Promise<void> {
    return this.workers.close();
  }
}
