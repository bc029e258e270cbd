/**
 * Reads one blob from its file and checks it, with plain synchronous calls, on the blob worker
 * threads (blob-workers.ts): an incremental reads a base chunk for every chunk it changes, and
 * reading (three file calls), decoding and hashing it on the main thread left the NBD receiver
 * waiting.
 *
 * Checks: the header and CRC (unless `checkCrc` is false: restore and base reads rely on the
 * SHA-256, which finds everything the CRC would), the plain length, then the SHA-256 of the plain
 * content against the blob's name. `maxPlain` (a chunk's size) lets the read happen in one call.
 * Answers the state instead of throwing for missing or corrupt blobs; other errors throw.
 * `scratch` (a worker's own read buffer, grown as needed) saves a fresh buffer per blob: a fresh
 * 128 KiB buffer costs its page faults and GC. The content returned may then be a view into it,
 * valid until the thread's next read: callers copy it out (blob-workers.ts) or write it at once
 * (a restore batch) before they read another blob.
 *
 * Format 2 (pack-format.ts): `at` names the blob's place in its pack, `from` hands over bytes a
 * restore run already read; the checks are the same, a blob in a pack is byte for byte a blob.
 *
 * Used by every read of a blob on the workers: the chunk store's reads (incremental bases, verify,
 * the NBD server's reads, restore to a stream or device) and restore's batches into a file.
 *
 * Self-contained (only its arguments, literals and built-in modules), because the workers run its
 * source text; the decoder is passed in. 20 = BLOB_HEADER_SIZE.
 */
import type { BlobCodec } from './store-blob';

export interface LoadBlobJob {
  file: string;
  digest: string;
  magic: Buffer;
  checkCrc: boolean;
  maxPlain: number | undefined;
  /**
   * Format 2: the blob is `length` bytes at `offset` of the pack file `file` (pack-format.ts); a
   * short read is a corrupt (truncated) blob, a missing pack file a missing blob.
   */
  at?: { offset: number; length: number };
  /** The stored bytes, already read (a restore run of adjacent blobs): only decoded and checked. */
  from?: Buffer;
}

export type LoadBlobResult = { state: 'ok'; plain: Buffer } | { state: 'missing' } | { state: 'corrupt'; reason: string };

export function loadBlobSync(job: LoadBlobJob, codec: Pick<BlobCodec, 'decode' | 'lz4'>, scratch?: { buf: Buffer }): LoadBlobResult {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const crypto = require('node:crypto') as typeof import('node:crypto');
  /* eslint-enable @typescript-eslint/no-require-imports */
  let stored: Buffer;
  try {
    if (job.from) stored = job.from;
    else if (job.at) {
      const fd = fs.openSync(job.file, 'r');
      try {
        const want = job.at.length;
        let buf: Buffer;
        if (!scratch) buf = Buffer.allocUnsafe(want);
        else {
          if (scratch.buf.length < want) scratch.buf = Buffer.allocUnsafeSlow(Math.max(want, 2 * scratch.buf.length));
          buf = scratch.buf;
        }
        stored = buf.subarray(0, fs.readSync(fd, buf, 0, want, job.at.offset));
      } finally {
        fs.closeSync(fd);
      }
      if (stored.length !== job.at.length) return { state: 'corrupt', reason: `truncated: ${stored.length} of ${job.at.length} bytes in the pack` };
    } else if (job.maxPlain === undefined) stored = fs.readFileSync(job.file);
    else {
      const fd = fs.openSync(job.file, 'r');
      try {
        // One byte more than a complete blob can have, so an overlong file is seen as such.
        const want = job.maxPlain + 21;
        let buf: Buffer;
        if (!scratch) buf = Buffer.allocUnsafe(want);
        else {
          if (scratch.buf.length < want) scratch.buf = Buffer.allocUnsafeSlow(Math.max(want, 2 * scratch.buf.length));
          buf = scratch.buf;
        }
        stored = buf.subarray(0, fs.readSync(fd, buf, 0, want, 0));
      } finally {
        fs.closeSync(fd);
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'missing' };
    throw err;
  }
  const plain = codec.decode(stored, job.magic, job.checkCrc, codec.lz4);
  if (typeof plain === 'string') return { state: 'corrupt', reason: plain };
  if (crypto.createHash('sha256').update(plain).digest('hex') !== job.digest) return { state: 'corrupt', reason: 'content does not match its digest' };
  return { state: 'ok', plain };
}
