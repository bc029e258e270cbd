/**
 * Worker threads for the per-chunk work of a backup, so that it runs beside the thread that
 * receives NBD data instead of after it:
 * - `digestHex`: SHA-256, or HMAC-SHA256 in an encrypted repository (1.4 GB/s per core here with SHA-NI, the largest CPU cost of reading a
 *   disk; a full-compare spent ~0.9 s of its 3 s in `Hash.update` on the main thread);
 * - `store`: putting a blob into its file (store-blob.ts): existence check, encoding (lz4 probe,
 *   compression, CRC) and the file calls, synchronous on the worker;
 * - `packPutBatch`: a batch of blobs of a format-2 pack session (pack-worker.ts), e.g. the chunks
 *   of one NBD read buffer, each hashed, compared with its base, probed, encoded and appended, in
 *   one trip (`packPut` is a batch of one);
 * - `load`: reading a blob back and checking it (load-blob.ts), e.g. an incremental's base chunks;
 * - `restore`: a batch of chunks read and checked the same way (load-blob.ts), each written at
 *   its offset into a file descriptor the caller holds open (restore-batch.ts, restore-workers.ts);
 *   it awaits its pack reads, so a worker works on one batch while the next one's runs are read.
 *
 * This is the repository's only worker pool: one per open repository (and one per NBD server's
 * backup reader), sized to the cores. Each thread keeps one read buffer that its loads and
 * restore batches reuse (see load-blob.ts) and resolves lz4 once, from this module's location.
 *
 * Data in a SharedArrayBuffer (the NBD reader's pooled pieces) reaches a worker without a copy;
 * other buffers are copied by postMessage, which still costs far less than the work. Hashes of
 * inputs below `INLINE_BELOW` are computed inline: the round trip would cost more than the hash.
 * Each job goes to the worker with the fewest outstanding. A worker is ref'd only while it has
 * work, so an idle pool never keeps the process alive; one that dies fails its jobs and is replaced.
 * Workers run the source text of `workerMain` and of the blob codec (`eval: true`), so this works
 * from compiled JS and under ts-jest alike.
 */
import os from 'node:os';
import { blobDigestHex } from './digest';
import { decodeBlobSync, encodeBlobSync, storedSizeOf, worthCompressing } from './file-formats';
import { openBlobPayload, sealBlobPayload } from './blob-cipher';
import { loadBlobSync, type LoadBlobResult } from './load-blob';
import { storeBlob, type BlobCodec, type StoreBlobJob, type StoreBlobResult } from './store-blob';
import { writeViaRename } from './write-via-rename';
import { packAbortSync, packPutBatchSync, packSealSync, type PackPutBatchResult, type PackPutCommon, type PackPutItem, type PackPutJob, type PackPutResult, type PackWorkerState } from './pack-worker';
import { probeDigestPrefix } from './pack-lookup';
import { restoreBatchAsync, type RestoreBatchAnswer, type RestoreBatchChunk } from './restore-batch';
import { InternalError } from '../../shared/errors/internal-errors';
import { WorkerSlots, type WorkerSlot } from './worker-slots';

const INLINE_BELOW = 64 * 1024;

type Op =
  | { op: 'sha256' }
  | { op: 'store'; file: string; magic: Uint8Array; compress: boolean; force: boolean; verify: boolean; touch: boolean }
  | { op: 'load'; file: string; digest: string; magic: Uint8Array; checkCrc: boolean; maxPlain: number | undefined; at?: { offset: number; length: number }; from?: Uint8Array }
  | { op: 'restore'; fd: number; magic: Uint8Array; chunks: RestoreChunk[] }
  | ({ op: 'packPutBatch' } & Omit<PackPutCommon, 'magic'> & { magic: Uint8Array; items: PackPutWireItem[] })
  | { op: 'packSeal'; session: string }
  | { op: 'packAbort'; session: string };
type Request = { id: number; data: SharedArrayBuffer | Uint8Array | null; offset: number; length: number } & Op;
type Result = string | null | StoreBlobResult | LoadBlobResult | RestoreBatchResult | PackPutBatchResult;

/** A blob of a `packPutBatch` job as sent: its bytes as shared memory (no copy) or a copy of just them. */
type PackPutWireItem = Omit<PackPutItem, 'plain'> & { data: SharedArrayBuffer | Uint8Array; offset: number; length: number };

/** One chunk of a restore batch (restore-batch.ts): format 2 names its pack file and `at`, its place in it. */
export type RestoreChunk = RestoreBatchChunk;
export type RestoreBatchResult = RestoreBatchAnswer;
type Reply = { id: number; result?: Result; error?: { message: string; code?: string; syscall?: string; path?: string } };

/** Runs inside the worker thread; self-contained (see the module header). */
function workerMain(
  store: typeof storeBlob,
  write: typeof writeViaRename,
  load: typeof loadBlobSync,
  encode: typeof encodeBlobSync,
  decode: typeof decodeBlobSync,
  probe: typeof worthCompressing,
  sizeOf: typeof storedSizeOf,
  packPutBatch: typeof packPutBatchSync,
  packSeal: typeof packSealSync,
  packAbort: typeof packAbortSync,
  probePrefix: typeof probeDigestPrefix,
  seal: typeof sealBlobPayload,
  open: typeof openBlobPayload,
  restoreBatch: typeof restoreBatchAsync,
): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  const data = workerData as { lz4Path: string; keys: { blob: Uint8Array; id: Uint8Array } | null };
  const codec: BlobCodec = {
    encode,
    decode,
    probe,
    sizeOf,
    lz4: require(data.lz4Path) as BlobCodec['lz4'],
    cipher: data.keys ? { key: Buffer.from(data.keys.blob), seal, open } : null,
    idKey: data.keys ? Buffer.from(data.keys.id) : null,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  const idKey = codec.idKey;
  const knownDirs = new Set<string>();
  const scratch = { buf: Buffer.alloc(0) };
  const packs: PackWorkerState = { open: new Map(), knownDirs, scratch };
  /** Read buffers of restore runs (restore-batch.ts), reused. */
  const runBufs: Buffer[] = [];
  parentPort?.on('message', (m: Request) => {
    const view = (): Buffer => {
      const d = m.data as SharedArrayBuffer | Uint8Array;
      return d instanceof SharedArrayBuffer ? Buffer.from(d, m.offset, m.length) : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    };
    const failed = (err: unknown): Reply => {
      const e = err as NodeJS.ErrnoException;
      return { id: m.id, error: { message: e.message, code: e.code, syscall: e.syscall, path: e.path } };
    };
    if (m.op === 'restore') {
      // Awaits its reads (restore-batch.ts): another batch's message is handled meanwhile.
      restoreBatch(m.fd, Buffer.from(m.magic), m.chunks, codec, load, scratch, runBufs).then(
        (result) => parentPort?.postMessage({ id: m.id, result }),
        (err: unknown) => parentPort?.postMessage(failed(err)),
      );
      return;
    }
    if (m.op === 'store') {
      // Settles before the next message is handled: every file call in it is synchronous.
      store({ file: m.file, plain: view(), magic: Buffer.from(m.magic), compress: m.compress, force: m.force, verify: m.verify, touch: m.touch }, codec, write, knownDirs, scratch).then(
        (result) => parentPort?.postMessage({ id: m.id, result }),
        (err: unknown) => parentPort?.postMessage(failed(err)),
      );
      return;
    }
    let reply: Reply;
    try {
      if (m.op === 'sha256') reply = { id: m.id, result: (idKey ? crypto.createHmac('sha256', idKey) : crypto.createHash('sha256')).update(view()).digest('hex') };
      else if (m.op === 'packPutBatch') {
        const { id: _id, op: _op, data: _data, offset: _offset, length: _length, magic, items, ...common } = m;
        const plainOf = (w: PackPutWireItem): Buffer => (w.data instanceof SharedArrayBuffer ? Buffer.from(w.data, w.offset, w.length) : Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength));
        const batch = items.map(({ data: _d, offset: _o, length: _l, ...item }, k) => ({ ...item, plain: plainOf(items[k]) }));
        reply = { id: m.id, result: packPutBatch({ ...common, magic: Buffer.from(magic) }, batch, codec, probePrefix, packs) };
      } else if (m.op === 'packSeal') reply = { id: m.id, result: packSeal(m.session, packs) };
      else if (m.op === 'packAbort') reply = { id: m.id, result: packAbort(m.session, packs) };
      else {
        // The content may be a view into the read buffer: it is copied out below either way.
        const from = m.from ? Buffer.from(m.from.buffer, m.from.byteOffset, m.from.byteLength) : undefined;
        const loaded = load({ file: m.file, digest: m.digest, magic: Buffer.from(m.magic), checkCrc: m.checkCrc, maxPlain: m.maxPlain, ...(m.at ? { at: m.at } : {}), ...(from ? { from } : {}) }, codec, scratch);
        if (loaded.state !== 'ok') reply = { id: m.id, result: loaded };
        else if (m.data) {
          // Into the caller's shared memory: nothing travels back but the answer.
          const into = view();
          if (loaded.plain.length !== into.length) reply = { id: m.id, result: { state: 'corrupt', reason: `length ${loaded.plain.length}, the index expects ${into.length}` } };
          else {
            loaded.plain.copy(into);
            reply = { id: m.id, result: { state: 'ok', plain: into } };
          }
        } else {
          // Moved, not cloned, to the main thread: copied once here into memory of its own.
          const own = Buffer.allocUnsafeSlow(loaded.plain.length);
          loaded.plain.copy(own);
          parentPort?.postMessage({ id: m.id, result: { state: 'ok', plain: own } }, [own.buffer]);
          return;
        }
      }
    } catch (err) {
      reply = failed(err);
    }
    parentPort?.postMessage(reply);
  });
}

const WORKER_SOURCE = `(${workerMain.toString()})(${storeBlob.toString()}, ${writeViaRename.toString()}, ${loadBlobSync.toString()}, ${encodeBlobSync.toString()}, ${decodeBlobSync.toString()}, ${worthCompressing.toString()}, ${storedSizeOf.toString()}, ${packPutBatchSync.toString()}, ${packSealSync.toString()}, ${packAbortSync.toString()}, ${probeDigestPrefix.toString()}, ${sealBlobPayload.toString()}, ${openBlobPayload.toString()}, ${restoreBatchAsync.toString()});`;
/** Resolved here: an eval worker would resolve 'lz4-napi' from the working directory (the daemon's is /). */
const LZ4_PATH = require.resolve('lz4-napi');

/**
 * A worker's failure as the caller sees it: a file call's errno error rebuilt as Node raises one
 * (callers map ENOSPC and the like); anything else thrown on the worker is a bug.
 */
function workerError(error: { message: string; code?: string; syscall?: string; path?: string }): Error {
  return error.code ? Object.assign(new Error(error.message), error) : InternalError({ what: `blob worker: ${error.message}` });
}

/** Bytes for a worker: shared memory as is (no copy), a view into a larger ordinary buffer copied first (postMessage would clone all of it). */
function wireBytes(data: Buffer): { data: SharedArrayBuffer | Uint8Array; offset: number; length: number } {
  if (data.buffer instanceof SharedArrayBuffer) return { data: data.buffer, offset: data.byteOffset, length: data.length };
  const own = data.byteLength === data.buffer.byteLength ? data : Buffer.from(data);
  return { data: own, offset: 0, length: own.length };
}

interface Job {
  resolve(result: Result): void;
  reject(err: Error): void;
}

export class BlobWorkers {
  private readonly pool: WorkerSlots<Job, Reply>;

  /**
   * `keys`: an encrypted repository's blob and digest keys (key-file.ts). They reach the threads
   * once, in workerData, and are never part of a job or a log line.
   */
  constructor(
    readonly size: number = Math.max(1, os.availableParallelism()),
    private readonly keys: { blob: Buffer; id: Buffer } | null = null,
  ) {
    const workerKeys = keys ? { blob: new Uint8Array(keys.blob), id: new Uint8Array(keys.id) } : null;
    this.pool = new WorkerSlots<Job, Reply>(size, WORKER_SOURCE, { lz4Path: LZ4_PATH, keys: workerKeys }, (job, { result, error }) => {
      if (error) job.reject(workerError(error));
      else job.resolve(result as Result);
    });
  }

  /** The repository's blob digest (digest.ts): SHA-256, or HMAC-SHA256 under the digest key. */
  digestHex(data: Buffer): Promise<string> {
    if (data.length < INLINE_BELOW) return Promise.resolve(blobDigestHex(data, this.keys?.id ?? null));
    return this.run(data, { op: 'sha256' }) as Promise<string>;
  }

  /** `digestHex` under its name from before encryption (callers that predate it). */
  sha256Hex(data: Buffer): Promise<string> {
    return this.digestHex(data);
  }

  /** The main thread's form of `digestHex`, for small blobs (index pages). */
  digestHexSync(data: Buffer): string {
    return blobDigestHex(data, this.keys?.id ?? null);
  }

  /**
   * Reads and checks a blob (load-blob.ts). With `into` (shared memory of the content's exact
   * length) the worker writes the content there and the answer's `plain` is `into`; otherwise the
   * content arrives in memory of the caller's own, moved rather than copied.
   */
  /** `from`: the stored bytes, already fetched (a pack range from object storage): only decoded and checked. */
  load(req: { file: string; digest: string; magic: Buffer; checkCrc: boolean; maxPlain?: number; into?: Buffer; at?: { offset: number; length: number }; from?: Buffer }): Promise<LoadBlobResult> {
    const into = req.into;
    if (into && !(into.buffer instanceof SharedArrayBuffer)) throw new TypeError('load into: the buffer must be shared memory');
    // `from` as a copy of just the view: postMessage would clone the whole buffer a view lies in.
    const from = req.from ? { from: new Uint8Array(req.from) } : {};
    const loaded = this.run(into ?? null, { op: 'load', file: req.file, digest: req.digest, magic: new Uint8Array(req.magic), checkCrc: req.checkCrc, maxPlain: req.maxPlain, ...(req.at ? { at: req.at } : {}), ...from }) as Promise<LoadBlobResult>;
    // Buffers arrive from a worker as plain Uint8Arrays.
    return loaded.then((r) => (r.state !== 'ok' ? r : { state: 'ok', plain: into ?? Buffer.from(r.plain.buffer, r.plain.byteOffset, r.plain.byteLength) }));
  }

  /**
   * Restores a batch of chunks into the open file `fd` (restore-workers.ts schedules the batches).
   * Missing or corrupt chunks are answered, not written; other errors (the write's ENOSPC) reject
   * with the errno code of the failed call. `fd` must stay open until the promise settles.
   */
  restoreBatch(fd: number, magic: Buffer, chunks: RestoreChunk[]): Promise<RestoreBatchResult> {
    return this.run(null, { op: 'restore', fd, magic: new Uint8Array(magic), chunks }) as Promise<RestoreBatchResult>;
  }

  /** Stores a blob (store-blob.ts); errors carry the errno code of the failed call. */
  store(req: StoreBlobJob): Promise<StoreBlobResult> {
    return this.run(req.plain, { op: 'store', file: req.file, magic: new Uint8Array(req.magic), compress: req.compress, force: req.force, verify: req.verify, touch: req.touch }) as Promise<StoreBlobResult>;
  }

  /**
   * One blob of a pack session (pack-worker.ts): hash, compare with the base, dedup probe, encode
   * and append in one trip. Errors carry the errno code of the failed call.
   */
  async packPut(req: PackPutJob): Promise<PackPutResult> {
    const { plain, digest, base, candidates, force, ...common } = req;
    const r = await this.packPutBatch(common, [{ plain, force, ...(digest !== undefined ? { digest } : {}), ...(base ? { base } : {}), ...(candidates ? { candidates } : {}) }]);
    if (r.error) throw r.error;
    return r.results[0] as PackPutResult;
  }

  /**
   * Blobs of a pack session in one trip (pack-worker.ts), each hashed, compared with its base,
   * probed, encoded and appended. Resolves with per-item answers and, when the job failed midway,
   * `error` (the errno code of the failed call): the items answered are in their pack even then.
   */
  async packPutBatch(common: PackPutCommon, items: PackPutItem[]): Promise<{ results: (PackPutResult | null)[]; error?: Error }> {
    const { magic, ...rest } = common;
    const wire: PackPutWireItem[] = items.map(({ plain, ...item }) => ({ ...item, ...wireBytes(plain) }));
    const r = (await this.run(null, { op: 'packPutBatch', ...rest, magic: new Uint8Array(magic), items: wire })) as PackPutBatchResult;
    return r.failure ? { results: r.results, error: workerError(r.failure) } : { results: r.results };
  }

  /** Seals every worker's open pack of `session`; the ids of the packs sealed now. */
  async packSealAll(session: string): Promise<string[]> {
    const ids = await Promise.all(this.pool.live().map((slot) => this.run(null, { op: 'packSeal', session }, slot) as Promise<string | null>));
    return ids.filter((x): x is string => x !== null);
  }

  /** Deletes every worker's open (unsealed) pack of `session`; the ids deleted. */
  async packAbortAll(session: string): Promise<string[]> {
    const ids = await Promise.all(this.pool.live().map((slot) => this.run(null, { op: 'packAbort', session }, slot) as Promise<string | null>));
    return ids.filter((x): x is string => x !== null);
  }

  /** Stops the workers; outstanding jobs fail. */
  close(): Promise<void> {
    return this.pool.close();
  }

  private run(data: Buffer | null, op: Op, on?: WorkerSlot<Job>): Promise<Result> {
    // A view into a larger ordinary buffer is copied first: postMessage would clone all of it.
    const payload = data === null || data.buffer instanceof SharedArrayBuffer ? (data?.buffer ?? null) : data.byteLength === data.buffer.byteLength ? data : Buffer.from(data);
    return new Promise((resolve, reject) => {
      this.pool.send((id) => ({ id, data: payload, offset: data?.byteOffset ?? 0, length: data?.length ?? 0, ...op }) as Request, { resolve, reject }, on);
    });
  }
}
