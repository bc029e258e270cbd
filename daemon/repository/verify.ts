/**
 * Verify: re-read everything a backup references and check it.
 *
 * Phases per backup: manifest (parse + checksum), index pages (CRC + SHA-256 + length), chunks
 * (CRC + SHA-256). A blob checked once in a run is not read again for another backup. Each problem
 * names the backup, disk and the disk offset it affects (for a bad page: where the page's range
 * starts). Results are written beside the manifest in `verify.json` (mutable, outside the manifest
 * checksum); bad blobs are added to the `.bad/` registry so the next backup of an affected disk
 * re-sends those blocks (see bad-blobs.ts, disk-writer.ts).
 */
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import type { ChunkStore, BlobState } from './chunk-store';
import type { BadBlobRegistry } from './bad-blobs';
import { inParallel } from './in-parallel';
import { chunkLength, geometry, isZeroDigest } from './disk-index';
import { DIGEST_BYTES } from './digest';
import { diskPages, type Manifest } from './manifest';
import { loadDigestTable } from './digest-table';
import { RepoManifestAuthFailedError, RepoManifestCorruptError } from './repository-errors';

export interface VerifyProblem {
  backupId: string;
  disk: string | null;
  offset: number | null;
  kind: 'manifest' | 'page' | 'chunk';
  digest: string | null;
  problem: 'missing' | 'corrupt';
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
}

export type ProgressFn = (done: number, total: number, phase: string) => void;

export interface VerifyDeps {
  storage: RepositoryStorage;
  chunks: ChunkStore;
  pages: ChunkStore;
  badRegistry: BadBlobRegistry;
  readManifest(backupId: string): Promise<Manifest>;
  onVerified(backupId: string, state: VerifyState): void;
  logger?: Logger;
}

const CHECK_WINDOW = 8;

export const VERIFY_FILE = 'verify.json';

export async function verifyBackups(deps: VerifyDeps, ids: string[], onProgress?: ProgressFn): Promise<VerifyReport> {
  const started = Date.now();
  const chunkCache = new Map<string, BlobState>();
  const report: VerifyReport = { ok: true, backups: [], chunksChecked: 0, pagesChecked: 0, durationMs: 0 };
  const manifests = new Map<string, Manifest | null>();
  let total = 0;
  for (const id of ids) {
    try {
      const m = await deps.readManifest(id);
      manifests.set(id, m);
      total += m.disks.reduce((s, d) => s + d.size, 0);
    } catch (err) {
      // An unauthenticated manifest (encrypted repository) is reported like a corrupt one.
      if (!RepoManifestCorruptError.is(err) && !RepoManifestAuthFailedError.is(err)) throw err;
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
          problems.push({ backupId: id, disk: d.name, offset: b.page * g.pageEntries * g.chunkSize, kind: 'page', digest: b.digest, problem: b.problem });
          await deps.badRegistry.add('page', b.digest);
        }
        const work: number[] = [];
        for (let i = 0; i < g.chunkCount; i++) {
          if (isZeroDigest(table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES))) done += chunkLength(g, i);
          else work.push(i);
        }
        await inParallel(work, CHECK_WINDOW, async (i) => {
          const digest = table.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
          let state = chunkCache.get(digest);
          if (!state) {
            state = await deps.chunks.check(digest);
            chunkCache.set(digest, state);
            report.chunksChecked++;
            if (state !== 'ok') await deps.badRegistry.add('chunk', digest);
          }
          if (state !== 'ok') problems.push({ backupId: id, disk: d.name, offset: i * g.chunkSize, kind: 'chunk', digest, problem: state });
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
