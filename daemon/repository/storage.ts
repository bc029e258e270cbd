/**
 * The only way the repository touches its backing store, so that object storage can be added later
 * as another implementation. Keys are relative, '/'-separated paths ("vm/100/…/manifest.json").
 *
 * Who uses what (every module of this folder comes through here; none builds a path of its own):
 * - manifests, verify records, the marker, `.bad/` markers: `read`, `writeAtomic`, `stat`,
 *   `rename`, `removeTree`; locks: `createExclusive`, `remove`.
 * - format 2 (pack-format.ts): .idx files with `read`, `writeAtomic`, `touch`, `rename`, `remove`;
 *   pack files are appended and read by the blob workers on `localPath` (pack-worker.ts); an
 *   object store puts a sealed pack as one object and reads (key, offset, length) ranges there.
 * - chunks and index pages: GC lists, stats, renames and removes them with the methods
 *   (garbage-collect.ts); store, load, verify, restore and the NBD reader go through the chunk
 *   store (chunk-store.ts), whose blob workers make plain file calls on `localPath(key)`: a
 *   capability of a local (or locally mounted) directory, optional in this interface.
 * - An object-storage backend (S3) implements the methods (list by prefix, get, put; `rename` as
 *   copy+delete; `syncBatch` a no-op since a put is durable) and leaves `localPath` out. It plugs
 *   in at two places: here, and in ChunkStore (`fileOf` and the three calls that use it: insert,
 *   read, restoreBatch), which must then move the stored bytes with get/put of `keyOf(digest)`
 *   and keep only encoding and checking on the workers. Until then ChunkStore refuses a storage
 *   without `localPath` (CBT_REPO_STORAGE_NOT_LOCAL).
 *
 * Contract (what the repository relies on):
 * - `writeAtomic` makes the whole object appear at once or not at all (local dir: temporary file
 *   in the same directory, rename: write-via-rename.ts), durable when it returns (fsync of file
 *   and directory).
 * - Chunks and index pages are written without fsync by the chunk store's workers (store-blob.ts)
 *   and join a `SyncBatch` (`addToBatch`); `syncBatch` makes them durable together before the
 *   manifest commit: a syncfs of the file system for large batches (PBS's default "filesystem"
 *   sync level), else an fsync each. A crash before that sync can leave an empty or truncated
 *   blob file under its final name on ext4/xfs (ordered mode never exposes stale data); the chunk
 *   store treats such files as absent.
 * - `createExclusive` fails (returns false) if the key exists: used for lock files.
 * - Missing keys are `null`/`false` answers, never exceptions; other I/O errors throw, ENOSPC as
 *   CBT_REPO_NO_SPACE.
 * - Backups are private whatever the umask: folders are created 0700 and files 0600 (a umask can
 *   only take bits away), here and in the chunk store's workers (store-blob.ts).
 */
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { programPath } from '../proc/external-programs';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { writeViaRename, type RenameWriterIo } from './write-via-rename';
import { createExclusiveFile } from '../../shared/fs/create-exclusive-file';
import { BackgroundFlush } from './background-flush';
import { inParallel } from './in-parallel';
import { RepoSyncFailedError, noSpaceOr } from './repository-errors';

export interface StorageStat {
  size: number;
  mtimeMs: number;
  isDirectory: boolean;
}

/** Keys written without fsync, to be made durable together (one batch per backup writer). */
export class SyncBatch {
  /** The keys, until there are so many that the whole file system is synced instead (then empty). */
  readonly keys = new Set<string>();
  /** Set once the batch is large enough for one syncfs (a full's millions of keys are not kept). */
  wholeFileSystem = false;
  /** Flushes started while the batch is written (LocalDirStorage: syncfs, see addToBatch). */
  background: BackgroundFlush | undefined;
}

export interface RepositoryStorage {
  readonly root: string;
  read(key: string): Promise<Buffer | null>;
  writeAtomic(key: string, data: Buffer): Promise<void>;
  createExclusive(key: string, data: Buffer): Promise<boolean>;
  /** A blob at `key`, written or found present without a sync, joins `batch`; `bytes` newly written count towards its background flush. */
  addToBatch(batch: SyncBatch, key: string, bytes: number): void;
  syncBatch(batch: SyncBatch): Promise<void>;
  stat(key: string): Promise<StorageStat | null>;
  /**
   * Sets the key's mtime to now; false if it does not exist. Format 2's per-pack GC rule: a writer
   * relying on a blob of a pack touches the pack's .idx (pack-format.ts). An object store without
   * mtimes implements it as a copy onto itself (or keeps a side record GC reads).
   */
  touch(key: string): Promise<boolean>;
  remove(key: string): Promise<boolean>;
  rename(from: string, to: string): Promise<boolean>;
  list(prefix: string): Promise<string[]>;
  removeTree(key: string): Promise<void>;
  mkdir(key: string): Promise<boolean>;
  /**
   * Capability of a local (or locally mounted) directory: the file of a key. The chunk store's
   * workers make plain file calls on it (chunk-store.ts); a backend without local files (S3)
   * leaves it out, and the chunk store is where it must plug in instead.
   */
  localPath?(key: string): string;
}

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

function isCode(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException)?.code === code;
}

function rethrow(err: unknown, file: string): never {
  throw noSpaceOr(err, file);
}

/** A repository in a local (or locally mounted) POSIX directory. */
export class LocalDirStorage implements RepositoryStorage {
  constructor(readonly root: string) {}

  localPath(key: string): string {
    return path.join(this.root, ...key.split('/'));
  }

  async read(key: string): Promise<Buffer | null> {
    try {
      return await fsp.readFile(this.localPath(key));
    } catch (err) {
      if (isCode(err, 'ENOENT')) return null;
      throw err;
    }
  }

  async writeAtomic(key: string, data: Buffer): Promise<void> {
    const file = this.localPath(key);
    const dir = path.dirname(file);
    try {
      await fsp.mkdir(dir, { recursive: true, mode: DIR_MODE });
      await writeViaRename(ASYNC_IO, file, [data], { fsync: true });
    } catch (err) {
      rethrow(err, file);
    }
    await syncDir(dir);
  }

  async createExclusive(key: string, data: Buffer): Promise<boolean> {
    const file = this.localPath(key);
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true, mode: DIR_MODE });
      return await createExclusiveFile(file, data, FILE_MODE);
    } catch (err) {
      rethrow(err, file);
    }
  }

  /**
   * Makes a batch's writes durable; the manifest commit calls this first. A large batch (a full
   * backup writes thousands of chunks) is flushed with one syncfs(2) of the repository's file
   * system, PBS's "filesystem" sync level: one fsync per file costs more than writing the data.
   * A small batch (an incremental) fsyncs its files, then their folders.
   */
  async syncBatch(batch: SyncBatch): Promise<void> {
    const flushError = await batch.background?.settle();
    if (flushError) rethrow(flushError, this.root);
    const files = [...batch.keys].map((k) => this.localPath(k));
    const dirs = [...new Set(files.map((f) => path.dirname(f)))];
    try {
      if (batch.wholeFileSystem) {
        await syncFileSystem(this.root);
      } else {
        await inParallel(files, SYNC_CONCURRENCY, syncFile);
        await inParallel(dirs, SYNC_CONCURRENCY, syncDir);
      }
    } catch (err) {
      rethrow(err, files[0] ?? this.root);
    }
    batch.keys.clear();
    batch.wholeFileSystem = false;
  }

  /**
   * The kernel starts writing back only when dirty pages reach 10 % of RAM or 30 s of age, so
   * without help a full's gigabytes would sit in memory until the commit and be flushed then, with
   * the disk idle meanwhile. Every BACKGROUND_SYNC_BYTES of a batch a syncfs is started without
   * waiting (background-flush.ts): the disk writes overlap the reading, and the commit's sync finds
   * little left.
   */
  addToBatch(batch: SyncBatch, key: string, bytes: number): void {
    if (!batch.wholeFileSystem) {
      batch.keys.add(key);
      if (batch.keys.size >= SYNCFS_MIN_FILES) {
        batch.wholeFileSystem = true;
        batch.keys.clear();
      }
    }
    batch.background ??= new BackgroundFlush(() => syncFileSystem(this.root), BACKGROUND_SYNC_BYTES);
    batch.background.wrote(bytes);
  }

  async stat(key: string): Promise<StorageStat | null> {
    try {
      const st = await fsp.stat(this.localPath(key));
      return { size: st.size, mtimeMs: st.mtimeMs, isDirectory: st.isDirectory() };
    } catch (err) {
      if (isCode(err, 'ENOENT')) return null;
      throw err;
    }
  }

  async touch(key: string): Promise<boolean> {
    const now = new Date();
    try {
      await fsp.utimes(this.localPath(key), now, now);
      return true;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async remove(key: string): Promise<boolean> {
    try {
      await fsp.unlink(this.localPath(key));
      return true;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async rename(from: string, to: string): Promise<boolean> {
    try {
      await fsp.rename(this.localPath(from), this.localPath(to));
      return true;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return (await fsp.readdir(this.localPath(prefix))).sort();
    } catch (err) {
      if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) return [];
      throw err;
    }
  }

  async removeTree(key: string): Promise<void> {
    const dir = this.localPath(key);
    await fsp.rm(dir, { recursive: true, force: true });
    await syncDir(path.dirname(this.localPath(key))).catch(() => undefined);
  }

  async mkdir(key: string): Promise<boolean> {
    const dir = this.localPath(key);
    await fsp.mkdir(path.dirname(dir), { recursive: true, mode: DIR_MODE });
    try {
      await fsp.mkdir(dir, { mode: DIR_MODE });
      return true;
    } catch (err) {
      if (isCode(err, 'EEXIST')) return false;
      rethrow(err, dir);
    }
  }
}

/** The main thread's file calls for the one writer (write-via-rename.ts). */
const ASYNC_IO: RenameWriterIo = {
  create: promisify((tmp: string, cb: (err: NodeJS.ErrnoException | null, fd: number) => void) => fs.open(tmp, 'wx', FILE_MODE, cb)),
  writev: (fd, parts) => new Promise((resolve, reject) => fs.writev(fd, parts, (err, n) => (err ? reject(err) : resolve(n)))),
  fsync: promisify(fs.fsync),
  close: promisify(fs.close),
  rename: promisify(fs.rename),
  remove: (file) => fsp.rm(file, { force: true }),
};

const SYNC_CONCURRENCY = 16;
/** From this many files on, one syncfs(2) is cheaper than an fsync per file. */
const SYNCFS_MIN_FILES = 256;
/** A batch starts a background syncfs after each this much written (see addToBatch). */
const BACKGROUND_SYNC_BYTES = 128 * 1024 * 1024;

/** syncfs(2) of the file system holding `dir`, via coreutils `sync -f` (Node has no binding). */
function syncFileSystem(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(programPath('sync'), ['--file-system', dir], { timeout: 600_000 }, (err, _stdout, stderr) => {
      if (!err) resolve();
      else reject(RepoSyncFailedError({ dir, reason: stderr.trim() || err.message }, err));
    });
  });
}

async function syncFile(file: string): Promise<void> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    // Removed meanwhile (a GC sweep of an unreferenced blob): nothing to make durable.
    if (isCode(err, 'ENOENT')) return;
    throw err;
  }
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
