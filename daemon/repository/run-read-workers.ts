/**
 * Worker threads that read runs of adjacent chunk blobs of one pack file, for a serving session
 * (serve-source.ts): one trip reads a whole NBD request's chunks with one pread into a buffer of
 * the run's own, decodes each blob and checks it the way every blob read is checked (load-blob.ts:
 * SHA-256, or the GCM tag and keyed digest, against its name; its length against the index), and
 * moves the buffer to the caller. A stored-plain blob's content is a view into that buffer (no
 * copy); a compressed or encrypted one's is decoded into one more moved buffer.
 *
 * Why not the repository's pool (blob-workers.ts): its `load` is one trip per blob and answers
 * each in a fresh transferred buffer; serving 64 KiB chunks at page-cache speed spent more of the
 * main thread on those trips and the garbage of their buffers than on the replies. Shared
 * memory per run was tried and is slower: each SharedArrayBuffer is a mapping of its own (mmap,
 * zero-fill, and a fork of the server, e.g. nbdcopy spawned by the bench, copies them all).
 * This pool is the drop-in place for a repository "read a run" call once there is one.
 *
 * A blob that is not good here (short run, missing pack, bad content) is only reported: the
 * caller reads it again through the chunk store's full read (other locations, a lookup refresh,
 * the repository's errors). Workers run the source text of `runReadMain` and the codec functions
 * (`eval: true`), as blob-workers.ts does, on the same pool (worker-slots.ts).
 */
import os from 'node:os';
import { decodeBlobSync } from './file-formats';
import { openBlobPayload } from './blob-cipher';
import { loadBlobSync } from './load-blob';
import { WorkerSlots } from './worker-slots';

/** One blob of a run: `at` bytes into the run, `stored` long, its content `plain` long. */
export interface RunBlob {
  digest: string;
  at: number;
  stored: number;
  plain: number;
}

/** A run: `length` bytes at `offset` of the pack file `file`, holding `blobs` back to back. */
export interface RunJob {
  file: string;
  offset: number;
  length: number;
  blobs: RunBlob[];
}

type Request = { id: number; magic: Uint8Array } & RunJob;
/** Per blob: [buffer, byte offset] of its content (buffer 0 the run, k > 0 `extra[k - 1]`), or null when not good. */
type Reply = { id: number; run?: ArrayBuffer; extra?: ArrayBuffer[]; places?: ([number, number] | null)[]; error?: string };

/** Runs inside the worker thread; self-contained (see the module header). */
function runReadMain(load: typeof loadBlobSync, decode: typeof decodeBlobSync, open: typeof openBlobPayload): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  const data = workerData as { lz4Path: string; keys: { blob: Uint8Array; id: Uint8Array } | null };
  const codec = {
    decode,
    lz4: require(data.lz4Path),
    cipher: data.keys ? { key: Buffer.from(data.keys.blob), seal: null as never, open } : null,
    idKey: data.keys ? Buffer.from(data.keys.id) : null,
  } as Parameters<typeof loadBlobSync>[1];
  /* eslint-enable @typescript-eslint/no-require-imports */
  parentPort?.on('message', (m: Request) => {
    try {
      // Its own memory (not the pool's): moved to the caller below.
      const buf = Buffer.allocUnsafeSlow(m.length);
      let got = 0;
      try {
        const fd = fs.openSync(m.file, 'r');
        try {
          while (got < m.length) {
            const n = fs.readSync(fd, buf, got, m.length - got, m.offset + got);
            if (n === 0) break;
            got += n;
          }
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const magic = Buffer.from(m.magic);
      const extra: ArrayBuffer[] = [];
      const places = m.blobs.map((b): [number, number] | null => {
        if (b.at + b.stored > got) return null;
        const from = buf.subarray(b.at, b.at + b.stored);
        const r = load({ file: m.file, digest: b.digest, magic, checkCrc: false, maxPlain: b.plain, at: { offset: m.offset + b.at, length: b.stored }, from }, codec);
        if (r.state !== 'ok' || r.plain.length !== b.plain) return null;
        if (r.plain.buffer === buf.buffer) return [0, r.plain.byteOffset - buf.byteOffset];
        const own = Buffer.allocUnsafeSlow(r.plain.length);
        r.plain.copy(own);
        extra.push(own.buffer as ArrayBuffer);
        return [extra.length, 0];
      });
      const run = buf.buffer as ArrayBuffer;
      parentPort?.postMessage({ id: m.id, run, extra, places } satisfies Reply, [run, ...extra]);
    } catch (err) {
      parentPort?.postMessage({ id: m.id, error: String((err as Error).message ?? err) } satisfies Reply);
    }
  });
}

const WORKER_SOURCE = `(${runReadMain.toString()})(${loadBlobSync.toString()}, ${decodeBlobSync.toString()}, ${openBlobPayload.toString()});`;
/** Resolved here: an eval worker would resolve 'lz4-napi' from the working directory. */
const LZ4_PATH = require.resolve('lz4-napi');

interface Job {
  lengths: number[];
  resolve(plains: (Buffer | null)[]): void;
  reject(err: Error): void;
}

export class RunReadWorkers {
  private readonly pool: WorkerSlots<Job, Reply>;

  constructor(
    private readonly magic: Buffer,
    keys: { blob: Buffer; id: Buffer } | null = null,
    size: number = Math.max(1, os.availableParallelism()),
  ) {
    const workerKeys = keys ? { blob: new Uint8Array(keys.blob), id: new Uint8Array(keys.id) } : null;
    this.pool = new WorkerSlots<Job, Reply>(size, WORKER_SOURCE, { lz4Path: LZ4_PATH, keys: workerKeys }, (job, { run, extra, places, error }) => {
      if (error !== undefined || !run || !places) return void job.reject(new Error(`run read: ${error ?? 'no answer'}`));
      const bufs = [run, ...(extra ?? [])];
      job.resolve(places.map((p, k) => (p ? Buffer.from(bufs[p[0]], p[1], job.lengths[k]) : null)));
    });
  }

  /** Reads `job`; resolves with each blob's checked content, or null for a blob that was not good. */
  read(job: RunJob): Promise<(Buffer | null)[]> {
    return new Promise((resolve, reject) => {
      this.pool.send((id) => ({ id, magic: this.magic, ...job }) satisfies Request, { lengths: job.blobs.map((b) => b.plain), resolve, reject });
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
