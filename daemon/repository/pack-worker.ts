/**
 * The blob workers' side of a pack session (pack-format.ts states the rules): put blobs of a
 * backup into the worker's own open pack of that session, seal it, or drop it. Plain synchronous
 * calls on the worker thread, like store-blob.ts. One job carries a batch of blobs (the chunks of
 * one NBD read buffer, up to a window: chunk-pipeline.ts), and does all the work of each:
 *
 * `packPutBatchSync`, for each item:
 * 1. the digest: given (index pages, a second trip) or computed here (SHA-256 of `plain`, or
 *    HMAC-SHA256 under `codec.idKey` in an encrypted repository, digest.ts);
 * 2. with a `base` of the same digest (an incremental's or full-compare's unchanged chunk): its
 *    stored copies are compared with the true bytes (`verify`), and the answer is `unchanged`
 *    when one is intact; none intact: the blob is appended, answered `stored` + `repaired`;
 * 3. with the dedup `table` (pack-lookup.ts) and a prefix hit, or a digest this worker appended to
 *    its open pack of the session already (this batch included): `maybe-known`, nothing written
 *    (the main thread confirms and, when it is truly known, sends the second trip with `candidates`);
 * 4. with `candidates` (where the main thread knows the blob is): the first intact one is
 *    answered `known` (`intact` = its index); none intact, or `force`: appended, `stored`;
 * 5. otherwise appended: `stored` with the pack, offset and stored length.
 * Appends go at the end of the session's pack of this worker (created with its 16-byte header on
 * first use) and are written with one positional write per batch (and before a seal), at the
 * recorded size: the size moves only once the write succeeded, so a failed write (ENOSPC) is
 * simply overwritten by the next one. An item's answer exists only once its bytes are written:
 * when a job fails midway, the answer has the items done before (`results`, null for the others)
 * and the `failure`, so the main thread records what is in the pack and hands on every sealed pack.
 * No fsync here while a backup runs: at PACK_SEAL_BYTES the pack is closed (`sealed: true`) and
 * the main thread fsyncs file and folder on its thread pool, so hashing goes on meanwhile, and only
 * then writes the .idx (a descriptor is not handed over: a worker that exits closes the ones it
 * opened, whoever holds them by then). Every answer of a pack comes before the answer that seals it (one thread, in
 * order). `packSealSync` (at commit) fsyncs here.
 *
 * "Intact" is what store-blob.ts checks for format 1: the header's size, then raw: the payload
 * equals the true bytes; lz4: the CRC-32 of the stored payload matches its header (not
 * decompressed) and the plain length is right.
 *
 * Self-contained (only its arguments, literals and built-in modules): the workers run its source
 * text; the codec is passed in. 16 = PACK_HEADER_SIZE, 20 = BLOB_HEADER_SIZE; the pack magic is
 * written out as a literal (pack-format.ts PACK_MAGIC_V2).
 */
import type { BlobCodec } from './store-blob';
import type { probeDigestPrefix } from './pack-lookup';

export interface PackLoc {
  packId: string;
  offset: number;
  storedLength: number;
}

/** What the blobs of one job share. */
export interface PackPutCommon {
  session: string;
  /** Local folder of `.packs`. */
  packsDir: string;
  magic: Buffer;
  compress: boolean;
  sealBytes: number;
  table?: Uint32Array;
  verify: boolean;
}

/** One blob of a job. */
export interface PackPutItem {
  plain: Buffer;
  digest?: string;
  base?: { digest: string; locations: PackLoc[] };
  candidates?: PackLoc[];
  force: boolean;
}

export type PackPutJob = PackPutCommon & PackPutItem;

export type PackPutResult = {
  digest: string;
  outcome: 'unchanged' | 'maybe-known' | 'known' | 'stored';
  repaired: boolean;
  /** `known`/`unchanged`: index of the intact location. */
  intact?: number;
  packId?: string;
  offset?: number;
  storedLength?: number;
  /** The pack is full and closed, not yet fsynced: the main thread makes it durable before its .idx. */
  sealed?: boolean;
};

/** Per item its answer (null: not done, the job failed first), and the failure if any. */
export interface PackPutBatchResult {
  results: (PackPutResult | null)[];
  failure?: { message: string; code?: string; syscall?: string; path?: string };
}

export interface OpenPack {
  fd: number;
  packId: string;
  file: string;
  size: number;
  /** Digests appended to it: a second one of this worker's session is not appended again. */
  digests: Set<string>;
}

export interface PackWorkerState {
  open: Map<string, OpenPack>;
  knownDirs: Set<string>;
  scratch: { buf: Buffer };
  /** Where a job's appends are gathered for one write (made on first use). */
  stage?: { buf: Buffer };
}

export function packPutBatchSync(common: PackPutCommon, items: PackPutItem[], codec: BlobCodec, probe: typeof probeDigestPrefix, st: PackWorkerState): PackPutBatchResult {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const zlib = require('node:zlib') as typeof import('node:zlib');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const results: (PackPutResult | null)[] = items.map(() => null);
  const fileOf = (packId: string): string => path.join(common.packsDir, packId.slice(0, 2), `${packId}.pack`);
  // Appended blobs not written yet (all of the open pack): their parts, and answers to give once written.
  let parts: Buffer[] = [];
  let pendingBytes = 0;
  let waiting: { k: number; r: PackPutResult }[] = [];

  const intact = (loc: PackLoc, plain: Buffer): boolean => {
    let fd: number;
    try {
      fd = fs.openSync(fileOf(loc.packId), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    let got: number;
    try {
      if (st.scratch.buf.length < loc.storedLength) st.scratch.buf = Buffer.allocUnsafeSlow(Math.max(loc.storedLength, 2 * st.scratch.buf.length));
      got = fs.readSync(fd, st.scratch.buf, 0, loc.storedLength, loc.offset);
    } finally {
      fs.closeSync(fd);
    }
    if (got !== loc.storedLength) return false;
    const stored = st.scratch.buf.subarray(0, got);
    const head = stored.subarray(0, 20);
    if (codec.sizeOf(head, common.magic) !== got || head.readUInt32LE(16) !== plain.length) return false;
    if (head.readUInt8(8) === 0) return stored.subarray(20).equals(plain);
    return zlib.crc32(stored.subarray(20)) === head.readUInt32LE(12);
  };
  const firstIntact = (locs: PackLoc[], plain: Buffer): number => {
    if (!common.verify) return locs.length ? 0 : -1;
    for (let i = 0; i < locs.length; i++) if (intact(locs[i], plain)) return i;
    return -1;
  };

  const openPack = (): OpenPack => {
    const packId = crypto.randomBytes(16).toString('hex');
    const dir = path.join(common.packsDir, packId.slice(0, 2));
    if (!st.knownDirs.has(dir)) {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      st.knownDirs.add(dir);
    }
    const file = path.join(dir, `${packId}.pack`);
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      st.knownDirs.delete(dir); // the folder went away (a repository removed and made anew)
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fd = fs.openSync(file, 'wx', 0o600);
    }
    const header = Buffer.alloc(16);
    Buffer.from([127, 58, 87, 56, 80, 68, 139, 28]).copy(header, 0);
    header.writeUInt32LE(2, 8);
    try {
      for (let o = 0; o < 16; ) o += fs.writeSync(fd, header, o, 16 - o, o);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
      throw err;
    }
    const p = { fd, packId, file, size: 16, digests: new Set<string>() };
    st.open.set(common.session, p);
    return p;
  };

  /**
   * Writes the pending appends at the pack's size; only then do their answers count. Copied into
   * this thread's staging buffer and written with one write: a writev of 20-byte headers and
   * payloads cost this kernel two to three times the system time of one contiguous write.
   */
  const flush = (p: OpenPack): void => {
    st.stage ??= { buf: Buffer.alloc(0) };
    if (st.stage.buf.length < pendingBytes) st.stage.buf = Buffer.allocUnsafeSlow(Math.max(pendingBytes, 2 * st.stage.buf.length));
    const stage = st.stage.buf;
    let len = 0;
    for (const b of parts) len += b.copy(stage, len);
    let pos = p.size;
    try {
      for (let o = 0; o < len; ) {
        const n = fs.writeSync(p.fd, stage, o, len - o, pos);
        if (n === 0) throw Object.assign(new Error('write to a pack returned 0 bytes'), { code: 'EIO', syscall: 'write' });
        o += n;
        pos += n;
      }
    } catch (err) {
      // Not written: not in the pack (the next write goes at the same size).
      for (const w of waiting) p.digests.delete(w.r.digest);
      parts = [];
      pendingBytes = 0;
      waiting = [];
      throw err;
    }
    p.size = pos;
    for (const w of waiting) results[w.k] = w.r;
    parts = [];
    pendingBytes = 0;
    waiting = [];
  };

  const append = (k: number, plain: Buffer, digest: string, repaired: boolean): void => {
    const encoded = codec.encode(plain, common.magic, common.compress, codec.lz4, codec.probe, codec.cipher);
    const storedLength = encoded.reduce((n, b) => n + b.length, 0);
    const p = st.open.get(common.session) ?? openPack();
    const r: PackPutResult = { digest, outcome: 'stored', repaired, packId: p.packId, offset: p.size + pendingBytes, storedLength };
    for (const b of encoded) parts.push(b);
    pendingBytes += storedLength;
    waiting.push({ k, r });
    p.digests.add(digest);
    // Bounds the staging buffer (a batch is about 1 MiB: chunk-pipeline.ts).
    if (pendingBytes >= 8 * 1024 * 1024) flush(p);
    if (p.size + pendingBytes >= common.sealBytes) {
      flush(p);
      st.open.delete(common.session);
      fs.closeSync(p.fd);
      r.sealed = true;
    }
  };

  const one = (k: number, item: PackPutItem): void => {
    const plain = item.plain;
    // An encrypted repository's digest is keyed (digest.ts): HMAC-SHA256 under the codec's idKey.
    const digest = item.digest ?? (codec.idKey ? crypto.createHmac('sha256', codec.idKey) : crypto.createHash('sha256')).update(plain).digest('hex');
    if (item.force) return append(k, plain, digest, false);
    if (item.base && item.base.digest === digest) {
      const i = firstIntact(item.base.locations, plain);
      if (i >= 0) {
        results[k] = { digest, outcome: 'unchanged', repaired: false, intact: i };
        return;
      }
      return append(k, plain, digest, item.base.locations.length > 0);
    }
    if (item.candidates) {
      const i = firstIntact(item.candidates, plain);
      if (i >= 0) {
        results[k] = { digest, outcome: 'known', repaired: false, intact: i };
        return;
      }
      return append(k, plain, digest, item.candidates.length > 0);
    }
    // A digest this worker appended to its open pack moments ago counts as known too: the main
    // thread may not have put it into the table yet (identical chunks in flight).
    if (common.table && (st.open.get(common.session)?.digests.has(digest) || probe(common.table, Buffer.from(digest, 'hex')))) {
      results[k] = { digest, outcome: 'maybe-known', repaired: false };
      return;
    }
    append(k, plain, digest, false);
  };

  try {
    for (let k = 0; k < items.length; k++) one(k, items[k]);
    const p = st.open.get(common.session);
    if (p && parts.length) flush(p);
    return { results };
  } catch (err) {
    const p = st.open.get(common.session);
    if (p) for (const w of waiting) p.digests.delete(w.r.digest);
    const e = err as NodeJS.ErrnoException;
    return { results, failure: { message: e.message, code: e.code, syscall: e.syscall, path: e.path } };
  }
}

/** Seals this worker's open pack of `session` (fsync of file and folder); its id, or null if none was open. */
export function packSealSync(session: string, st: PackWorkerState): string | null {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const p = st.open.get(session);
  if (!p) return null;
  st.open.delete(session);
  try {
    fs.fsyncSync(p.fd);
  } finally {
    fs.closeSync(p.fd);
  }
  const dfd = fs.openSync(path.dirname(p.file), 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
  return p.packId;
}

/** Closes and deletes this worker's open (unsealed) pack of `session`; its id, or null. */
export function packAbortSync(session: string, st: PackWorkerState): string | null {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  const p = st.open.get(session);
  if (!p) return null;
  st.open.delete(session);
  try {
    fs.closeSync(p.fd);
  } finally {
    fs.rmSync(p.file, { force: true });
  }
  return p.packId;
}
