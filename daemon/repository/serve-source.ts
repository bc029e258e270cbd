/**
 * One disk of a committed backup as `pve-cbt serve` and the live restore export it
 * (daemon/nbd/nbd-server.ts): the backup reader (backup-reader.ts) plus `readRun`, the chunks of
 * one NBD request read together.
 *
 * Format 2 on a local directory: the chunks' places come from the pack lookup, runs of blobs that
 * lie back to back in one pack (a full backup's chunks do, in disk order) are read with one
 * pread each on this source's run workers (run-read-workers.ts), decoded, checked (SHA-256 or the
 * keyed digest against the name, length against the index) and moved to this thread in the
 * run's own buffer (no copy). A chunk the run read did not find good, or a whole run whose worker failed, is read
 * again through the chunk store's full read (other locations, a lookup refresh), which answers
 * with the repository's own errors. Format 1 and object storage read chunk by chunk through it.
 */
import { BackupDiskReader, type OpenedDisk } from './backup-reader';
import { magicOf } from './file-formats';
import type { RepositoryKeys } from './key-file';
import { PackStore } from './pack-store';
import { RunReadWorkers, type RunBlob, type RunJob } from './run-read-workers';
import type { RepositoryStorage } from './storage';

export class ServeDiskSource extends BackupDiskReader {
  /** Chunks answered by run reads and by the chunk store's read (tests, the bench). */
  readonly counts = { runChunks: 0, runs: 0, single: 0 };
  /** Pack file paths by pack id (a path.join per chunk showed in profiles). */
  private readonly packFiles = new Map<string, string>();

  private constructor(
    opened: OpenedDisk,
    backupId: string,
    disk: string,
    private readonly packs: { store: PackStore; runs: RunReadWorkers } | null,
  ) {
    super(backupId, disk, opened.reader, opened.workers);
  }

  static override async open(repoDir: string, backupId: string, disk: string, keys?: RepositoryKeys, storage?: RepositoryStorage): Promise<ServeDiskSource> {
    const opened = await BackupDiskReader.openParts(repoDir, backupId, disk, keys, storage);
    const { repo, blobs } = opened;
    try {
      let packs: { store: PackStore; runs: RunReadWorkers } | null = null;
      if (blobs instanceof PackStore && !blobs.remote && repo.storage.localPath) {
        await blobs.lookup.ensureLoaded();
        packs = { store: blobs, runs: new RunReadWorkers(magicOf('chunk'), repo.blobKeys()) };
      }
      return new ServeDiskSource(opened, backupId, disk, packs);
    } catch (err) {
      await opened.workers.close();
      throw err;
    }
  }

  /** Plain content of non-zero chunk `i`, checked. */
  override readChunk(i: number): Promise<Buffer> {
    this.counts.single++;
    return super.readChunk(i);
  }

  /** Plain contents of the non-zero chunks `first` .. `first + count - 1`, each checked; one promise per chunk. */
  readRun(first: number, count: number): Promise<Buffer>[] {
    if (!this.packs || count === 1) return Array.from({ length: count }, (_, k) => this.readChunk(first + k));
    const { store, runs } = this.packs;
    const out: Promise<Buffer>[] = new Array<Promise<Buffer>>(count);
    let job: (RunJob & { ks: number[] }) | null = null;
    const send = (j: RunJob & { ks: number[] }): void => {
      this.counts.runs++;
      const { ks, ...wire } = j;
      // A worker that failed (an I/O error, a thread gone): each chunk through the full read.
      const done = runs.read(wire).catch(() => null);
      ks.forEach((k, n) => {
        out[k] = done.then((plains) => {
          const plain = plains?.[n];
          if (!plain) return this.readChunk(first + k);
          this.counts.runChunks++;
          return plain;
        });
      });
    };
    for (let k = 0; k < count; k++) {
      const i = first + k;
      const length = this.reader.chunkLength(i);
      const digest = this.reader.digestAt(i);
      const loc = store.lookup.allSync(digest).find((l) => l.kind === 'chunk');
      if (!loc || loc.plainLength !== length) {
        out[k] = this.readChunk(i);
      } else {
        const file = this.packFiles.get(loc.packId) ?? store.packFile(loc.packId);
        this.packFiles.set(loc.packId, file);
        if (job && (job.file !== file || job.offset + job.length !== loc.offset)) {
          send(job);
          job = null;
        }
        job ??= { file, offset: loc.offset, length: 0, blobs: [], ks: [] };
        const blob: RunBlob = { digest, at: job.length, stored: loc.storedLength, plain: length };
        job.blobs.push(blob);
        job.ks.push(k);
        job.length += loc.storedLength;
      }
    }
    if (job) send(job);
    return out;
  }

  override close(): Promise<void> {
    return Promise.all([super.close(), this.packs?.runs.close()]).then(() => undefined);
  }
}
