/**
 * Random-access, read-only view of one disk of a committed backup (the NBD server's source).
 *
 * Opens the repository without creating anything and reads the disk through the reader restore
 * uses (disk-chunk-reader.ts): the digest table is loaded once (every index page checked), a zero
 * chunk is known from the table without any I/O, other chunks are read and checked (SHA-256
 * against their name, length against the index) on this view's own blob workers.
 * A missing or corrupt chunk rejects with the repository's error; the caller turns it into EIO.
 */
import { BlobWorkers } from './blob-workers';
import { DiskChunkReader } from './disk-chunk-reader';
import type { IndexGeometry } from './disk-index';
import { Repository, blobsFor } from './repository';
import type { RepositoryKeys } from './key-file';
import type { RepositoryStorage } from './storage';
import { RepoRestoreFailedError } from './repository-errors';

/** What `BackupDiskReader.openParts` opened: the repository, the disk's reader and the stores it reads through. */
export interface OpenedDisk {
  readonly repo: Repository;
  readonly reader: DiskChunkReader;
  readonly blobs: ReturnType<typeof blobsFor>;
  readonly workers: BlobWorkers;
}

export class BackupDiskReader {
  protected constructor(
    readonly backupId: string,
    readonly disk: string,
    protected readonly reader: DiskChunkReader,
    private readonly workers: BlobWorkers,
  ) {}

  /** `keys`: an encrypted repository's (key-file.ts), checked against the marker like any open; `storage`: the repository's backend when it is not the directory `repoDir` (an s3:// one). */
  static async open(repoDir: string, backupId: string, disk: string, keys?: RepositoryKeys, storage?: RepositoryStorage): Promise<BackupDiskReader> {
    const { reader, workers } = await BackupDiskReader.openParts(repoDir, backupId, disk, keys, storage);
    return new BackupDiskReader(backupId, disk, reader, workers);
  }

  /** The repository opened without creating anything, the disk's digest table loaded (every index page checked), on workers of this view's own; the caller closes `workers` if it fails later. */
  protected static async openParts(repoDir: string, backupId: string, disk: string, keys?: RepositoryKeys, storage?: RepositoryStorage): Promise<OpenedDisk> {
    const repo = await Repository.open(repoDir, { create: false, ...(keys ? { keys } : {}), ...(storage ? { storage } : {}) });
    const manifest = await repo.readManifest(backupId);
    const workers = new BlobWorkers(undefined, repo.blobKeys());
    try {
      // The stores of the repository's format, on this view's own workers.
      const blobs = blobsFor(repo.format, repo.storage, 'auto', workers);
      const { reader, badPages } = await DiskChunkReader.open({ chunks: blobs.chunks, pages: blobs.pages }, manifest, disk);
      if (badPages.length) {
        throw RepoRestoreFailedError({
          backupId,
          disk,
          offsets: badPages.map((b) => reader.pageOffset(b)),
          reason: 'index pages missing or corrupt',
        });
      }
      return { repo, reader, blobs, workers };
    } catch (err) {
      await workers.close();
      throw err;
    }
  }

  get geometry(): IndexGeometry {
    return this.reader.geometry;
  }

  get size(): number {
    return this.reader.geometry.size;
  }

  isZeroChunk(i: number): boolean {
    return this.reader.isZeroChunk(i);
  }

  chunkLength(i: number): number {
    return this.reader.chunkLength(i);
  }

  /** Plain content of non-zero chunk `i`, checked. */
  readChunk(i: number): Promise<Buffer> {
    return this.reader.read(i);
  }

  close(): Promise<void> {
    return this.workers.close();
  }
}
