/**
 * Content-addressed blob store for chunks (`.chunks/`) and index pages (`.pages/`).
 *
 * A blob is named by the SHA-256 of its plain content and lives at `<dir>/<first 2 hex>/<digest>`
 * (256 shard folders, created on demand). Few folders on purpose: creating a folder costs more
 * than writing a chunk, and with 4 hex digits (PBS's layout, which pre-creates all 65536) a fresh
 * repository made one per chunk; ext4's hashed directories keep lookups fast at 10^5 files each. Its bytes follow file-formats.ts: magic,
 * compression, CRC-32 of the stored bytes, so corruption is found on every read.
 *
 * Insert: if the blob exists and is complete (not an empty or truncated file left by a crash before the sync) its mtime is
 * set to now and the insert reports `existed` (the touch is what keeps it alive through a
 * concurrent GC, see garbage-collect.ts); otherwise it is encoded and written via a temporary file
 * and rename. File and shard folder fsyncs are deferred to the manifest commit
 * (`storage.syncBatch()`), which happens before anything references the blob durably.
 * `force` rewrites a blob that exists but is known bad (verify recorded it), repairing it in place.
 */
import type { RepositoryStorage, SyncBatch } from './storage';

/** Hex digits of the digest that name its shard folder. */
export const SHARD_HEX_DIGITS = 2;

export function shardOf(digest: string): string {
  return digest.slice(0, SHARD_HEX_DIGITS);
}
import { BLOB_HEADER_SIZE, BlobFormatError, decodeBlob, encodeBlob, storedSizeOf, type BlobKind, type Compression } from './file-formats';
import { sha256Hex } from './digest';
import {
  RepoChunkCorruptError,
  RepoChunkMissingError,
  RepoPageCorruptError,
  RepoPageMissingError,
} from './repository-errors';

export type BlobState = 'ok' | 'missing' | 'corrupt';

export class ChunkStore {
  readonly dir: string;

  constructor(
    private readonly storage: RepositoryStorage,
    readonly kind: BlobKind,
    private readonly compression: Compression,
  ) {
    this.dir = kind === 'chunk' ? '.chunks' : '.pages';
  }

  keyOf(digest: string): string {
    return `${this.dir}/${shardOf(digest)}/${digest}`;
  }

  async insert(digest: string, plain: Buffer, opts: { force?: boolean; batch?: SyncBatch } = {}): Promise<{ existed: boolean; storedBytes: number }> {
    const key = this.keyOf(digest);
    if (!opts.force && (await this.intact(key)) && (await this.storage.touch(key))) return { existed: true, storedBytes: 0 };
    const parts = await encodeBlob(this.kind, plain, this.compression);
    await this.storage.writeAtomic(key, parts, { batch: opts.batch });
    return { existed: false, storedBytes: parts.reduce((n, b) => n + b.length, 0) };
  }

  /**
   * Reads and checks a blob: CRC of the stored bytes, then SHA-256 of the plain content.
   * `maxPlain` (a chunk's size) lets the read happen in one call; `fast` leaves out the CRC, which
   * the SHA-256 check makes redundant (restore); verify keeps both to report the precise reason.
   */
  async read(digest: string, opts: { maxPlain?: number; fast?: boolean } = {}): Promise<Buffer> {
    const key = this.keyOf(digest);
    const stored = await this.storage.read(key, opts.maxPlain === undefined ? {} : { maxBytes: opts.maxPlain + BLOB_HEADER_SIZE });
    const where = this.storage.localPath(key);
    if (!stored) {
      throw this.kind === 'chunk' ? RepoChunkMissingError({ digest, path: where }) : RepoPageMissingError({ digest, path: where });
    }
    let plain: Buffer;
    try {
      plain = await decodeBlob(this.kind, stored, { skipCrc: opts.fast });
    } catch (err) {
      if (!(err instanceof BlobFormatError)) throw err;
      throw this.corrupt(digest, where, err.message);
    }
    if (sha256Hex(plain) !== digest) throw this.corrupt(digest, where, 'content does not match its digest');
    return plain;
  }

  /** Like read, but answers the state instead of throwing for missing or corrupt blobs. */
  async check(digest: string): Promise<BlobState> {
    try {
      await this.read(digest);
      return 'ok';
    } catch (err) {
      if (RepoChunkMissingError.is(err) || RepoPageMissingError.is(err)) return 'missing';
      if (RepoChunkCorruptError.is(err) || RepoPageCorruptError.is(err)) return 'corrupt';
      throw err;
    }
  }

  /**
   * A blob file counts as present only if it is complete: a crash before the sync at commit can
   * leave an empty or truncated file under its final name (delayed allocation), and a backup that
   * reused it would reference data it cannot restore. Its header says how long it must be, so a
   * stat and a 20-byte read decide; only lz4 blobs from before the length was recorded are read
   * back and decoded whole. Damage inside a complete-sized file is verify's to find.
   */
  private async intact(key: string): Promise<boolean> {
    const st = await this.storage.stat(key);
    if (!st || st.size < BLOB_HEADER_SIZE) return false;
    const head = await this.storage.read(key, { maxBytes: BLOB_HEADER_SIZE });
    if (!head) return false;
    const expected = storedSizeOf(this.kind, head);
    if (expected !== 'unknown') return expected === st.size;
    const stored = await this.storage.read(key);
    if (!stored) return false;
    try {
      await decodeBlob(this.kind, stored);
      return true;
    } catch (err) {
      if (err instanceof BlobFormatError) return false;
      throw err;
    }
  }

  touch(digest: string): Promise<boolean> {
    return this.storage.touch(this.keyOf(digest));
  }

  private corrupt(digest: string, where: string, reason: string): Error {
    return this.kind === 'chunk'
      ? RepoChunkCorruptError({ digest, path: where, reason })
      : RepoPageCorruptError({ digest, path: where, reason });
  }
}
