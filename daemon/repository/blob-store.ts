/**
 * The one interface through which the rest of the repository stores and reads blobs (chunks and
 * index pages), whatever the repository's format:
 * - format 1: `ChunkStore` (chunk-store.ts), one file per blob under `.chunks/` and `.pages/`;
 * - format 2: `PackStore` (pack-store.ts), blobs in pack files under `.packs/` (pack-format.ts).
 * The disk writer, restore, verify, the disk chunk reader (restore, NBD backup reader) and GC's
 * mark use only this; `RepositoryBlobs` is what a Repository holds: the two stores of its format
 * and the write sessions.
 *
 * A write session (`BlobSession`) belongs to one backup writer. Everything put in it becomes
 * durable in `commit` (format 1: the sync batch; format 2: every open pack sealed, every .idx
 * written), which the writer calls before it writes the manifest; `abort` drops what is not
 * durable (format 2: the unsealed packs).
 */
import type { BlobKind } from './file-formats';
import { RepoChunkCorruptError, RepoChunkMissingError, RepoPageCorruptError, RepoPageMissingError } from './repository-errors';
import type { RestoreBatchResult } from './blob-workers';
import type { ChunkJob } from './restore-workers';
import type { StoreBlobResult } from './store-blob';

export type BlobState = 'ok' | 'missing' | 'corrupt';

/** `check` of either store: a read that succeeds is 'ok'; a missing or corrupt blob answers its state, other errors throw. */
export async function blobStateByReading(read: () => Promise<unknown>): Promise<BlobState> {
  try {
    await read();
    return 'ok';
  } catch (err) {
    if (RepoChunkMissingError.is(err) || RepoPageMissingError.is(err)) return 'missing';
    if (RepoChunkCorruptError.is(err) || RepoPageCorruptError.is(err)) return 'corrupt';
    throw err;
  }
}

export interface BlobSession {
  readonly format: 1 | 2;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface InsertOptions {
  /** Rewrite even if present (verify recorded the stored copy as bad). */
  force?: boolean;
  /** Compare a present copy with `plain` and rewrite it when damaged (default true). */
  verify?: boolean;
  /** A blob a committed base backup references (kept alive by it): not touched. */
  present?: 'base';
  session: BlobSession;
}

/** The answer of `putChunk`, the disk writer's one call per chunk. */
export interface PutChunkResult {
  digest: string;
  /** unchanged: same as the base chunk (its copy intact); known: the repository had it; stored: written now. */
  outcome: 'unchanged' | 'known' | 'stored';
  storedBytes: number;
  /** A damaged stored copy was found and a good one written. */
  repaired: boolean;
}

export interface BlobStore {
  readonly kind: BlobKind;
  /** Puts a blob whose digest the caller knows (index pages). */
  insert(digest: string, plain: Buffer, opts: InsertOptions): Promise<StoreBlobResult>;
  /**
   * Hashes, compares with the base digest, dedups and stores a chunk (format 2: one worker trip).
   * `base`: the base's digest at this index when the caller may reuse it; `forced(d)`: whether a
   * stored copy of `d` is known bad (it is then written anew, never reused).
   */
  putChunk(plain: Buffer, opts: { base: string | null; forced(digest: string): boolean; session: BlobSession }): Promise<PutChunkResult>;
  /** `putChunk` of several chunks in one worker trip (format 2); `bases[k]` is chunk k's base. Absent: one `putChunk` each. */
  putChunks?(plains: Buffer[], opts: { bases: (string | null)[]; forced(digest: string): boolean; session: BlobSession }): Promise<PutChunkResult[]>;
  /**
   * Reads and checks a blob; missing/corrupt throw the kind's CbtError. `maxPlain` (format 1) lets
   * the read happen in one call; `fast` leaves out the CRC (the SHA-256 finds the same); `into`
   * (shared memory of the content's exact length) receives the content.
   */
  read(digest: string, opts?: { maxPlain?: number; fast?: boolean; into?: Buffer }): Promise<Buffer>;
  check(digest: string): Promise<BlobState>;
  /** Restores chunks into the open file `fd` on one worker; missing/corrupt ones are answered, not written. */
  restoreBatch(fd: number, jobs: ChunkJob[]): Promise<RestoreBatchResult>;
  /** The order in which restore should hand out `jobs` (format 2: by pack and offset). */
  restoreOrder(jobs: ChunkJob[]): Promise<ChunkJob[]>;
  /** Where the blob is (or would be), for error messages. */
  whereIs(digest: string): string;
  /** Format 2: the pack and offset of the blob, for verify's problems; null if not in any pack (format 1: always null). */
  locate(digest: string): Promise<{ pack: string; packOffset: number } | null>;
}

export interface RepositoryBlobs {
  readonly format: 1 | 2;
  readonly chunks: BlobStore;
  readonly pages: BlobStore;
  openSession(): BlobSession;
}
