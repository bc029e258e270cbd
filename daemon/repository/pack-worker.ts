/**
 * The blob workers' side of a pack session (pack-format.ts states the rules): put one blob of a
 * backup into the worker's own open pack of that session, seal it, or drop it. Plain synchronous
 * calls on the worker thread, like store-blob.ts; one job per chunk does all the work:
 *
 * `packPutSync`:
 * 1. the digest: given (index pages, a second trip) or computed here (SHA-256 of `plain`);
 * 2. with a `base` of the same digest (an incremental's or full-compare's unchanged chunk): its
 *    stored copies are compared with the true bytes (`verify`), and the answer is `unchanged`
 *    when one is intact; none intact: the blob is appended, answered `stored` + `repaired`;
 * 3. with the dedup `table` (pack-lookup.ts) and a prefix hit, or a digest this worker appended to
 *    its open pack of the session already: `maybe-known`, nothing written
 *    (the main thread confirms and, when it is truly known, sends the second trip with `candidates`);
 * 4. with `candidates` (where the main thread knows the blob is): the first intact one is
 *    answered `known` (`intact` = its index); none intact, or `force`: appended, `stored`;
 * 5. otherwise appended: `stored` with the pack, offset and stored length.
 * An append goes at the end of the session's pack of this worker (created with its 16-byte header
 * on first use): positional writes at the recorded size, so a failed write (ENOSPC) is simply
 * overwritten by the next one. No fsync; at PACK_SEAL_BYTES the pack is sealed right away
 * (`sealed: true` in the answer): fsync of the file and of its folder, the main thread then writes
 * the .idx. Every answer of a pack comes before the answer that seals it (one thread, in order).
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

export interface PackPutJob {
  session: string;
  /** Local folder of `.packs`. */
  packsDir: string;
  plain: Buffer;
  magic: Buffer;
  compress: boolean;
  sealBytes: number;
  digest?: string;
  base?: { digest: string; locations: PackLoc[] };
  table?: Uint32Array;
  candidates?: PackLoc[];
  force: boolean;
  verify: boolean;
}

export type PackPutResult = {
  digest: string;
  outcome: 'unchanged' | 'maybe-known' | 'known' | 'stored';
  repaired: boolean;
  /** `known`/`unchanged`: index of the intact location. */
  intact?: number;
  packId?: string;
  offset?: number;
  storedLength?: number;
  /** The pack was sealed (fsynced) right after this append. */
  sealed?: boolean;
};

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
}

export function packPutSync(job: PackPutJob, codec: BlobCodec, probe: typeof probeDigestPrefix, st: PackWorkerState): PackPutResult {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const zlib = require('node:zlib') as typeof import('node:zlib');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const plain = job.plain;
  const digest = job.digest ?? crypto.createHash('sha256').update(plain).digest('hex');
  const fileOf = (packId: string): string => path.join(job.packsDir, packId.slice(0, 2), `${packId}.pack`);

  const intact = (loc: PackLoc): boolean => {
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
    if (codec.sizeOf(head, job.magic) !== got || head.readUInt32LE(16) !== plain.length) return false;
    if (head.readUInt8(8) === 0) return stored.subarray(20).equals(plain);
    return zlib.crc32(stored.subarray(20)) === head.readUInt32LE(12);
  };
  const firstIntact = (locs: PackLoc[]): number => {
    if (!job.verify) return locs.length ? 0 : -1;
    for (let i = 0; i < locs.length; i++) if (intact(locs[i])) return i;
    return -1;
  };

  const append = (repaired: boolean): PackPutResult => {
    const parts = codec.encode(plain, job.magic, job.compress, codec.lz4, codec.probe);
    const storedLength = parts.reduce((n, b) => n + b.length, 0);
    let p = st.open.get(job.session);
    if (!p) {
      const packId = crypto.randomBytes(16).toString('hex');
      const dir = path.join(job.packsDir, packId.slice(0, 2));
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
      p = { fd, packId, file, size: 16, digests: new Set() };
      st.open.set(job.session, p);
    }
    const offset = p.size;
    let pos = offset;
    for (const part of parts) {
      for (let o = 0; o < part.length; ) {
        const n = fs.writeSync(p.fd, part, o, part.length - o, pos);
        if (n === 0) throw Object.assign(new Error('write to a pack returned 0 bytes'), { code: 'EIO', syscall: 'write' });
        o += n;
        pos += n;
      }
    }
    p.size = pos;
    p.digests.add(digest);
    const result: PackPutResult = { digest, outcome: 'stored', repaired, packId: p.packId, offset, storedLength };
    if (p.size >= job.sealBytes) {
      sealOpenPack(p);
      st.open.delete(job.session);
      result.sealed = true;
    }
    return result;
  };
  const sealOpenPack = (p: OpenPack): void => {
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
  };

  if (job.force) return append(false);
  if (job.base && job.base.digest === digest) {
    const i = firstIntact(job.base.locations);
    if (i >= 0) return { digest, outcome: 'unchanged', repaired: false, intact: i };
    return append(job.base.locations.length > 0);
  }
  if (job.candidates) {
    const i = firstIntact(job.candidates);
    if (i >= 0) return { digest, outcome: 'known', repaired: false, intact: i };
    return append(job.candidates.length > 0);
  }
  // A digest this worker appended to its open pack moments ago counts as known too: the main
  // thread may not have put it into the table yet (identical chunks in flight).
  if (job.table && (st.open.get(job.session)?.digests.has(digest) || probe(job.table, Buffer.from(digest, 'hex')))) return { digest, outcome: 'maybe-known', repaired: false };
  return append(false);
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
