/**
 * Packs on a storage without local files (object storage: s3-storage.ts), as the pack store uses
 * them (pack-store.ts: `packsDir`, `sealPack`, `read`, `restoreBatch`):
 * - a session's open packs are appended by the blob workers in a local staging folder of this
 *   process (`stagingDir`), exactly as in a local repository's `.packs/`;
 * - a sealed pack is uploaded as one object at its key (`upload`) BEFORE its .idx is written, so
 *   a pack index never names a pack object that does not exist; the staged file is then removed;
 * - reads are ranged GETs (`readRange`) of the blobs' (offset, stored length); a restore fetches
 *   runs of adjacent blobs with one GET (`planRuns`, pure).
 * The workers never see remote packs: on such a storage a stored copy is not compared with the
 * true bytes before it is reused (dedup, an incremental's base chunk) — that would download it;
 * verify reads and checks every blob instead.
 */
import type { RepositoryStorage } from './storage';

export interface RemotePacks {
  stagingDir(): string;
  upload(key: string, file: string): Promise<void>;
  readRange(key: string, offset: number, length: number): Promise<Buffer | null>;
}

export function remotePacksOf(storage: RepositoryStorage): RemotePacks | null {
  const s = storage as Partial<RemotePacks> & RepositoryStorage;
  if (s.localPath || typeof s.stagingDir !== 'function' || typeof s.upload !== 'function' || typeof s.readRange !== 'function') return null;
  return s as RemotePacks;
}

/** Largest run fetched with one GET, and the widest gap of unneeded bytes a run spans. */
export const RUN_MAX_BYTES = 8 * 1024 * 1024;
export const RUN_MAX_GAP = 64 * 1024;

export interface RunItem {
  offset: number;
  length: number;
}

/** Groups items of one pack (any order) into runs to fetch: [start, end) and the items inside. */
export function planRuns<T extends RunItem>(items: readonly T[], maxBytes = RUN_MAX_BYTES, maxGap = RUN_MAX_GAP): { start: number; end: number; items: T[] }[] {
  const sorted = [...items].sort((a, b) => a.offset - b.offset);
  const runs: { start: number; end: number; items: T[] }[] = [];
  for (const it of sorted) {
    const last = runs[runs.length - 1];
    const end = it.offset + it.length;
    if (last && it.offset <= last.end + maxGap && Math.max(last.end, end) - last.start <= maxBytes) {
      last.end = Math.max(last.end, end);
      last.items.push(it);
    } else {
      runs.push({ start: it.offset, end, items: [it] });
    }
  }
  return runs;
}
