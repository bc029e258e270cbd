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
 */
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import type { ChunkStore } from './chunk-store';
import type { RepositoryLocks } from './repository-lock';
import { DIGEST_BYTES, isDigest } from './digest';
import { diskPages, type Manifest } from './manifest';
import { isZeroDigest } from './disk-index';
import { RepoGcBlockedError, RepoManifestAuthFailedError, RepoManifestCorruptError, RepoPageCorruptError, RepoPageMissingError } from './repository-errors';
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
}

export interface GcDeps {
  storage: RepositoryStorage;
  chunks: ChunkStore;
  pages: ChunkStore;
  locks: RepositoryLocks;
  /** Ids of backup folders that have a manifest file (valid or not). */
  listBackupDirs(): Promise<{ id: string; vmid: number; hasManifest: boolean }[]>;
  readManifest(backupId: string): Promise<Manifest>;
  logger?: Logger;
}

export async function garbageCollect(deps: GcDeps, opts: { graceMs?: number; onProgress?: ProgressFn } = {}): Promise<GcReport> {
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
          content = await deps.pages.read(p);
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

  for (const [store, marked] of [
    [deps.chunks, chunksMarked],
    [deps.pages, pagesMarked],
  ] as const) {
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
  const busyVms = new Set(writers.map((w) => w.info.vmid));
  for (const d of dirs) {
    if (d.hasManifest) {
      for (const name of await deps.storage.list(d.id)) {
        if (!name.includes('.tmp-')) continue;
        const st = await deps.storage.stat(`${d.id}/${name}`);
        if (st && st.mtimeMs < cutoff && (await deps.storage.remove(`${d.id}/${name}`))) report.tempFilesRemoved++;
      }
    } else if (!busyVms.has(d.vmid)) {
      await deps.storage.removeTree(d.id);
      report.partialsRemoved.push(d.id);
    }
  }
  report.durationMs = Date.now() - started;
  log?.info('gc done', { ...report, unreadablePages: unreadablePages.length, partialsRemoved: report.partialsRemoved.length });
  return report;
}
