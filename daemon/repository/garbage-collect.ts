/**
 * Garbage collection: remove chunks and pages no manifest references, and partial backups.
 *
 * Safe while backups are being written, without stopping them:
 * - Every writer holds `.locks/vm-<vmid>.lock` recording when it started (repository-lock.ts).
 * - A writer that stores a new blob creates it (mtime = now); one that finds the blob already there
 *   sets its mtime to now before relying on it (store-blob.ts). Unchanged chunks and pages a
 *   writer cloned from its base stay referenced by the base's manifest, which cannot be removed
 *   while the writer lives (removeBackup checks the writer locks' `bases`).
 * - GC computes cutoff = min(GC start, oldest live writer's start) - grace, *then* reads all
 *   manifests (mark: a set of referenced page and chunk digests, in memory), then sweeps: a blob
 *   is removed only if it is not marked and its mtime is older than the cutoff. Anything a live or
 *   later writer touched has an mtime >= its start >= cutoff, so it survives.
 * - The sweep renames a candidate aside, re-reads its mtime and only then unlinks it (or renames
 *   it back if a writer touched it meanwhile): a writer whose touch found the file gone simply
 *   writes the blob again.
 * - The grace period (default 10 min) covers clock adjustments and writers of other hosts sharing
 *   the directory.
 * GC refuses to sweep when a manifest is unreadable, since the blobs it references are unknown.
 * Partial backups (no manifest) are removed when their VM has no live writer; temporary files are
 * removed once older than the cutoff. Only one GC runs at a time (`.locks/gc.lock`).
 *
 * Format 2 (pack-format.ts) sweeps whole packs by the same rule made per pack: the mtime that
 * counts is the .idx's (set at seal, and by a writer relying on one of its blobs, once per
 * session); `planRepack` (repack-plan.ts) decides per pack, a marked digest being live in one
 * canonical pack only: a pack with no live entry and an old .idx is deleted; one whose live share
 * is below `repackThreshold` (default 50 %) is repacked (pack-repack.ts: its live blobs copied raw
 * into new packs, which are sealed before anything is deleted) and then deleted by the same rule
 * (.idx renamed aside, re-stat, then .idx and .pack removed, or put back when touched). Unsealed
 * packs (no .idx, a writer or repack killed) older than the cutoff are removed. A .idx that cannot
 * be read blocks the sweep (CBT_REPO_GC_BLOCKED_PACK_INDEX), as a corrupt manifest does.
 * Progress phases of format 2: `sweep .packs` (per shard), `repack copy` (per sparse pack),
 * `repack sealed`, `remove packs` (per pack deleted).
 */
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import type { ChunkStore } from './chunk-store';
import type { RepositoryBlobs } from './blob-store';
import { PackStore } from './pack-store';
import { PACKS_DIR, isPackId, packIndexKeyOf, packKeyOf } from './pack-format';
import { decodePackIndex, entryAt } from './pack-index-file';
import { planRepack, type PackEntryRef, type PackFacts } from './repack-plan';
import { copyLiveBlobs } from './pack-repack';
import type { RepositoryLocks } from './repository-lock';
import { DIGEST_BYTES, isDigest } from './digest';
import { diskPages, type Manifest } from './manifest';
import { isZeroDigest } from './disk-index';
import { RepoGcBlockedByPackIndexError, RepoGcBlockedError, RepoManifestAuthFailedError, RepoManifestCorruptError, RepoPageCorruptError, RepoPageMissingError } from './repository-errors';
import type { ProgressFn } from './verify';

export const DEFAULT_GC_GRACE_MS = 10 * 60 * 1000;

export interface GcReport {
  cutoff: string;
  manifests: number;
  pagesMarked: number;
  chunksMarked: number;
  chunksRemoved: number;
  chunkBytesRemoved: number;
  pagesRemoved: number;
  pageBytesRemoved: number;
  unreadablePages: string[];
  partialsRemoved: string[];
  tempFilesRemoved: number;
  durationMs: number;
  /** Format 2: whole packs deleted (their blobs count in chunks/pagesRemoved) and their bytes. */
  packsRemoved?: number;
  packBytesRemoved?: number;
  /** Format 2: packs whose live share is below the repack threshold (left for the repack step). */
  repackCandidates?: string[];
  /** Format 2: sparse packs whose live blobs were copied into new packs and which were then deleted. */
  packsRepacked?: number;
  /** Format 2: new packs the repack sealed, and the blobs it copied into them. */
  packsWritten?: number;
  blobsCopied?: number;
  /** Format 2: bytes of packs deleted minus bytes of the new packs. */
  bytesReclaimed?: number;
  /** Format 2: sparse packs kept because a live blob in them is damaged (verify reports it). */
  repackRefused?: { packId: string; offset: number; digest: string; reason: string }[];
}

export interface GcDeps {
  storage: RepositoryStorage;
  /** Format 1's ChunkStores (swept file by file) or format 2's PackStore (swept pack by pack). */
  blobs: RepositoryBlobs;
  locks: RepositoryLocks;
  /** Ids of backup folders that have a manifest file (valid or not). */
  listBackupDirs(): Promise<{ id: string; vmid: number; hasManifest: boolean }[]>;
  readManifest(backupId: string): Promise<Manifest>;
  logger?: Logger;
}

export interface GcOptions {
  graceMs?: number;
  onProgress?: ProgressFn;
  /** Format 2: live share (bytes) below which a pack is repacked (repack-plan.ts; 0: never). */
  repackThreshold?: number;
  /** Format 2: size at which the repack seals a new pack (default pack-format.ts PACK_SEAL_BYTES). */
  repackSealBytes?: number;
}

export async function garbageCollect(deps: GcDeps, opts: GcOptions = {}): Promise<GcReport> {
  const log = deps.logger;
  const started = Date.now();
  const grace = opts.graceMs ?? DEFAULT_GC_GRACE_MS;
  const writers = await deps.locks.listLive('vm-');
  const oldestWriter = Math.min(started, ...writers.map((w) => w.info.startedAtMs));
  const cutoff = oldestWriter - grace;
  log?.info('gc phase: mark', { cutoff: new Date(cutoff).toISOString(), liveWriters: writers.length });

  const dirs = await deps.listBackupDirs();
  const committed = dirs.filter((d) => d.hasManifest);
  const corrupt: string[] = [];
  const pagesMarked = new Set<string>();
  const chunksMarked = new Set<string>();
  const unreadablePages: string[] = [];
  let i = 0;
  for (const d of committed) {
    opts.onProgress?.(i++, committed.length, 'mark');
    let m: Manifest;
    try {
      m = await deps.readManifest(d.id);
    } catch (err) {
      // An unauthenticated manifest (encrypted repository) blocks the sweep like a corrupt one.
      if (!RepoManifestCorruptError.is(err) && !RepoManifestAuthFailedError.is(err)) throw err;
      corrupt.push(d.id);
      continue;
    }
    for (const disk of m.disks) {
      for (const p of diskPages(disk)) {
        if (isZeroDigest(p) || pagesMarked.has(p)) continue;
        pagesMarked.add(p);
        let content: Buffer;
        try {
          content = await deps.blobs.pages.read(p);
        } catch (err) {
          if (!RepoPageMissingError.is(err) && !RepoPageCorruptError.is(err)) throw err;
          unreadablePages.push(p);
          continue;
        }
        for (let o = 0; o < content.length; o += DIGEST_BYTES) {
          const c = content.toString('hex', o, o + DIGEST_BYTES);
          if (!isZeroDigest(c)) chunksMarked.add(c);
        }
      }
    }
  }
  if (corrupt.length) throw RepoGcBlockedError({ backupIds: corrupt });

  const report: GcReport = {
    cutoff: new Date(cutoff).toISOString(),
    manifests: committed.length,
    pagesMarked: pagesMarked.size,
    chunksMarked: chunksMarked.size,
    chunksRemoved: 0,
    chunkBytesRemoved: 0,
    pagesRemoved: 0,
    pageBytesRemoved: 0,
    unreadablePages,
    partialsRemoved: [],
    tempFilesRemoved: 0,
    durationMs: 0,
  };

  if (deps.blobs instanceof PackStore) await sweepPacks(deps.storage, deps.blobs, chunksMarked, pagesMarked, cutoff, report, opts, log);
  for (const [store, marked] of deps.blobs instanceof PackStore ? [] : ([
    [deps.blobs.chunks as ChunkStore, chunksMarked],
    [deps.blobs.pages as ChunkStore, pagesMarked],
  ] as const)) {
    log?.info(`gc phase: sweep ${store.dir}`);
    const shards = await deps.storage.list(store.dir);
    let s = 0;
    for (const shard of shards) {
      opts.onProgress?.(s++, shards.length, `sweep ${store.dir}`);
      for (const name of await deps.storage.list(`${store.dir}/${shard}`)) {
        const key = `${store.dir}/${shard}/${name}`;
        if (!isDigest(name)) {
          const digest = name.slice(0, 64);
          if (name.includes('.gc-') && isDigest(digest)) {
            // Left by a GC that died between rename and unlink: restore if still wanted.
            if (marked.has(digest)) await deps.storage.rename(key, `${store.dir}/${shard}/${digest}`);
            else await deps.storage.remove(key);
          } else if (name.includes('.tmp-')) {
            const st = await deps.storage.stat(key);
            if (st && st.mtimeMs < cutoff && (await deps.storage.remove(key))) report.tempFilesRemoved++;
          }
          continue;
        }
        if (marked.has(name)) continue;
        const st = await deps.storage.stat(key);
        if (!st || st.mtimeMs >= cutoff) continue;
        const aside = `${key}.gc-${process.pid}`;
        if (!(await deps.storage.rename(key, aside))) continue;
        const again = await deps.storage.stat(aside);
        if (again && again.mtimeMs >= cutoff) {
          await deps.storage.rename(aside, key);
          continue;
        }
        await deps.storage.remove(aside);
        if (store.kind === 'chunk') {
          report.chunksRemoved++;
          report.chunkBytesRemoved += again?.size ?? 0;
        } else {
          report.pagesRemoved++;
          report.pageBytesRemoved += again?.size ?? 0;
        }
      }
    }
  }

  log?.info('gc phase: partial backups');
  // Locks read again now, after the folders were listed: a writer that started after GC did (so
  // not in `writers`) took its lock before it made its folder; one that is done by now wrote its
  // manifest before releasing the lock, so the manifest is looked for again as well.
  const busyVms = new Set((await deps.locks.listLive('vm-')).map((w) => w.info.vmid));
  for (const d of dirs) {
    if (d.hasManifest) {
      for (const name of await deps.storage.list(d.id)) {
        if (!name.includes('.tmp-')) continue;
        const st = await deps.storage.stat(`${d.id}/${name}`);
        if (st && st.mtimeMs < cutoff && (await deps.storage.remove(`${d.id}/${name}`))) report.tempFilesRemoved++;
      }
    } else if (!busyVms.has(d.vmid) && !(await deps.storage.stat(`${d.id}/manifest.json`))) {
      await deps.storage.removeTree(d.id);
      report.partialsRemoved.push(d.id);
    }
  }
  report.durationMs = Date.now() - started;
  log?.info('gc done', { ...report, unreadablePages: unreadablePages.length, partialsRemoved: report.partialsRemoved.length });
  return report;
}

/** Format 2's sweep (see the module header). */
async function sweepPacks(
  storage: RepositoryStorage,
  packs: PackStore,
  chunksMarked: Set<string>,
  pagesMarked: Set<string>,
  cutoff: number,
  report: GcReport,
  opts: GcOptions,
  log: Logger | undefined,
): Promise<void> {
  const onProgress = opts.onProgress;
  log?.info(`gc phase: sweep ${PACKS_DIR}`);
  report.packsRemoved = 0;
  report.packBytesRemoved = 0;
  const facts: PackFacts[] = [];
  const counts = new Map<string, { chunks: number; pages: number; chunkBytes: number; pageBytes: number }>();
  const unreadable: { packId: string; reason: string }[] = [];
  const unsealed: string[] = [];
  const leftovers: string[] = [];
  const shards = await storage.list(PACKS_DIR);
  let s = 0;
  for (const shard of shards) {
    onProgress?.(s++, shards.length, `sweep ${PACKS_DIR}`);
    const names = await storage.list(`${PACKS_DIR}/${shard}`);
    const have = new Set(names);
    for (const name of names) {
      const key = `${PACKS_DIR}/${shard}/${name}`;
      const id = name.slice(0, 32);
      if (name.includes('.tmp-')) {
        const st = await storage.stat(key);
        if (st && st.mtimeMs < cutoff && (await storage.remove(key))) report.tempFilesRemoved++;
        continue;
      }
      if (!isPackId(id)) continue;
      if (name === `${id}.pack`) {
        if (!have.has(`${id}.idx`) && ![...have].some((n) => n.startsWith(`${id}.idx.gc-`))) unsealed.push(id);
        continue;
      }
      if (name.startsWith(`${id}.idx.gc-`)) {
        leftovers.push(key);
        continue;
      }
      if (name !== `${id}.idx`) continue;
      const st = await storage.stat(key);
      const data = await storage.read(key);
      if (!st || !data) continue;
      const decoded = decodePackIndex(data);
      if ('corrupt' in decoded) {
        unreadable.push({ packId: id, reason: decoded.corrupt });
        continue;
      }
      const c = { chunks: 0, pages: 0, chunkBytes: 0, pageBytes: 0 };
      const entries: PackEntryRef[] = [];
      for (let i = 0; i < decoded.count; i++) {
        const e = entryAt(decoded.entries, i);
        entries.push({ digest: e.digest.toString('hex'), offset: e.offset, storedLength: e.storedLength, kind: e.kind });
        if (e.kind === 'chunk') {
          c.chunks++;
          c.chunkBytes += e.storedLength;
        } else {
          c.pages++;
          c.pageBytes += e.storedLength;
        }
      }
      counts.set(id, c);
      const packSt = await storage.stat(packKeyOf(id));
      facts.push({ packId: id, entries, packBytes: packSt?.size ?? 0, idxMtimeMs: st.mtimeMs });
    }
  }
  if (unreadable.length) throw RepoGcBlockedByPackIndexError({ packs: unreadable });

  // Left by a GC that died between renaming an .idx aside and removing it: the pack was found
  // dead then, but a writer may have touched it since its rename; put back, a later GC decides.
  for (const key of leftovers) await storage.rename(key, key.replace(/\.gc-.*$/, ''));

  // Which packs go, which are repacked (repack-plan.ts: a digest is live in one canonical pack).
  // The repack reads and writes through the storage (pack-repack.ts): local pack files, or on
  // object storage (S3) ranged GETs and packs uploaded before their .idx.
  const plan = planRepack({ packs: facts, isMarked: (e) => (e.kind === 'chunk' ? chunksMarked : pagesMarked).has(e.digest), cutoffMs: cutoff, threshold: opts.repackThreshold });
  const dead = plan.decisions.filter((d) => d.action === 'delete').map((d) => d.packId);
  const sparse = plan.decisions.filter((d) => d.action === 'repack');
  report.repackCandidates = sparse.map((d) => d.packId);
  // The repack: live blobs copied raw into new packs, sealed (.idx durable) before any old pack goes.
  log?.info('gc phase: repack', { packs: sparse.length });
  const copy = await copyLiveBlobs(storage, sparse, { sealBytes: opts.repackSealBytes, onProgress, logger: log });
  report.packsWritten = copy.sealed.length;
  report.blobsCopied = copy.blobsCopied;
  report.repackRefused = copy.refused;
  report.packsRepacked = 0;
  if (copy.sealed.length) await packs.lookup.refresh();
  const liveOf = new Map(sparse.map((d) => [d.packId, d.live]));
  let removedBytes = 0;
  const doomed = [...dead, ...copy.copied];
  for (let i = 0; i < doomed.length; i++) {
    const id = doomed[i];
    onProgress?.(i, doomed.length, 'remove packs');
    const idx = packIndexKeyOf(id);
    const aside = `${idx}.gc-${process.pid}`;
    if (!(await storage.rename(idx, aside))) continue;
    const again = await storage.stat(aside);
    if (again && again.mtimeMs >= cutoff) {
      await storage.rename(aside, idx);
      continue;
    }
    packs.lookup.removePack(id);
    const packSt = await storage.stat(packKeyOf(id));
    await storage.remove(aside);
    await storage.remove(packKeyOf(id));
    removedBytes += packSt?.size ?? 0;
    const c = { ...(counts.get(id) ?? { chunks: 0, pages: 0, chunkBytes: 0, pageBytes: 0 }) };
    // A repacked pack's live blobs live on in the new packs: only its dead ones are removed.
    for (const e of liveOf.get(id) ?? []) {
      if (e.kind === 'chunk') {
        c.chunks--;
        c.chunkBytes -= e.storedLength;
      } else {
        c.pages--;
        c.pageBytes -= e.storedLength;
      }
    }
    if (liveOf.has(id)) report.packsRepacked++;
    else report.packsRemoved++;
    report.packBytesRemoved += packSt?.size ?? 0;
    report.chunksRemoved += c.chunks;
    report.chunkBytesRemoved += c.chunkBytes;
    report.pagesRemoved += c.pages;
    report.pageBytesRemoved += c.pageBytes;
  }
  onProgress?.(doomed.length, doomed.length, 'remove packs');
  report.bytesReclaimed = removedBytes - copy.sealed.reduce((n, p) => n + p.bytes, 0);
  // Unsealed packs: a writer killed mid-pack (a live writer's pack is younger than the cutoff).
  for (const id of unsealed) {
    const st = await storage.stat(packKeyOf(id));
    if (st && st.mtimeMs < cutoff && !(await storage.stat(packIndexKeyOf(id))) && (await storage.remove(packKeyOf(id)))) report.tempFilesRemoved++;
  }
}
