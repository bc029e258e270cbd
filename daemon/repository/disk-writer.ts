/**
 * Writes one disk's index inside a backup: chunks go to the chunk store as they come, the page
 * list is written by `finish`.
 *
 * With a base (the same disk in an earlier backup, same size and chunk size) the base's digest table
 * is cloned first, so an incremental only puts the chunks that changed and `finish` writes only the
 * pages whose entries changed; every other page digest is copied from the base's list. Without a
 * usable base the table starts all-zero.
 *
 * Bad base data is never carried forward silently: chunks that verify recorded as missing/corrupt
 * and chunks under a base page that cannot be read are reported by `badBaseChunks()`, and `finish`
 * refuses to complete until each of them has been put again. A base chunk that cannot be read
 * while building a partly changed chunk (`readBaseChunk` answers null) joins them: the engine then
 * reads that chunk whole from the VM.
 *
 * Damage found in this run is repaired or refused, never referenced: every put compares a present
 * stored copy with the true bytes it holds (a full-compare's unchanged chunks included) and
 * rewrites a damaged one; base pages and chunks found unreadable go into the run's `damaged` set,
 * leave it only when rewritten, and the backup writer refuses to commit a manifest that still
 * references one (`damagedReference`).
 */
import type { Logger } from 'winston';
import type { BlobSession, BlobStore, PutChunkResult } from './blob-store';
import type { BlobWorkers } from './blob-workers';
import { inParallel } from './in-parallel';
import { loadDigestTable } from './digest-table';
import { DIGEST_BYTES, ZERO_DIGEST, isAllZero } from './digest';
import {
  chunkLength,
  geometry,
  pageContent,
  pageLength,
  encodePageList,
  isZeroDigest,
  type IndexGeometry,
} from './disk-index';
import { diskPages, type BackupMode, type Consistency, type DiskEntry } from './manifest';
import { RepoChunkCorruptError, RepoChunkMissingError, RepoInvalidArgumentError, RepoWriterStateError } from './repository-errors';
import type { BlobKind } from './file-formats';

export interface DiskMeta {
  mode: BackupMode;
  reason: string;
  bitmap?: { name: string; generation: number };
  consistency?: Consistency;
  bytesRead: number;
  durationMs: number;
}

export interface PutResult {
  /** All-zero chunk: recorded as the zero marker, nothing stored. */
  zero: boolean;
  /** Same content as the base chunk at this index. */
  unchanged: boolean;
  /** Newly written to the chunk store (false when it existed already or was unchanged/zero). */
  stored: boolean;
  digest: string | null;
}

export interface DiskWriter {
  readonly name: string;
  readonly chunkSize: number;
  readonly chunkCount: number;
  readonly size: number;
  /** Whether a base index was cloned (false: no base, or size/chunk size differ). */
  readonly cloned: boolean;
  baseDigest(index: number): string | null;
  /**
   * Fills `into` (shared memory of the chunk's length, written by a blob worker) with the chunk as
   * the base backup has it, zeroes where it has none. Null when the base copy is missing or
   * corrupt: the chunk must then be put whole (read from the source), as `finish` insists.
   */
  readBaseChunk(index: number, into: Buffer): Promise<Buffer | null>;
  badBaseChunks(): number[];
  putChunk(index: number, data: Buffer): Promise<PutResult>;
  /** `putChunk` of several chunks (the chunks of one NBD read buffer) in one worker trip: their answers in order. */
  putChunks(items: readonly { index: number; data: Buffer }[]): Promise<PutResult[]>;
  putZero(index: number): void;
  finish(meta: DiskMeta): Promise<DiskEntry>;
}

/** What a disk writer needs from its backup writer. */
export interface DiskWriterContext {
  backupId: string;
  chunks: BlobStore;
  pages: BlobStore;
  workers: BlobWorkers;
  bad: { chunks: Set<string>; pages: Set<string> };
  /** Blobs found missing or damaged in this run and not rewritten since: never referenced at commit. */
  damaged: { chunks: Set<string>; pages: Set<string> };
  /** Known-bad blobs this backup rewrote; their markers are dropped after the commit. */
  repaired: { kind: BlobKind; digest: string }[];
  /** Blobs this backup wrote or relies on, made durable together before the manifest is written (blob-store.ts). */
  session: BlobSession;
  logger?: Logger;
}

/** Page files written at once by finish. */
const PAGE_WRITE_CONCURRENCY = 16;

export class IndexDiskWriter implements DiskWriter {
  readonly chunkSize: number;
  readonly chunkCount: number;
  readonly size: number;
  private readonly g: IndexGeometry;
  private readonly table: Buffer;
  private readonly baseTable: Buffer | null;
  private readonly basePages: string[] | null;
  private readonly unreadableBasePages = new Set<number>();
  private readonly pageDirty: Uint8Array;
  private readonly pendingBad = new Set<number>();
  private readonly badAtOpen: number[];
  private bytesStored = 0;
  private chunksStored = 0;
  private finished = false;
  private entry: DiskEntry | null = null;

  private constructor(
    private readonly ctx: DiskWriterContext,
    readonly name: string,
    private readonly format: string,
    g: IndexGeometry,
    private readonly base: { backupId: string; disk: string; entry: DiskEntry } | null,
    table: Buffer,
    basePages: string[] | null,
    unreadable: Set<number>,
  ) {
    this.g = g;
    this.size = g.size;
    this.chunkSize = g.chunkSize;
    this.chunkCount = g.chunkCount;
    this.table = table;
    this.basePages = basePages;
    this.baseTable = basePages ? Buffer.from(table) : null;
    this.pageDirty = new Uint8Array(g.pageCount);
    for (const p of unreadable) {
      this.unreadableBasePages.add(p);
      this.pageDirty[p] = 1;
      for (let i = p * g.pageEntries; i < p * g.pageEntries + pageLength(g, p); i++) this.pendingBad.add(i);
    }
    if (basePages && ctx.bad.chunks.size) {
      for (let i = 0; i < g.chunkCount; i++) {
        const d = this.entryHex(table, i);
        if (!isZeroDigest(d) && ctx.bad.chunks.has(d)) this.pendingBad.add(i);
      }
    }
    this.badAtOpen = [...this.pendingBad].sort((a, b) => a - b);
  }

  get cloned(): boolean {
    return this.basePages !== null;
  }

  /**
   * Opens a disk writer. `base` is the same disk in an earlier committed backup; it is cloned when
   * size and chunk size match (chunk size defaults to the base's), otherwise the index starts empty.
   */
  static async open(
    ctx: DiskWriterContext,
    opts: { name: string; format: string; size: number; chunkSize: number | undefined; defaultChunkSize: number },
    base: { backupId: string; disk: string; entry: DiskEntry } | null,
  ): Promise<IndexDiskWriter> {
    const chunkSize = opts.chunkSize ?? base?.entry.chunkSize ?? opts.defaultChunkSize;
    const clone = base !== null && base.entry.size === opts.size && base.entry.chunkSize === chunkSize;
    const g = geometry(opts.size, chunkSize, clone ? base.entry.pageEntries : undefined);
    const unreadable = new Set<number>();
    let basePages: string[] | null = null;
    let table: Buffer;
    if (clone) {
      basePages = diskPages(base.entry);
      const loaded = await loadDigestTable(ctx.pages, g, basePages);
      table = loaded.table;
      const problems = new Map<number, string>(loaded.badPages.map((b) => [b.page, b.problem]));
      // A page that verify found bad is not trusted even if it reads well now.
      basePages.forEach((d, p) => {
        if (isZeroDigest(d) || !ctx.bad.pages.has(d) || problems.has(p)) return;
        problems.set(p, 'marked bad by verify');
        table.fill(0, p * g.pageEntries * DIGEST_BYTES, (p * g.pageEntries + pageLength(g, p)) * DIGEST_BYTES);
      });
      for (const [p, problem] of problems) {
        ctx.logger?.warn('base index page unreadable, its chunks must be re-read', { backupId: base.backupId, disk: base.disk, page: p, problem });
        unreadable.add(p);
        ctx.damaged.pages.add(basePages[p]);
      }
    } else {
      table = Buffer.alloc(g.chunkCount * DIGEST_BYTES);
      if (base) {
        ctx.logger?.info('base index not cloned: geometry differs', {
          disk: opts.name,
          base: base.backupId,
          baseSize: base.entry.size,
          size: opts.size,
          baseChunkSize: base.entry.chunkSize,
          chunkSize,
        });
      }
    }
    return new IndexDiskWriter(ctx, opts.name, opts.format, g, clone ? base : null, table, basePages, unreadable);
  }

  baseDigest(index: number): string | null {
    this.checkIndex(index);
    if (!this.baseTable || this.unreadableBasePages.has(Math.floor(index / this.g.pageEntries))) return null;
    const d = this.entryHex(this.baseTable, index);
    return isZeroDigest(d) ? null : d;
  }

  async readBaseChunk(index: number, into: Buffer): Promise<Buffer | null> {
    this.checkWritable();
    const want = chunkLength(this.g, index);
    if (into.length !== want) throw RepoInvalidArgumentError({ what: `base chunk ${index} buffer length`, value: into.length, hint: `expected ${want} bytes` });
    const d = this.baseDigest(index);
    if (d === null) return into.fill(0);
    try {
      return await this.ctx.chunks.read(d, { fast: true, into });
    } catch (err) {
      if (!RepoChunkCorruptError.is(err) && !RepoChunkMissingError.is(err)) throw err;
      this.ctx.logger?.warn('base chunk unreadable, the chunk is read whole', { disk: this.name, index, digest: d, error: err.code });
      this.ctx.damaged.chunks.add(d);
      this.pendingBad.add(index);
      return null;
    }
  }

  badBaseChunks(): number[] {
    return [...this.badAtOpen];
  }

  async putChunk(index: number, data: Buffer): Promise<PutResult> {
    const [r] = await this.putChunks([{ index, data }]);
    return r;
  }

  async putChunks(items: readonly { index: number; data: Buffer }[]): Promise<PutResult[]> {
    this.checkWritable();
    for (const { index, data } of items) {
      this.checkIndex(index);
      const want = chunkLength(this.g, index);
      if (data.length !== want) {
        throw RepoInvalidArgumentError({ what: `chunk ${index} length`, value: data.length, hint: `expected ${want} bytes` });
      }
    }
    const out: PutResult[] = new Array<PutResult>(items.length);
    const sent: number[] = [];
    for (let k = 0; k < items.length; k++) {
      const index = items[k].index;
      if (!isAllZero(items[k].data)) {
        sent.push(k);
        continue;
      }
      const unchanged = this.baseDigest(index) === null && !this.pendingBad.has(index);
      this.putZero(index);
      out[k] = { zero: true, unchanged, stored: false, digest: null };
    }
    if (!sent.length) return out;
    const forced = (d: string): boolean => this.ctx.bad.chunks.has(d) || this.ctx.damaged.chunks.has(d);
    const bases = sent.map((k) => (this.pendingBad.has(items[k].index) ? null : this.baseDigest(items[k].index)));
    const plains = sent.map((k) => items[k].data);
    // One call: hash, compare with the base (its copy checked against the true bytes held here),
    // dedup and store (format 2: one worker trip for all of them, blob-store.ts).
    const store = this.ctx.chunks;
    const opts = { forced, session: this.ctx.session };
    const rs = store.putChunks ? await store.putChunks(plains, { ...opts, bases }) : await Promise.all(plains.map((plain, j) => store.putChunk(plain, { ...opts, base: bases[j] })));
    sent.forEach((k, j) => {
      out[k] = this.settlePut(items[k].index, rs[j], forced);
    });
    return out;
  }

  /** The disk's side of a put chunk's answer: its entry, repairs, what was stored. */
  private settlePut(index: number, r: PutChunkResult, forced: (d: string) => boolean): PutResult {
    const digest = r.digest;
    if (r.outcome === 'unchanged') {
      if (r.repaired) this.noteRepaired('chunk', digest, index);
      this.setEntry(index, digest);
      return { zero: false, unchanged: true, stored: false, digest };
    }
    if (forced(digest) || r.repaired) this.noteRepaired('chunk', digest, index);
    this.setEntry(index, digest);
    this.pendingBad.delete(index);
    const stored = r.outcome === 'stored';
    if (stored) {
      this.bytesStored += r.storedBytes;
      this.chunksStored++;
    }
    return { zero: false, unchanged: false, stored, digest };
  }

  putZero(index: number): void {
    this.checkWritable();
    this.checkIndex(index);
    this.setEntry(index, ZERO_DIGEST);
    this.pendingBad.delete(index);
  }

  async finish(meta: DiskMeta): Promise<DiskEntry> {
    this.checkWritable();
    if (this.pendingBad.size) {
      const first = [...this.pendingBad].sort((a, b) => a - b).slice(0, 8);
      throw RepoWriterStateError({
        backupId: this.ctx.backupId,
        reason: `disk ${this.name}: ${this.pendingBad.size} bad base chunks were not re-sent (first indexes ${first.join(', ')})`,
      });
    }
    this.finished = true;
    const pageDigests: string[] = [];
    const toStore = new Map<string, Buffer>();
    for (let p = 0; p < this.g.pageCount; p++) {
      if (this.basePages && !this.pageDirty[p]) {
        pageDigests.push(this.basePages[p]);
        continue;
      }
      const content = pageContent(this.g, this.table, p);
      if (isAllZero(content)) {
        pageDigests.push(ZERO_DIGEST);
        continue;
      }
      const digest = this.ctx.workers.digestHexSync(content);
      toStore.set(digest, content);
      pageDigests.push(digest);
    }
    // A full writes hundreds of pages; one at a time they would wait for each file creation in turn.
    let pageBytesStored = 0;
    await inParallel([...toStore], PAGE_WRITE_CONCURRENCY, async ([digest, content]) => {
      const force = this.ctx.bad.pages.has(digest) || this.ctx.damaged.pages.has(digest);
      const { storedBytes, repaired } = await this.ctx.pages.insert(digest, Buffer.from(content), { force, session: this.ctx.session });
      if (force || repaired) this.noteRepaired('page', digest, null);
      pageBytesStored += storedBytes;
    });
    this.entry = {
      name: this.name,
      format: this.format,
      size: this.size,
      chunkSize: this.chunkSize,
      pageEntries: this.g.pageEntries,
      pages: encodePageList(pageDigests),
      mode: meta.mode,
      reason: meta.reason,
      bitmap: meta.bitmap ?? null,
      consistency: meta.consistency ?? null,
      base: this.base ? { backupId: this.base.backupId, disk: this.base.disk } : null,
      bytesRead: meta.bytesRead,
      bytesStored: this.bytesStored,
      chunksStored: this.chunksStored,
      pageBytesStored,
      durationMs: meta.durationMs,
    };
    return this.entry;
  }

  /** The first blob this disk's index references that is in `damaged`, if any (checked at commit). */
  damagedReference(damaged: { chunks: Set<string>; pages: Set<string> }): { kind: BlobKind; digest: string } | null {
    if (!this.entry) return null;
    if (damaged.pages.size) {
      for (const d of diskPages(this.entry)) if (damaged.pages.has(d)) return { kind: 'page', digest: d };
    }
    if (damaged.chunks.size) {
      for (let i = 0; i < this.g.chunkCount; i++) {
        const d = this.entryHex(this.table, i);
        if (damaged.chunks.has(d)) return { kind: 'chunk', digest: d };
      }
    }
    return null;
  }

  get isFinished(): boolean {
    return this.entry !== null;
  }

  finishedEntry(): DiskEntry {
    if (!this.entry) throw RepoWriterStateError({ backupId: this.ctx.backupId, reason: `disk ${this.name} is not finished` });
    return this.entry;
  }

  /** A known-bad or damaged stored copy was rewritten with the true bytes in this run. */
  private noteRepaired(kind: BlobKind, digest: string, index: number | null): void {
    const set = kind === 'chunk' ? this.ctx.damaged.chunks : this.ctx.damaged.pages;
    if (!set.delete(digest) && !(kind === 'chunk' ? this.ctx.bad.chunks : this.ctx.bad.pages).has(digest)) {
      this.ctx.logger?.warn(`damaged stored ${kind} rewritten with its true bytes`, { disk: this.name, digest, ...(index === null ? {} : { index }) });
    }
    this.ctx.repaired.push({ kind, digest });
  }

  private setEntry(index: number, digestHex: string): void {
    const off = index * DIGEST_BYTES;
    const next = Buffer.from(digestHex, 'hex');
    if (!this.table.subarray(off, off + DIGEST_BYTES).equals(next)) {
      next.copy(this.table, off);
      this.pageDirty[Math.floor(index / this.g.pageEntries)] = 1;
    }
  }

  private entryHex(table: Buffer, index: number): string {
    return table.toString('hex', index * DIGEST_BYTES, (index + 1) * DIGEST_BYTES);
  }

  private checkIndex(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.g.chunkCount) {
      throw RepoInvalidArgumentError({ what: 'chunk index', value: index, hint: `0..${this.g.chunkCount - 1}` });
    }
  }

  private checkWritable(): void {
    if (this.finished) throw RepoWriterStateError({ backupId: this.ctx.backupId, reason: `disk ${this.name} is already finished` });
  }
}
