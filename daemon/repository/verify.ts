/**
 * Verify: re-read everything a backup references and check it.
 *
 * Phases per backup: manifest (parse + checksum), index pages (CRC + SHA-256 + length), chunks
 * (CRC + SHA-256). A blob checked once in a run is not read again for another backup. Each problem
 * names the backup, disk and the disk offset it affects (for a bad page: where the page's range
 * starts). Results are written beside the manifest in `verify.json` (mutable, outside the manifest
 * checksum); bad blobs are added to the `.bad/` registry so the next backup of an affected disk
 * re-sends those blocks (see bad-blobs.ts, disk-writer.ts).
 *
 * Format 2 (pack-format.ts): the chunks of a disk are checked in pack order (pack, offset), each
 * problem also names the pack and the blob's offset in it, and pack indexes that cannot be read
 * are reported in `packProblems` (the repository is then not ok).
 */
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import type { BlobState, BlobStore } from './blob-store';
import type { PackLookup } from './pack-lookup';
import type { BadBlobRegistry } from './bad-blobs';
import { inParallel } from './in-parallel';
import { chunkLength, geometry, isZeroDigest } from './disk-index';
import { DIGEST_BYTES } from './digest';
import { diskPages, type Manifest } from './manifest';
import { loadDigestTable } from './digest-table';
import { RepoManifestCorruptError } from './repository-errors';

export interface VerifyProblem {
  backupId: string;
  disk: string | null;
  offset: number | null;
  kind: 'manifest' | 'page' | 'chunk';
  digest: string | null;
  problem: 'missing' | 'corrupt';
  /** Format 2: the pack holding the blob and the blob's offset in it (absent when no pack index lists it). */
  pack?: string;
  packOffset?: number;
}

/** Format 2: a pack whose .idx cannot be read (its blobs are unknown to every reader). */
export interface PackProblem {
  pack: string;
  problem: 'index corrupt';
  reason: string;
}

/** Content of `verify.json`. */
export interface VerifyState {
  state: 'ok' | 'failed';
  time: string;
  problems: VerifyProblem[];
}

export interface VerifyReport {
  ok: boolean;
  backups: { id: string; ok: boolean; problems: VerifyProblem[] }[];
  chunksChecked: number;
  pagesChecked: number;
  durationMs: number;
  /** Format 2 only: unreadable pack indexes (they make the report not ok). */
  packProblems?: PackProblem[];
}

export type ProgressFn = (done: number, total: number, phase: string) => void;

export interface VerifyDeps {
  storage: RepositoryStorage;
  chunks: BlobStore;
  pages: BlobStore;
  /** Format 2: the lookup, refreshed first, whose unreadable .idx files are reported. */
  packs?: PackLookup;
  badRegistry: BadBlobRegistry;
  readManifest(backupId: string): Promise<Manifest>;
  onVerified(backupId: string, state: VerifyState): void;
  logger?: Logger;
}

const CHECK_WINDOW = 8;

export const VERIFY_FILE = 'verify.json';

/** Format 2: the pack fields of a problem (none in format 1, or when no pack index lists the blob). */
async function where(store: BlobStore, digest: string): Promise<{ pack?: string; packOffset?: number }> {
  const loc = await store.locate(digest);
  return loc ? { pack: loc.pack, packOffset: loc.packOffset } : {};
}

async function inPackOrder(chunks: BlobStore, table: Buffer, work: number[]): Promise<number[]> {
  const jobs = work.map((i) => ({ digest: table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES), offset: i, length: 0 }));
  return (await chunks.restoreOrder(jobs)).map((j) => j.offset);
}

export async function verifyBackups(deps: VerifyDeps, ids: string[], onProgress?: ProgressFn): Promise<VerifyReport> {
  const started = Date.now();
  const chunkCache = new Map<string, BlobState>();
  const report: VerifyReport = { ok: true, backups: [], chunksChecked: 0, pagesChecked: 0, durationMs: 0 };
  if (deps.packs) {
    await deps.packs.refresh();
    report.packProblems = [...deps.packs.corrupt].map(([pack, reason]) => ({ pack, problem: 'index corrupt' as const, reason }));
    for (const p of report.packProblems) deps.logger?.error('verify: pack index unreadable', p);
    if (report.packProblems.length) report.ok = false;
  }
  const manifests = new Map<string, Manifest | null>();
  let total = 0;
  for (const id of ids) {
    try {
      const m = await deps.readManifest(id);
      manifests.set(id, m);
      total += m.disks.reduce((s, d) => s + d.size, 0);
    } catch (err) {
      if (!RepoManifestCorruptError.is(err)) throw err;
      manifests.set(id, null);
    }
  }
  let done = 0;
  for (const id of ids) {
    const m = manifests.get(id) ?? null;
    const problems: VerifyProblem[] = [];
    deps.logger?.info('verify backup', { backupId: id });
    if (!m) {
      problems.push({ backupId: id, disk: null, offset: null, kind: 'manifest', digest: null, problem: 'corrupt' });
    } else {
      for (const d of m.disks) {
        const g = geometry(d.size, d.chunkSize, d.pageEntries);
        const { table, badPages } = await loadDigestTable(deps.pages, g, diskPages(d));
        report.pagesChecked += diskPages(d).filter((p) => !isZeroDigest(p)).length;
        for (const b of badPages) {
          problems.push({ backupId: id, disk: d.name, offset: b.page * g.pageEntries * g.chunkSize, kind: 'page', digest: b.digest, problem: b.problem, ...(await where(deps.pages, b.digest)) });
          await deps.badRegistry.add('page', b.digest);
        }
        let work: number[] = [];
        for (let i = 0; i < g.chunkCount; i++) {
          if (isZeroDigest(table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES))) done += chunkLength(g, i);
          else work.push(i);
        }
        // Format 2: in pack order, so each pack is read front to back once.
        if (deps.packs) work = await inPackOrder(deps.chunks, table, work);
        await inParallel(work, CHECK_WINDOW, async (i) => {
          const digest = table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
          let state = chunkCache.get(digest);
          if (!state) {
            state = await deps.chunks.check(digest);
            chunkCache.set(digest, state);
            report.chunksChecked++;
            if (state !== 'ok') await deps.badRegistry.add('chunk', digest);
          }
          if (state !== 'ok') problems.push({ backupId: id, disk: d.name, offset: i * g.chunkSize, kind: 'chunk', digest, problem: state, ...(await where(deps.chunks, digest)) });
          done += chunkLength(g, i);
          onProgress?.(done, total, 'chunks');
        });
      }
    }
    problems.sort((a, b) => (a.disk ?? '').localeCompare(b.disk ?? '') || (a.offset ?? 0) - (b.offset ?? 0));
    const state: VerifyState = { state: problems.length ? 'failed' : 'ok', time: new Date().toISOString(), problems };
    await deps.storage.writeAtomic(`${id}/${VERIFY_FILE}`, Buffer.from(`${JSON.stringify(state, null, 1)}\n`));
    deps.onVerified(id, state);
    if (problems.length) {
      report.ok = false;
      deps.logger?.error('verify failed', { backupId: id, problems: problems.length, first: problems[0] });
    }
    report.backups.push({ id, ok: !problems.length, problems });
  }
  report.durationMs = Date.now() - started;
  return report;
}
