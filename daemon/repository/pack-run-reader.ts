/**
 * Reads runs of adjacent blobs of one pack with one read each, and checks them in one worker
 * trip per run: the read side of format 2 for restore (into a file), the NBD server's reads and
 * verify (pack-store.ts uses it for local packs).
 *
 * A manifest's chunks mostly sit in pack order, so a restore in pack order (`restoreOrder`) asks
 * for long stretches of each pack. Per run (up to RUN_BYTES, gaps up to RUN_MAX_GAP read and
 * skipped, planRuns of remote-packs.ts):
 * - the stored bytes are read here, on the main thread's I/O pool (async pread into a buffer of
 *   the run's size), so the blob workers never wait on the disk;
 * - the buffer is moved (transferred, not copied) to a blob worker, which decodes and checks every
 *   blob in it exactly as any blob read is checked (load-blob.ts: magic, header, plain length, then
 *   SHA-256 of the content against its name, or in an encrypted repository the GCM tag and the
 *   keyed digest: the tag alone would not tell that the bytes at this place are the blob the index
 *   names), and moves the buffer back with the checked content in it: a raw blob's content is a
 *   view of its stored bytes, a decrypted one is copied over its own ciphertext (never longer), an
 *   lz4 one goes to one extra buffer per run;
 * - the caller gets each blob's content as a view, or its problem (missing, corrupt).
 * Reads, checks and the caller's writes of different runs overlap: nothing here waits for a
 * worker while the disk could work, and the other way round.
 *
 * Pack files are opened once per reader and closed by `close`; a pack that is gone answers every
 * blob of it `missing` (the caller then reads through `PackKindStore.read`, which refreshes the
 * lookup: GC or a repack may have moved the blob).
 *
 * `checkRunSync` runs on the workers and is self-contained like load-blob.ts (only its arguments,
 * literals and built-in modules); the blob loader is passed in.
 */
import fsp from 'node:fs/promises';
import type { LoadBlobResult, loadBlobSync } from './load-blob';
import type { BlobCodec } from './store-blob';
import { planRuns } from './remote-packs';

/** Largest run read with one call, and the widest gap of unneeded bytes read through. */
export const RUN_BYTES = 4 * 1024 * 1024;
export const RUN_MAX_GAP = 128 * 1024;

/** One blob of a run: `at` is its offset in the run buffer, `length` its stored length, `plain` the content length expected. */
export interface RunCheckItem {
  digest: string;
  at: number;
  length: number;
  plain: number;
}

/** Where a checked blob's content is: in the run buffer or in the run's extra buffer (lz4). */
export type RunCheckAnswer = { state: 'ok'; offset: number; length: number; extra: boolean } | { state: 'missing' } | { state: 'corrupt'; reason: string };

export interface RunCheckResult {
  answers: RunCheckAnswer[];
  /** The content of lz4 blobs (longer than what was stored), back to back; null if none. */
  extra: Buffer | null;
}

/** Decodes and checks every blob of `run` (on a worker); see the module header. */
export function checkRunSync(run: Buffer, items: RunCheckItem[], magic: Buffer, codec: Pick<BlobCodec, 'decode' | 'lz4' | 'cipher' | 'idKey'>, load: typeof loadBlobSync): RunCheckResult {
  const answers: RunCheckAnswer[] = [];
  const extras: Buffer[] = [];
  let extraBytes = 0;
  for (const it of items) {
    const from = run.subarray(it.at, it.at + it.length);
    const r: LoadBlobResult =
      from.length !== it.length ? { state: 'corrupt', reason: `truncated: ${from.length} of ${it.length} bytes in the pack` } : load({ file: '', digest: it.digest, magic, checkCrc: false, maxPlain: it.plain, from }, codec);
    if (r.state !== 'ok') answers.push(r);
    else if (r.plain.length !== it.plain) answers.push({ state: 'corrupt', reason: `length ${r.plain.length}, the index expects ${it.plain}` });
    else if (r.plain.buffer === run.buffer && r.plain.byteOffset >= run.byteOffset && r.plain.byteOffset + r.plain.length <= run.byteOffset + run.length) {
      answers.push({ state: 'ok', offset: r.plain.byteOffset - run.byteOffset, length: r.plain.length, extra: false });
    } else if (r.plain.length <= it.length) {
      r.plain.copy(run, it.at);
      answers.push({ state: 'ok', offset: it.at, length: r.plain.length, extra: false });
    } else {
      answers.push({ state: 'ok', offset: extraBytes, length: r.plain.length, extra: true });
      extras.push(r.plain);
      extraBytes += r.plain.length;
    }
  }
  let extra: Buffer | null = null;
  if (extras.length) {
    extra = Buffer.allocUnsafeSlow(extraBytes);
    let o = 0;
    for (const e of extras) o += e.copy(extra, o);
  }
  return { answers, extra };
}

/** What a run reader needs from the blob workers (blob-workers.ts `checkRun`). */
export interface RunChecker {
  /** `run` (a view at offset 0 of memory of its own) is moved to the worker; the answer's `run` is that whole memory again. */
  checkRun(run: Buffer, items: RunCheckItem[], magic: Buffer): Promise<{ run: Buffer } & RunCheckResult>;
}

/** A blob to read: its digest, its place in its pack, and the content length expected. */
export interface RunBlob<T> {
  file: string;
  digest: string;
  offset: number;
  storedLength: number;
  plain: number;
  tag: T;
}

export type RunBlobResult<T> = { tag: T; plain: Buffer } | { tag: T; state: 'missing' | 'corrupt'; reason?: string };

export class PackRunReader {
  private readonly files = new Map<string, Promise<fsp.FileHandle | null>>();
  private readonly pool: Buffer[] = [];
  private closed = false;

  /**
   * `pooled`: run buffers are reused once the caller's `done` is called (restore, verify);
   * otherwise every run gets memory of its own that the caller keeps (the NBD server's cache).
   */
  constructor(
    private readonly workers: RunChecker,
    private readonly magic: Buffer,
    private readonly pooled: boolean,
  ) {}

  /**
   * Reads and checks `blobs` (any packs, any order): runs planned per pack, each run read and
   * checked in one trip, every run at once. `onRun` gets each run's results as soon as it is
   * checked; with a pooled reader, the views in them are valid until `done()` is called.
   */
  async read<T>(blobs: RunBlob<T>[], onRun: (results: RunBlobResult<T>[], done: () => void) => Promise<void>): Promise<void> {
    const byFile = new Map<string, RunBlob<T>[]>();
    for (const b of blobs) {
      const list = byFile.get(b.file) ?? [];
      list.push(b);
      byFile.set(b.file, list);
    }
    const runs: Promise<void>[] = [];
    for (const [file, list] of byFile) {
      const items = list.map((b) => ({ offset: b.offset, length: b.storedLength, blob: b }));
      for (const run of planRuns(items, RUN_BYTES, RUN_MAX_GAP)) {
        const r = { start: run.start, end: run.end, items: run.items.map((it) => it.blob) };
        runs.push(this.readRun(file, r).then(({ results, done }) => onRun(results, done)));
      }
    }
    // Every run settles before this does: a caller's write must never outlive its file descriptor.
    const settled = await Promise.allSettled(runs);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Closes the pack files opened; the reader can still be used (it opens them again). */
  async close(): Promise<void> {
    const files = [...this.files.values()];
    this.files.clear();
    this.pool.length = 0;
    for (const f of files) await (await f.catch(() => null))?.close();
  }

  /** Drops the pooled buffers and closes the files for good. */
  async dispose(): Promise<void> {
    this.closed = true;
    await this.close();
  }

  private async readRun<T>(file: string, run: { start: number; end: number; items: RunBlob<T>[] }): Promise<{ results: RunBlobResult<T>[]; done: () => void }> {
    const len = run.end - run.start;
    const missing = (reason?: string): { results: RunBlobResult<T>[]; done: () => void } => ({ results: run.items.map((b) => ({ tag: b.tag, state: 'missing' as const, ...(reason ? { reason } : {}) })), done: () => undefined });
    const fh = await this.open(file);
    if (!fh) return missing();
    let buf = this.take(len);
    let got = 0;
    try {
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, run.start + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      this.give(buf);
      throw err;
    }
    // Blobs beyond the end of a short pack are truncated (the worker says so for each).
    const items: RunCheckItem[] = run.items.map((b) => ({ digest: b.digest, at: b.offset - run.start, length: b.storedLength, plain: b.plain }));
    const checked = await this.workers.checkRun(buf.subarray(0, got), items, this.magic);
    buf = checked.run;
    const results = run.items.map((b, k): RunBlobResult<T> => {
      const a = checked.answers[k];
      if (a.state !== 'ok') return { tag: b.tag, state: a.state, ...(a.state === 'corrupt' ? { reason: a.reason } : {}) };
      const src = a.extra ? (checked.extra as Buffer) : buf;
      return { tag: b.tag, plain: src.subarray(a.offset, a.offset + a.length) };
    });
    return { results, done: () => this.give(buf) };
  }

  private open(file: string): Promise<fsp.FileHandle | null> {
    let f = this.files.get(file);
    if (!f) {
      f = fsp.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return null;
        throw err;
      });
      // A pack that is gone now may be there again after a refresh only under another id: keep the answer.
      this.files.set(file, f);
    }
    return f;
  }

  private take(len: number): Buffer {
    if (this.pooled) {
      const i = this.pool.findIndex((b) => b.length >= len);
      if (i >= 0) return this.pool.splice(i, 1)[0];
    }
    return Buffer.allocUnsafeSlow(this.pooled ? Math.max(len, RUN_BYTES + RUN_MAX_GAP) : len);
  }

  private give(buf: Buffer): void {
    if (this.pooled && !this.closed && this.pool.length < 16) this.pool.push(buf);
  }
}
