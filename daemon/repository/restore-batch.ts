/**
 * The worker side of a restore batch (blob-workers.ts `restore`; restore-workers.ts schedules the
 * batches): every chunk read, decoded and checked the way every blob read is checked
 * (load-blob.ts: SHA-256 of the content against its name, or the GCM tag and keyed digest, and the
 * length), then written at its disk offset into the file descriptor the caller holds open.
 *
 * Format 2 batches come sorted by (pack, offset). Runs of adjacent blobs of one pack (up to
 * RUN_BYTES) are read with one pread each, on the thread pool, one run ahead: while a run is
 * checked and written here, the next one is read. A profile of a 2 GiB restore had each worker
 * blocked in pread for about as long as it hashed and wrote (the disk is busy with the target's
 * write-back meanwhile: without the background flush the same reads took half as long), so the
 * reads now overlap the work instead of following it. Each chunk is written with pwrite at its
 * offset (one pwritev per run of disk-adjacent chunks cut the calls from 16,562 to 2,565 for
 * 1 GiB, but was not measurably faster in alternating runs, so it was left out).
 *
 * A run that cannot be read whole (pack gone, truncated) is read again blob by blob (load-blob.ts
 * with `at`), which says which blob is missing or corrupt; format 1 (no `at`) reads each chunk's
 * file that way. Missing, corrupt and wrong-length chunks are answered in `bad`, not written;
 * other errors (a read's EIO, the write's ENOSPC) reject. Pack files are opened once per batch and
 * closed before the batch settles, also when it fails.
 *
 * Self-contained like load-blob.ts (only its arguments, literals and built-in modules): the
 * workers run its source text. `free` is the worker's pool of run buffers (grown as needed).
 */
import type { loadBlobSync } from './load-blob';
import type { BlobCodec } from './store-blob';

/** One chunk of a restore batch (blob-workers.ts `RestoreChunk`). */
export interface RestoreBatchChunk {
  file: string;
  digest: string;
  offset: number;
  length: number;
  at?: { offset: number; length: number };
}

export interface RestoreBatchAnswer {
  /** Offsets of chunks that were missing, corrupt or of the wrong length (not written). */
  bad: number[];
  /** Bytes written. */
  bytes: number;
}

export async function restoreBatchAsync(
  fd: number,
  magic: Buffer,
  chunks: RestoreBatchChunk[],
  codec: Pick<BlobCodec, 'decode' | 'lz4' | 'cipher' | 'idKey'>,
  load: typeof loadBlobSync,
  scratch: { buf: Buffer },
  free: Buffer[],
): Promise<RestoreBatchAnswer> {
  /* eslint-disable-next-line @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  /** Largest run of adjacent blobs read with one pread. */
  const RUN_BYTES = 1024 * 1024;
  const result: RestoreBatchAnswer = { bad: [], bytes: 0 };
  type Run = { i: number; j: number; start: number; len: number };
  const runs: Run[] = [];
  for (let i = 0; i < chunks.length; ) {
    const c = chunks[i];
    let j = i + 1;
    if (!c.at) {
      runs.push({ i, j, start: 0, len: 0 });
      i = j;
      continue;
    }
    let end = c.at.offset + c.at.length;
    while (j < chunks.length) {
      const n = chunks[j];
      if (!n.at || n.file !== c.file || n.at.offset !== end || end + n.at.length - c.at.offset > RUN_BYTES) break;
      end += n.at.length;
      j++;
    }
    runs.push({ i, j, start: c.at.offset, len: end - c.at.offset });
    i = j;
  }

  const fds = new Map<string, number | null>();
  const packFd = (file: string): number | null => {
    let pfd = fds.get(file);
    if (pfd === undefined) {
      try {
        pfd = fs.openSync(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        pfd = null; // read blob by blob below, which answers `missing`
      }
      fds.set(file, pfd);
    }
    return pfd;
  };
  const take = (len: number): Buffer => {
    const k = free.findIndex((b) => b.length >= len);
    return k >= 0 ? free.splice(k, 1)[0] : Buffer.allocUnsafeSlow(Math.max(len, RUN_BYTES));
  };
  /** The run's stored bytes, or null: not a run of a pack, the pack is gone, or it is short. */
  const readRun = async (run: Run): Promise<{ buf: Buffer; whole: boolean } | null> => {
    if (run.len === 0) return null;
    const pfd = packFd(chunks[run.i].file);
    if (pfd === null) return null;
    const buf = take(run.len);
    let got = 0;
    try {
      while (got < run.len) {
        const n = await new Promise<number>((resolve, reject) => fs.read(pfd, buf, got, run.len - got, run.start + got, (err, bytes) => (err ? reject(err) : resolve(bytes))));
        if (n === 0) break;
        got += n;
      }
    } catch (err) {
      free.push(buf);
      throw err;
    }
    return { buf, whole: got === run.len };
  };

  const check = (run: Run, stored: Buffer | null): void => {
    const first = chunks[run.i].at;
    for (let k = run.i; k < run.j; k++) {
      const ck = chunks[k];
      const from = stored && ck.at && first ? stored.subarray(ck.at.offset - first.offset, ck.at.offset - first.offset + ck.at.length) : undefined;
      const loaded = load({ file: ck.file, digest: ck.digest, magic, checkCrc: false, maxPlain: ck.length, ...(ck.at ? { at: ck.at } : {}), ...(from ? { from } : {}) }, codec, scratch);
      if (loaded.state !== 'ok' || loaded.plain.length !== ck.length) {
        result.bad.push(ck.offset);
        continue;
      }
      // The content is a view into the run's buffer or this thread's read buffer: written out
      // before the next chunk is read.
      const plain = loaded.plain;
      for (let o = 0; o < plain.length; ) {
        const n = fs.writeSync(fd, plain, o, plain.length - o, ck.offset + o);
        // As a failed write(2) would report it (errno EIO): callers map it like any file error.
        if (n === 0) throw Object.assign(new Error(`write to the restore target returned 0 bytes`), { code: 'EIO', syscall: 'write' });
        o += n;
      }
      result.bytes += plain.length;
    }
  };

  let pending: Promise<{ buf: Buffer; whole: boolean } | null> | null = null;
  try {
    pending = runs.length ? readRun(runs[0]) : null;
    for (let r = 0; r < runs.length; r++) {
      const got = await (pending as Promise<{ buf: Buffer; whole: boolean } | null>);
      pending = null;
      try {
        pending = r + 1 < runs.length ? readRun(runs[r + 1]) : null;
        check(runs[r], got?.whole ? got.buf.subarray(0, runs[r].len) : null);
      } finally {
        if (got) free.push(got.buf);
      }
    }
  } finally {
    // A read still under way must not see its descriptor closed (and reused).
    if (pending) {
      const left = await pending.catch(() => null);
      if (left) free.push(left.buf);
    }
    for (const pfd of fds.values()) if (pfd !== null) fs.closeSync(pfd);
  }
  return result;
}
