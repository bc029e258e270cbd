/**
 * Puts one blob into its file in a local chunk-store folder with plain synchronous calls. It runs
 * on the blob worker threads (blob-workers.ts): a full backup creates thousands of files, and
 * driving each through the main thread's async file calls (existence check, open, write, close,
 * rename: five thread-pool round trips, each waking a thread that preempts the NBD receiver on a
 * small host) cost more main-thread time than receiving the data.
 *
 * Semantics (chunk-store.ts relies on them):
 * - A blob file counts as present only if it is complete: a crash before the sync at commit can
 *   leave an empty or truncated file under its final name (delayed allocation), and a backup that
 *   reused it would reference data it cannot restore. Its header says how long it must be, so a
 *   stat and a 20-byte read decide; only lz4 blobs from before the length was recorded are read
 *   back and decoded whole.
 * - `verify` (the caller holds the blob's true bytes): a complete-sized file whose content differs
 *   (bytes flipped, same size) is damaged, and is rewritten with the true bytes, reported
 *   `repaired`. It costs one read into reused memory plus a compare with the true bytes (raw
 *   blobs) or the CRC-32 of the stored payload against its header (lz4 blobs, not decompressed). Without it damage inside a complete-sized
 *   file is verify's to find.
 * - A present blob gets its mtime set to now (what keeps it alive through a concurrent GC, see
 *   garbage-collect.ts) and is reported `existed`; one removed meanwhile is written anew.
 * - Otherwise it is encoded and written to a temporary file, which is renamed over the name (the
 *   repository's one writer, write-via-rename.ts): never fsynced here, the caller's sync batch
 *   makes it durable before anything references it.
 * - `force` rewrites a present blob (one verify recorded as bad).
 * - `touch: false` leaves a present, intact blob alone (no mtime update): a base chunk checked by
 *   a full-compare is kept alive by the writer's lock, and a touch would make its inode dirty.
 * - Files are created 0600 and folders 0700 (`mode` masked by the umask can only lose bits).
 *
 * Self-contained (only its arguments, literals and built-in modules), because the workers run its
 * source text; the blob codec and the writer are passed in. 20 = BLOB_HEADER_SIZE. Async only
 * because the writer serves async callers too: every file call here is synchronous, so a store
 * completes before the worker handles its next message.
 */
import type { writeViaRename } from './write-via-rename';
import type { decodeBlobSync, encodeBlobSync, Lz4Module, storedSizeOf, worthCompressing } from './file-formats';
import type { BlobCipher } from './blob-cipher';

export interface StoreBlobJob {
  file: string;
  plain: Buffer;
  magic: Buffer;
  compress: boolean;
  force: boolean;
  verify: boolean;
  touch: boolean;
}

export interface BlobCodec {
  encode: typeof encodeBlobSync;
  decode: typeof decodeBlobSync;
  probe: typeof worthCompressing;
  sizeOf: typeof storedSizeOf;
  lz4: Lz4Module;
  /** An encrypted repository's blob cipher (blob-cipher.ts); null: blobs are stored unencrypted. */
  cipher: BlobCipher | null;
  /** An encrypted repository's digest key: digests are HMAC-SHA256 under it instead of SHA-256. */
  idKey: Buffer | null;
}

export interface StoreBlobResult {
  existed: boolean;
  storedBytes: number;
  /** A complete-sized file held other content (damaged) and was rewritten. */
  repaired: boolean;
}

/**
 * `knownDirs`: shard folders this thread has made or seen, to save a mkdir per blob (a folder
 * removed since is made again); `scratch`: this thread's read buffer for `verify`.
 */
export async function storeBlob(
  job: StoreBlobJob,
  codec: BlobCodec,
  write: typeof writeViaRename,
  knownDirs: Set<string>,
  scratch: { buf: Buffer } = { buf: Buffer.alloc(0) },
): Promise<StoreBlobResult> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  const zlib = require('node:zlib') as typeof import('node:zlib');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const isCode = (err: unknown, code: string): boolean => (err as NodeJS.ErrnoException)?.code === code;
  const { file, magic } = job;

  // 'absent' (missing, empty or truncated), 'damaged' (complete-sized, other content: only with
  // `verify`) or 'ok'.
  const present = (): 'absent' | 'damaged' | 'ok' => {
    let size: number;
    let fd: number;
    try {
      size = fs.statSync(file).size;
      if (size < 20) return 'absent';
      fd = fs.openSync(file, 'r');
    } catch (err) {
      if (isCode(err, 'ENOENT')) return 'absent';
      throw err;
    }
    let whole: Buffer | undefined;
    let head: Buffer = Buffer.alloc(20);
    try {
      if (job.verify) {
        // Into this thread's scratch memory (a fresh multi-MiB buffer per blob costs its page
        // faults); one byte more than the file has, so a file that grew meanwhile is seen as such.
        if (scratch.buf.length < size + 1) scratch.buf = Buffer.allocUnsafeSlow(Math.max(size + 1, 2 * scratch.buf.length));
        whole = scratch.buf.subarray(0, fs.readSync(fd, scratch.buf, 0, size + 1, 0));
        head = whole.subarray(0, 20);
      } else head = head.subarray(0, fs.readSync(fd, head, 0, 20, 0));
    } finally {
      fs.closeSync(fd);
    }
    const expected = codec.sizeOf(head, magic);
    if (expected === 'bad' || (expected !== 'unknown' && expected !== size)) return 'absent';
    if (whole) {
      // Raw: the payload is the content, compared as is. lz4: the CRC of the stored payload (which
      // the header recorded when it was written) finds flipped bytes without decompressing.
      if (head.readUInt8(8) === 0) return whole.length === size && head.readUInt32LE(16) === job.plain.length && whole.subarray(20).equals(job.plain) ? 'ok' : 'damaged';
      if (expected !== 'unknown') return zlib.crc32(whole.subarray(20)) === head.readUInt32LE(12) && head.readUInt32LE(16) === job.plain.length ? 'ok' : 'damaged';
      const plain = codec.decode(whole, magic, true, codec.lz4, codec.cipher);
      return typeof plain !== 'string' && plain.equals(job.plain) ? 'ok' : 'damaged';
    }
    if (expected !== 'unknown') return 'ok';
    return typeof codec.decode(fs.readFileSync(file), magic, true, codec.lz4, codec.cipher) !== 'string' ? 'ok' : 'absent';
  };

  const state = job.force ? 'damaged' : present();
  if (state === 'ok') {
    if (!job.touch) return { existed: true, storedBytes: 0, repaired: false };
    const now = new Date();
    try {
      fs.utimesSync(file, now, now);
      return { existed: true, storedBytes: 0, repaired: false };
    } catch (err) {
      if (!isCode(err, 'ENOENT')) throw err;
    }
  }

  const parts = codec.encode(job.plain, magic, job.compress, codec.lz4, codec.probe, codec.cipher);
  const storedBytes = parts.reduce((n, b) => n + b.length, 0);
  const dir = path.dirname(file);
  const create = (tmp: string): number => {
    if (!knownDirs.has(dir)) {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      knownDirs.add(dir);
    }
    try {
      return fs.openSync(tmp, 'wx', 0o600);
    } catch (err) {
      if (!isCode(err, 'ENOENT')) throw err;
      // The folder went away behind this thread's back (a repository removed and made anew).
      knownDirs.delete(dir);
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      return fs.openSync(tmp, 'wx', 0o600);
    }
  };
  await write(
    {
      create,
      writev: (fd, bufs) => fs.writevSync(fd, bufs),
      fsync: (fd) => fs.fsyncSync(fd),
      close: (fd) => fs.closeSync(fd),
      rename: (from, to) => fs.renameSync(from, to),
      remove: (f) => fs.rmSync(f, { force: true }),
    },
    file,
    parts,
    { fsync: false },
  );
  return { existed: false, storedBytes, repaired: state === 'damaged' && !job.force };
}
