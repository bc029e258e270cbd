/**
 * Content-addressed blob store for chunks (`.chunks/`) and index pages (`.pages/`).
 *
 * A blob is named by the SHA-256 of its plain content and lives at `<dir>/<first 2 hex>/<digest>`
 * (256 shard folders, created on demand). Few folders on purpose: creating a folder costs more
 * than writing a chunk, and with 4 hex digits (PBS's layout, which pre-creates all 65536) a fresh
 * repository made one per chunk; ext4's hashed directories keep lookups fast at 10^5 files each. Its bytes follow file-formats.ts: magic,
 * compression, CRC-32 of the stored bytes, so corruption is found on every read.
 *
 * Insert runs on a blob worker thread (store-blob.ts, which states the rules): a blob that exists
 * and is complete (not an empty or truncated file left by a crash before the sync) gets its mtime
 * set to now and the insert reports `existed` (the touch is what keeps it alive through a
 * concurrent GC, see garbage-collect.ts); otherwise it is encoded and written via a temporary file
 * and rename. File and shard folder fsyncs are deferred to the manifest commit
 * (`storage.syncBatch()`), which happens before anything references the blob durably.
 * `force` rewrites a blob that exists but is known bad (verify recorded it), repairing it in place.
 * `verify` compares a present blob with the true bytes the caller holds and rewrites it when it was
 * damaged (same size, other bytes): a backup never references a copy it could have found damaged.
 *
 * All blob I/O goes through the storage interface (storage.ts): listing, stat, rename and removal
 * (garbage-collect.ts) through its methods; store, load and restore through its local-files
 * capability (`storage.localPath`), on which the blob workers make plain file calls. This class is
 * the one place that asks for a blob's file (`fileOf`): restore, verify, GC and the NBD server's
 * reader all come through it. A backend without local files (the S3 backend of a later issue)
 * plugs in here: `insert`, `read` and `restoreBatch` then move the stored bytes with the
 * storage's own calls (e.g. get/put of `keyOf(digest)`), leaving encoding and checking on the
 * workers; until then such a storage is refused with CBT_REPO_STORAGE_NOT_LOCAL.
 */
import { SyncBatch, type RepositoryStorage } from './storage';
import type { BlobSession, BlobStore, InsertOptions, PutChunkResult, RepositoryBlobs } from './blob-store';

/** Hex digits of the digest that name its shard folder. */
export const SHARD_HEX_DIGITS = 2;

export function shardOf(digest: string): string {
  return digest.slice(0, SHARD_HEX_DIGITS);
}
import type { BlobWorkers, RestoreBatchResult } from './blob-workers';
import type { ChunkJob } from './restore-workers';
import type { StoreBlobResult } from './store-blob';
import { magicOf, type BlobKind, type Compression } from './file-formats';
import {
  RepoChunkCorruptError,
  RepoChunkMissingError,
  RepoPageCorruptError,
  RepoPageMissingError,
  RepoStorageNotLocalError,
  noSpaceOr,
} from './repository-errors';

export type { BlobState } from './blob-store';
import { blobStateByReading, type BlobState } from './blob-store';

/** Format 1's write session: the sync batch of one backup writer (storage.ts). */
export class SyncBatchSession implements BlobSession {
  readonly format = 1 as const;
  readonly batch = new SyncBatch();
  constructor(private readonly storage: RepositoryStorage) {}
  commit(): Promise<void> {
    return this.storage.syncBatch(this.batch);
  }
  async abort(): Promise<void> {
    // Blob files written without a sync are harmless: GC removes them once unreferenced and old.
  }
}

/** The blob stores of a format-1 repository (blob-store.ts). */
export class Format1Blobs implements RepositoryBlobs {
  readonly format = 1 as const;
  readonly chunks: ChunkStore;
  readonly pages: ChunkStore;
  constructor(
    private readonly storage: RepositoryStorage,
    compression: Compression,
    workers: BlobWorkers,
  ) {
    this.chunks = new ChunkStore(storage, 'chunk', compression, workers);
    this.pages = new ChunkStore(storage, 'page', compression, workers);
  }
  openSession(): SyncBatchSession {
    return new SyncBatchSession(this.storage);
  }
}

export class ChunkStore implements BlobStore {
  readonly dir: string;

  constructor(
    private readonly storage: RepositoryStorage,
    readonly kind: BlobKind,
    private readonly compression: Compression,
    private readonly workers: BlobWorkers,
  ) {
    this.dir = kind === 'chunk' ? '.chunks' : '.pages';
  }

  keyOf(digest: string): string {
    return `${this.dir}/${shardOf(digest)}/${digest}`;
  }

  /** The local file of a blob, for the workers' file calls (see the module header). */
  fileOf(digest: string): string {
    const key = this.keyOf(digest);
    if (!this.storage.localPath) throw RepoStorageNotLocalError({ root: this.storage.root, key });
    return this.storage.localPath(key);
  }

  /**
   * Puts a blob (see the module header). `verify` (default true) checks a present copy against
   * `plain`; `present: 'base'` is for a blob a committed backup this writer cloned from references
   * (durable, kept alive by the writer's lock): found intact it is neither touched nor batched.
   */
  async insert(digest: string, plain: Buffer, opts: Omit<InsertOptions, 'session'> & ({ batch: SyncBatch } | { session: BlobSession })): Promise<StoreBlobResult> {
    const batch = 'batch' in opts ? opts.batch : (opts.session as SyncBatchSession).batch;
    const key = this.keyOf(digest);
    const file = this.fileOf(digest);
    const base = opts.present === 'base';
    let stored: StoreBlobResult;
    try {
      stored = await this.workers.store({
        file,
        plain,
        magic: magicOf(this.kind),
        compress: this.compression === 'auto',
        force: opts.force === true,
        verify: opts.verify !== false,
        touch: !base,
      });
    } catch (err) {
      throw noSpaceOr(err, file);
    }
    // A blob found present joins the batch too: another writer may have written it moments ago
    // without a sync yet (a concurrent backup, or one that failed before its commit), and this
    // backup's manifest must not reference it before it is durable.
    if (!(base && stored.existed)) this.storage.addToBatch(batch, key, stored.storedBytes);
    return stored;
  }

  /** Format 1: hash on a worker, then insert (two trips; format 2 does it in one). */
  async putChunk(plain: Buffer, opts: { base: string | null; forced(digest: string): boolean; session: BlobSession }): Promise<PutChunkResult> {
    const digest = await this.workers.sha256Hex(plain);
    const force = opts.forced(digest);
    if (!force && opts.base === digest) {
      // The base's copy is referenced again: checked against the true bytes held here.
      const { repaired } = await this.insert(digest, plain, { present: 'base', session: opts.session });
      return { digest, outcome: 'unchanged', storedBytes: 0, repaired };
    }
    const { existed, storedBytes, repaired } = await this.insert(digest, plain, { force, session: opts.session });
    return { digest, outcome: existed ? 'known' : 'stored', storedBytes, repaired };
  }

  async restoreOrder(jobs: ChunkJob[]): Promise<ChunkJob[]> {
    return jobs;
  }

  whereIs(digest: string): string {
    return this.storage.localPath ? this.fileOf(digest) : this.keyOf(digest);
  }

  async locate(): Promise<null> {
    return null;
  }

  /**
   * Reads and checks a blob on a blob worker (load-blob.ts): CRC of the stored bytes, then SHA-256
   * of the plain content. `maxPlain` (a chunk's size) lets the read happen in one call; `fast`
   * leaves out the CRC, which the SHA-256 check makes redundant (restore, base chunks); verify keeps
   * both to report the precise reason. With `into` (shared memory of the content's exact length)
   * the worker writes the content there and `into` is returned; otherwise the buffer returned
   * belongs to the caller.
   */
  async read(digest: string, opts: { maxPlain?: number; fast?: boolean; into?: Buffer } = {}): Promise<Buffer> {
    const where = this.fileOf(digest);
    const maxPlain = opts.into?.length ?? opts.maxPlain;
    const r = await this.workers.load({
      file: where,
      digest,
      magic: magicOf(this.kind),
      checkCrc: opts.fast !== true,
      ...(maxPlain === undefined ? {} : { maxPlain }),
      ...(opts.into ? { into: opts.into } : {}),
    });
    if (r.state === 'ok') return r.plain;
    if (r.state === 'missing') {
      throw this.kind === 'chunk' ? RepoChunkMissingError({ digest, path: where }) : RepoPageMissingError({ digest, path: where });
    }
    throw this.corrupt(digest, where, r.reason === 'bad magic' ? `bad magic for a ${this.kind}` : r.reason);
  }

  /**
   * Restores chunks into the open file `fd` on one worker (restore-workers.ts schedules the
   * batches): each is read, checked like `read` with `fast` (SHA-256 and length) and written at
   * its offset; the ones missing or corrupt are answered, not written.
   */
  async restoreBatch(fd: number, jobs: ChunkJob[]): Promise<RestoreBatchResult> {
    return await this.workers.restoreBatch(fd, magicOf(this.kind), jobs.map((j) => ({ file: this.fileOf(j.digest), digest: j.digest, offset: j.offset, length: j.length })));
  }

  /** Like read, but answers the state instead of throwing for missing or corrupt blobs. */
  check(digest: string): Promise<BlobState> {
    return blobStateByReading(() => this.read(digest));
  }

  private corrupt(digest: string, where: string, reason: string): Error {
    return this.kind === 'chunk'
      ? RepoChunkCorruptError({ digest, path: where, reason })
      : RepoPageCorruptError({ digest, path: where, reason });
  }
}
