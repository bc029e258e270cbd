/**
 * The blob store of a format-2 repository (pack-format.ts has the on-disk format and the rules):
 * one `PackStore` per repository, with a `BlobStore` view per kind (chunks, index pages) and the
 * write sessions of the backup writers. It implements blob-store.ts, so the disk writer, restore,
 * verify, the disk chunk reader and GC's mark are the same code for both formats.
 *
 * Writing (`PackSession`, one per backup writer): every blob goes to a blob worker
 * (pack-worker.ts), which appends it to its own open pack of the session. The answers tell this
 * side where each blob went; the session keeps those entries per pack (and a pending slot in the
 * lookup's shared table, the workers' dedup knowledge) until the pack is sealed: at
 * PACK_SEAL_BYTES by the worker itself, or at `commit` for every worker. Sealing = the worker's
 * fsync of pack and folder, then the .idx written here with `storage.writeAtomic`; only then do the
 * pack's blobs enter the lookup. `commit` returns once every .idx of the session is durable (the
 * backup writer writes the manifest after it) and fails if a pack of the session could not be
 * sealed (its worker died): CBT_REPO_PACK_UNSEALED. `abort` deletes the session's unsealed packs.
 *
 * Dedup: a prefix hit on a worker comes back `maybe-known`; confirmed here (the full digest in the
 * lookup or among this session's pending blobs) it gets a second trip that compares the stored
 * copies with the true bytes (a damaged one is never reused: it is written anew, `repaired`), else
 * a second trip that stores it. A writer relying on a blob of another pack touches that pack's
 * .idx once per session (the per-pack GC rule); a touch that finds the .idx gone (GC removed the
 * pack) forgets the pack and stores the blob anew. A duplicate the workers appended
 * speculatively (the same digest twice in this session) is left out of the .idx: dead bytes.
 *
 * Reading: the lookup (pack-lookup.ts) names the pack and offset; the worker preads the stored
 * length and checks the blob exactly as format 1 does (load-blob.ts). A digest not in the lookup
 * refreshes it once before it is missing; of several locations the first good one serves.
 *
 * Object storage (remote-packs.ts, s3-storage.ts): the workers append a session's packs in a local
 * staging folder (`packsDir`), a sealed pack is uploaded as one object (`packKeyOf`) before its
 * .idx is written (`sealPack`) and the staged file removed; `read` and `restoreBatch` fetch
 * (offset, storedLength) ranges and hand the bytes to the workers to decode and check (a restore
 * batch: remote-restore.ts). Stored
 * copies are not compared with the true bytes before reuse there (`put`: see remote-packs.ts).
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import type { BlobWorkers, RestoreBatchResult, RestoreChunk } from './blob-workers';
import { blobStateByReading, type BlobSession, type BlobState, type BlobStore, type InsertOptions, type PutChunkResult, type RepositoryBlobs } from './blob-store';
import type { ChunkJob } from './restore-workers';
import type { StoreBlobResult } from './store-blob';
import type { PackLoc, PackPutItem, PackPutResult } from './pack-worker';
import { PackLookup, type BlobLocation } from './pack-lookup';
import { remotePacksOf, type RemotePacks } from './remote-packs';
import { restoreRemote } from './remote-restore';
import { PACKS_DIR, PACK_SEAL_BYTES, packIndexKeyOf, packKeyOf } from './pack-format';
import { decodePackIndex, encodePackIndex, type PackIndexEntry } from './pack-index-file';
import { magicOf, type BlobKind, type Compression } from './file-formats';
import { InternalError } from '../../shared/errors/internal-errors';
import { killPoint } from '../service/test-kill-point';
import {
  RepoChunkCorruptError,
  RepoChunkMissingError,
  RepoPackUnsealedError,
  RepoPageCorruptError,
  RepoPageMissingError,
  RepoStorageNotLocalError,
  noSpaceOr,
} from './repository-errors';

export class PackStore implements RepositoryBlobs {
  readonly format = 2 as const;
  readonly lookup: PackLookup;
  readonly chunks: PackKindStore;
  readonly pages: PackKindStore;
  sealBytes = PACK_SEAL_BYTES;

  constructor(
    readonly storage: RepositoryStorage,
    readonly compression: Compression,
    readonly workers: BlobWorkers,
    readonly logger?: Logger,
  ) {
    this.lookup = new PackLookup(storage);
    this.remote = remotePacksOf(storage);
    this.chunks = new PackKindStore(this, 'chunk');
    this.pages = new PackKindStore(this, 'page');
  }

  openSession(): PackSession {
    return new PackSession(this);
  }

  /** Packs on object storage (see the module header), or null for a local directory. */
  readonly remote: RemotePacks | null;

  /** Local folder of `.packs` for the workers' file calls (see the module header). */
  packsDir(): string {
    if (this.remote) return this.remote.stagingDir();
    if (!this.storage.localPath) throw RepoStorageNotLocalError({ root: this.storage.root, key: PACKS_DIR });
    return this.storage.localPath(PACKS_DIR);
  }

  /** Local file of a pack (see the module header). */
  packFile(packId: string): string {
    const key = packKeyOf(packId);
    if (!this.storage.localPath) throw RepoStorageNotLocalError({ root: this.storage.root, key });
    return this.storage.localPath(key);
  }

  /** Reads a pack's .idx: its entries, or null when absent; a corrupt one throws nothing but answers `corrupt`. */
  async readIndex(packId: string): Promise<{ entries: Buffer; count: number } | { corrupt: string } | null> {
    const data = await this.storage.read(packIndexKeyOf(packId));
    return data ? decodePackIndex(data) : null;
  }
}

/** Where a blob is, for messages: "<pack key>@<offset>", or the .packs folder when in no pack. */
function describe(locs: BlobLocation[]): string {
  return locs.length ? `${packKeyOf(locs[0].packId)}@${locs[0].offset}` : `${PACKS_DIR} (in no pack index)`;
}

function toLoc(l: BlobLocation): PackLoc {
  return { packId: l.packId, offset: l.offset, storedLength: l.storedLength };
}

/** The `BlobStore` of one kind of blob in a format-2 repository. */
export class PackKindStore implements BlobStore {
  private readonly magic: Buffer;

  constructor(
    private readonly store: PackStore,
    readonly kind: BlobKind,
  ) {
    this.magic = magicOf(kind);
  }

  async insert(digest: string, plain: Buffer, opts: InsertOptions): Promise<StoreBlobResult> {
    const session = opts.session as PackSession;
    const force = opts.force === true;
    if (!force && session.pendingHas(this.kind, digest)) return { existed: true, storedBytes: 0, repaired: false };
    await this.store.lookup.ensureLoaded();
    const locs = force ? [] : this.locs(digest);
    const r = await session.put(this.kind, plain, {
      digest,
      force,
      verify: opts.verify !== false,
      ...(locs.length ? { candidates: locs.map(toLoc) } : {}),
    });
    return this.settle(session, r, plain, locs, force);
  }

  async putChunk(plain: Buffer, opts: { base: string | null; forced(digest: string): boolean; session: BlobSession }): Promise<PutChunkResult> {
    const [r] = await this.putChunks([plain], { bases: [opts.base], forced: opts.forced, session: opts.session });
    return r;
  }

  /**
   * `putChunk` for several chunks in one worker trip (the chunks of one NBD read buffer): their
   * answers in order. The answers of the trip are recorded in order before any second trip (a
   * `maybe-known` chunk may be a duplicate of one before it in the same job). A job that failed
   * midway records what its worker wrote, then throws.
   */
  async putChunks(plains: Buffer[], opts: { bases: (string | null)[]; forced(digest: string): boolean; session: BlobSession }): Promise<PutChunkResult[]> {
    const session = opts.session as PackSession;
    const lookup = this.store.lookup;
    await lookup.ensureLoaded();
    const items = plains.map((plain, k) => {
      const b = opts.bases[k];
      const base = b !== null && !opts.forced(b) ? { digest: b, locations: this.locs(b).map(toLoc) } : undefined;
      return { plain, force: false, ...(base ? { base } : {}) };
    });
    const { results, error } = await session.putBatch(this.kind, items, { verify: true, table: lookup.table });
    const out: (PutChunkResult | null)[] = plains.map(() => null);
    const second: number[] = [];
    for (let k = 0; k < plains.length; k++) {
      const r = results[k];
      if (!r) continue;
      const digest = r.digest;
      if (r.outcome === 'unchanged') out[k] = { digest, outcome: 'unchanged', storedBytes: 0, repaired: false };
      else if (r.outcome === 'stored') {
        const res = session.record(this.kind, r, plains[k].length, opts.forced(digest) || r.repaired);
        out[k] = { digest, outcome: res.added ? 'stored' : 'known', storedBytes: res.added ? (r.storedLength ?? 0) : 0, repaired: r.repaired };
      } else second.push(k);
    }
    if (error) throw error;
    // maybe-known: confirm here, then one more trip (see the module header).
    await Promise.all(
      second.map(async (k) => {
        const plain = plains[k];
        const digest = (results[k] as PackPutResult).digest;
        const force = opts.forced(digest);
        if (!force && session.pendingHas(this.kind, digest)) {
          out[k] = { digest, outcome: 'known', storedBytes: 0, repaired: false };
          return;
        }
        const locs = force ? [] : this.locs(digest);
        const r = await session.put(this.kind, plain, { digest, force, verify: true, ...(locs.length ? { candidates: locs.map(toLoc) } : {}) });
        const s = await this.settle(session, r, plain, locs, force);
        out[k] = { digest, outcome: s.existed ? 'known' : 'stored', storedBytes: s.storedBytes, repaired: s.repaired };
      }),
    );
    return out as PutChunkResult[];
  }

  /** The answer of a trip with `candidates` (or force): known → touch its pack; stored → record. */
  private async settle(session: PackSession, r: PackPutResult, plain: Buffer, locs: BlobLocation[], force: boolean): Promise<StoreBlobResult> {
    if (r.outcome === 'known' || r.outcome === 'unchanged') {
      const loc = locs[r.intact ?? 0];
      if (await session.touchPack(loc.packId)) return { existed: true, storedBytes: 0, repaired: false };
      // GC removed that pack meanwhile: store the blob anew.
      const again = await session.put(this.kind, plain, { digest: r.digest, force: true, verify: true });
      return this.settle(session, again, plain, [], true);
    }
    const res = session.record(this.kind, r, plain.length, force || r.repaired);
    return { existed: !res.added, storedBytes: res.added ? (r.storedLength ?? 0) : 0, repaired: r.repaired };
  }

  async read(digest: string, opts: { maxPlain?: number; fast?: boolean; into?: Buffer } = {}): Promise<Buffer> {
    const lookup = this.store.lookup;
    const gen = lookup.generationNow;
    let locs = (await lookup.getFresh(digest)).filter((l) => l.kind === this.kind);
    if (!locs.length) throw this.missing(digest, describe(locs));
    let reason = '';
    let missing = true;
    const remote = this.store.remote;
    for (let i = 0; i < locs.length; i++) {
      const loc = locs[i];
      // Object storage: the stored bytes by a ranged GET; a pack object that is gone is missing.
      const from = remote ? await remote.readRange(packKeyOf(loc.packId), loc.offset, loc.storedLength) : undefined;
      const r =
        from === null
          ? ({ state: 'missing' } as const)
          : await this.store.workers.load({
              file: remote ? packKeyOf(loc.packId) : this.store.packFile(loc.packId),
              ...(from ? { from } : {}),
              digest,
              magic: this.magic,
              checkCrc: opts.fast !== true,
              at: { offset: loc.offset, length: loc.storedLength },
              ...(opts.into ? { into: opts.into } : {}),
            });
      if (r.state === 'ok') return r.plain;
      if (r.state === 'corrupt') {
        missing = false;
        reason ||= r.reason === 'bad magic' ? `bad magic for a ${this.kind}` : r.reason;
      }
      if (i === locs.length - 1 && missing && lookup.generationNow === gen) {
        // Every pack named is gone: GC or a repack elsewhere; refresh once and try where it is now.
        await lookup.refresh();
        const tried = new Set(locs.map((l) => `${l.packId}@${l.offset}`));
        locs = [...locs, ...this.locs(digest).filter((l) => !tried.has(`${l.packId}@${l.offset}`))];
      }
    }
    if (missing) throw this.missing(digest, describe(locs));
    throw this.kind === 'chunk'
      ? RepoChunkCorruptError({ digest, path: describe(locs), reason })
      : RepoPageCorruptError({ digest, path: describe(locs), reason });
  }

  check(digest: string): Promise<BlobState> {
    return blobStateByReading(() => this.read(digest));
  }

  async restoreOrder(jobs: ChunkJob[]): Promise<ChunkJob[]> {
    const lookup = this.store.lookup;
    await lookup.ensureLoaded();
    const keyed = jobs.map((j) => ({ j, loc: this.locs(j.digest)[0] }));
    keyed.sort((a, b) => {
      if (!a.loc || !b.loc) return (a.loc ? 0 : 1) - (b.loc ? 0 : 1) || a.j.offset - b.j.offset;
      return a.loc.packId < b.loc.packId ? -1 : a.loc.packId > b.loc.packId ? 1 : a.loc.offset - b.loc.offset;
    });
    return keyed.map((k) => k.j);
  }

  /**
   * Restores a batch on one worker: each job's first location, runs of adjacent blobs read with
   * one pread; a chunk bad there but with another location (or not in the lookup before a
   * refresh) is read again through `read` and written here.
   */
  async restoreBatch(fd: number, jobs: ChunkJob[]): Promise<RestoreBatchResult> {
    const lookup = this.store.lookup;
    await lookup.ensureLoaded();
    if (this.store.remote) return await this.restoreRemote(this.store.remote, fd, jobs);
    const chunks: RestoreChunk[] = [];
    const unplaced: ChunkJob[] = [];
    for (const j of jobs) {
      const loc = this.locs(j.digest)[0];
      if (!loc) unplaced.push(j);
      else chunks.push({ file: this.store.packFile(loc.packId), digest: j.digest, offset: j.offset, length: j.length, at: { offset: loc.offset, length: loc.storedLength } });
    }
    chunks.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : (a.at?.offset ?? 0) - (b.at?.offset ?? 0)));
    const result = chunks.length ? await this.store.workers.restoreBatch(fd, this.magic, chunks) : { bad: [], bytes: 0 };
    // Read again through `read`: another location, or a refresh (a repack or GC elsewhere moved it).
    const badNow = new Set(result.bad);
    const retry = [...unplaced, ...jobs.filter((j) => badNow.has(j.offset))];
    if (!retry.length) return result;
    const bad = new Set(result.bad);
    for (const j of unplaced) bad.add(j.offset);
    const fs = await import('node:fs');
    for (const j of retry) {
      try {
        const plain = await this.read(j.digest, { fast: true });
        if (plain.length !== j.length) continue;
        for (let o = 0; o < plain.length; ) {
          o += await new Promise<number>((resolve, reject) => fs.write(fd, plain, o, plain.length - o, j.offset + o, (err, n) => (err ? reject(err) : resolve(n))));
        }
        bad.delete(j.offset);
        result.bytes += plain.length;
      } catch (err) {
        if (!RepoChunkMissingError.is(err) && !RepoChunkCorruptError.is(err) && !RepoPageMissingError.is(err) && !RepoPageCorruptError.is(err)) throw err;
      }
    }
    return { bad: [...bad].sort((a, b) => a - b), bytes: result.bytes };
  }

  /** restoreBatch on object storage: remote-restore.ts. */
  private restoreRemote(remote: RemotePacks, fd: number, jobs: ChunkJob[]): Promise<RestoreBatchResult> {
    return restoreRemote({ remote, workers: this.store.workers, magic: this.magic, first: (d) => this.locs(d)[0], read: (d) => this.read(d, { fast: true }) }, fd, jobs);
  }

  whereIs(digest: string): string {
    return describe(this.locs(digest));
  }

  async locate(digest: string): Promise<{ pack: string; packOffset: number } | null> {
    await this.store.lookup.ensureLoaded();
    const loc = this.locs(digest)[0];
    return loc ? { pack: loc.packId, packOffset: loc.offset } : null;
  }

  /** The locations of this kind's blob (a page and a chunk of equal content are two blobs). */
  private locs(digest: string): BlobLocation[] {
    return this.store.lookup.allSync(digest).filter((l) => l.kind === this.kind);
  }

  private missing(digest: string, where: string): Error {
    return this.kind === 'chunk' ? RepoChunkMissingError({ digest, path: where }) : RepoPageMissingError({ digest, path: where });
  }
}

/** fsync of a closed pack file, then of its folder (on the thread pool; fsync through any descriptor flushes the file). */
async function syncPackFile(dir: string, packId: string): Promise<void> {
  for (const f of [path.join(dir, `${packId}.pack`), dir]) {
    const h = await fsp.open(f, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  }
}

/** Key of a pending blob: kind initial + digest. */
function pendingKey(kind: BlobKind, digest: string): string {
  return `${kind[0]}${digest}`;
}

interface SessionPack {
  /** Until sealed (then dropped: the lookup has them, and a 64 GiB full must not keep a million here). */
  entries: PackIndexEntry[];
  digests: Set<string>;
  sealed: boolean;
  count: number;
}

/** One backup writer's pack session (see the module header). */
export class PackSession implements BlobSession {
  readonly format = 2 as const;
  readonly id = crypto.randomBytes(8).toString('hex');
  private readonly packs = new Map<string, SessionPack>();
  /** Blobs appended in this session whose pack is not sealed yet (pendingKey → pack id). */
  private readonly pending = new Map<string, string>();
  private readonly touched = new Set<string>();
  private readonly sealing: Promise<void>[] = [];
  private sealError: unknown;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(private readonly store: PackStore) {}

  pendingHas(kind: BlobKind, digest: string): boolean {
    return this.pending.has(pendingKey(kind, digest));
  }

  /** One worker trip of this session. */
  async put(
    kind: BlobKind,
    plain: Buffer,
    opts: { digest?: string; force: boolean; verify: boolean; table?: Uint32Array; base?: { digest: string; locations: PackLoc[] }; candidates?: PackLoc[] },
  ): Promise<PackPutResult> {
    const { digest, force, base, candidates, ...common } = opts;
    const { results, error } = await this.putBatch(kind, [{ plain, force, ...(digest !== undefined ? { digest } : {}), ...(base ? { base } : {}), ...(candidates ? { candidates } : {}) }], common);
    if (error) throw error;
    return results[0] as PackPutResult;
  }

  /**
   * One worker trip with several blobs: per-item answers (null: not done) and the error that
   * stopped the job midway, if any (see pack-worker.ts). The caller records the answers it got.
   */
  async putBatch(kind: BlobKind, items: PackPutItem[], opts: { verify: boolean; table?: Uint32Array }): Promise<{ results: (PackPutResult | null)[]; error?: Error }> {
    const packsDir = this.store.packsDir();
    let r: { results: (PackPutResult | null)[]; error?: Error };
    try {
      r = await this.store.workers.packPutBatch(
        {
          session: this.id,
          packsDir,
          magic: magicOf(kind),
          compress: this.store.compression === 'auto',
          sealBytes: this.store.sealBytes,
          ...opts,
          // Object storage: stored copies are trusted, not downloaded to compare (remote-packs.ts).
          ...(this.store.remote ? { verify: false } : {}),
        },
        items,
      );
    } catch (err) {
      throw noSpaceOr(err, packsDir);
    }
    return r.error ? { results: r.results, error: noSpaceOr(r.error, packsDir) as Error } : r;
  }

  /**
   * Records an appended blob. Not added (dead bytes) when this session has it already; otherwise
   * added, also when a sealed pack has it too (a duplicate, `preferred` when it repairs a bad copy).
   * A reply that sealed its pack starts the .idx write.
   */
  record(kind: BlobKind, r: PackPutResult, plainLength: number, _preferred: boolean): { added: boolean } {
    const packId = r.packId as string;
    let p = this.packs.get(packId);
    if (!p) {
      p = { entries: [], digests: new Set(), sealed: false, count: 0 };
      this.packs.set(packId, p);
    }
    let added = false;
    if (p.sealed) throw InternalError({ what: `pack ${packId}: a blob answered after the pack was sealed` });
    const key = pendingKey(kind, r.digest);
    if (!this.pending.has(key) && !p.digests.has(key)) {
      p.count++;
      p.entries.push({ digest: Buffer.from(r.digest, 'hex'), offset: r.offset as number, storedLength: r.storedLength as number, plainLength, kind });
      p.digests.add(key);
      this.pending.set(key, packId);
      this.store.lookup.addPending(Buffer.from(r.digest, 'hex'));
      added = true;
    }
    if (r.sealed) this.startSeal(packId, true);
    return { added };
  }

  /** Touches the .idx of a pack this session relies on, once; false if the pack is gone. */
  async touchPack(packId: string): Promise<boolean> {
    if (this.touched.has(packId) || this.packs.has(packId)) return true;
    if (!(await this.store.storage.touch(packIndexKeyOf(packId)))) {
      this.store.lookup.removePack(packId);
      return false;
    }
    this.touched.add(packId);
    return true;
  }

  /** Waits for the .idx writes of the packs sealed so far (not a seal of the open ones). */
  async settled(): Promise<void> {
    await Promise.all(this.sealing);
  }

  /** Seals every open pack of the session and waits until every .idx is durable. */
  async commit(): Promise<void> {
    if (this.state !== 'open') return;
    for (const id of await this.store.workers.packSealAll(this.id)) this.startSeal(id);
    await Promise.all(this.sealing);
    if (this.sealError) throw this.sealError;
    for (const [packId, p] of this.packs) {
      if (!p.sealed) throw RepoPackUnsealedError({ packId, blobs: p.count });
    }
    this.state = 'committed';
  }

  /** Deletes the unsealed packs of this session (sealed ones stay for GC). */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.store.workers.packAbortAll(this.id).catch(() => []);
    await Promise.allSettled(this.sealing);
    for (const k of this.pending.keys()) this.store.lookup.dropPending(Buffer.from(k.slice(1), 'hex'));
    this.pending.clear();
  }

  /** `unsynced`: a full pack the worker closed without fsync (pack-worker.ts); else the worker fsynced it. */
  private startSeal(packId: string, unsynced = false): void {
    const p = this.packs.get(packId) ?? { entries: [], digests: new Set<string>(), sealed: false, count: 0 };
    this.packs.set(packId, p);
    this.sealing.push(
      this.sealPack(packId, p, unsynced).catch((err: unknown) => {
        this.sealError ??= err;
      }),
    );
  }

  /** The pack made durable (fsync of file and folder, off the workers), then the .idx, then its blobs join the lookup. */
  private async sealPack(packId: string, p: SessionPack, unsynced: boolean): Promise<void> {
    // Taken now: the entries are complete (every answer of a pack comes before the one that seals it).
    const entries = p.entries;
    if (unsynced) await syncPackFile(path.join(this.store.packsDir(), packId.slice(0, 2)), packId);
    killPoint('pack-synced-before-idx');
    const idx = encodePackIndex(entries);
    const remote = this.store.remote;
    const staged = remote ? path.join(remote.stagingDir(), packId.slice(0, 2), `${packId}.pack`) : null;
    // Object storage: the pack object first, so an .idx never names a pack that is not there.
    try {
      if (remote && staged) await remote.upload(packKeyOf(packId), staged);
      await this.store.storage.writeAtomic(packIndexKeyOf(packId), idx);
    } finally {
      // Uploaded or not (a full bucket), the staged copy goes: a pack object without .idx is GC's.
      if (staged) await fsp.rm(staged, { force: true });
    }
    p.sealed = true;
    const decoded = decodePackIndex(idx);
    if ('entries' in decoded) this.store.lookup.addPack(packId, decoded.entries, decoded.count);
    for (const d of p.digests) this.pending.delete(d);
    p.entries = [];
    p.digests.clear();
  }
}
