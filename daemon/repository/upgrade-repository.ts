/**
 * `pve-cbt repository upgrade`: converts a format-1 repository (one file per blob under `.chunks/`
 * and `.pages/`) into format 2 (packs, pack-format.ts) in place, resumable after a crash.
 *
 * Steps (the state is in `.upgrade/`, upgrade-state.ts; the order in upgrade-plan.ts):
 * 1. Take `.locks/gc.lock` (no GC, no second upgrade meanwhile), write `.upgrade/upgrade.json`,
 *    then look for live backup writers: any → CBT_REPO_UPGRADE_BUSY (and, on a first run, the
 *    start record is removed again). A backup that starts later sees `.upgrade/` after taking its
 *    own lock and refuses (CBT_REPO_UPGRADE_IN_PROGRESS): lock first, look second on both sides, so
 *    one of the two always sees the other.
 * 2. Resume point: the sealed records in order, up to the first whose pack is gone; records after
 *    it are dropped, and every .pack without .idx (an unsealed pack of a crashed run: nobody else
 *    writes packs while the marker says format 1) is removed.
 * 3. Copy: every format-1 blob after the resume point, in cursor order, is read, checked (CRC,
 *    lz4, length and SHA-256 of the content, as `verify` would) and appended raw, not re-encoded,
 *    to a pack (raw-pack-writer.ts). A damaged blob (empty or truncated by a crash before its sync,
 *    flipped bits) is not copied and listed as skipped: format 1 could not read it either, and the
 *    next backup that has the data stores it again. When a pack is full it is sealed (fsync, .idx),
 *    and only then its record is written: the range of cursors it covers.
 * 4. The last pack is sealed and recorded; then the marker is rewritten as format 2 (one atomic
 *    write: before it, readers use the format-1 files, which are all still there; after it, the
 *    packs, which hold everything).
 * 5. `.chunks/` and `.pages/` are removed, then `.upgrade/`. A run that finds the marker at format
 *    2 and `.upgrade/` present only finishes this step.
 * Manifests, pages' content, locks, `.bad/` and verify records are untouched: manifests reference
 * digests, which the pack lookup finds. Index chunk sizes stay as they are (256 KiB by default in
 * format 1); a later full of such a disk keeps or changes them as the engine decides.
 *
 * Progress (`onProgress(done, total, phase)`): 'copy' per shard folder (of 512), 'sealed' after each
 * record (done = records so far), 'copied' when every pack is sealed and recorded, 'switched' once
 * the marker says format 2, 'cleaned' at the end.
 */
import type { Logger } from 'winston';
import lz4 from 'lz4-napi';
import type { RepositoryStorage } from './storage';
import type { RepositoryLocks } from './repository-lock';
import { decodeBlobSync, magicOf, type BlobKind } from './file-formats';
import { sha256Hex } from './digest';
import { PACKS_DIR, isPackId } from './pack-format';
import { RawPackWriter, type SealedPack } from './raw-pack-writer';
import { cursorOf, recordsProblem, resumePoint, shardBlobsToCopy, shardsToVisit, type SealedRecord } from './upgrade-plan';
import {
  UPGRADE_DIR,
  UPGRADE_STATE_FORMAT,
  UPGRADE_STATE_HINT,
  readUpgradeState,
  removeSealedRecord,
  sealedRecordKey,
  writeSealedRecord,
  writeUpgradeStart,
} from './upgrade-state';
import { RepoUpgradeBusyError, RepoUpgradeStateCorruptError, RepoUpgradeUnknownFormatError } from './upgrade-errors';
import type { ProgressFn } from './verify';
// repository.ts imports this module too: its constants are read only inside the functions here.
import { FORMAT_2_CHUNK_SIZE, REPOSITORY_FORMAT_1, REPOSITORY_FORMAT_2, REPOSITORY_MARKER } from './repository';

const BLOB_DIRS: Record<BlobKind, string> = { chunk: '.chunks', page: '.pages' };

export interface UpgradeReport {
  /** The format found, and the one left. */
  from: string;
  to: string;
  /** Nothing to do: the repository was format 2 already (and no upgrade was left unfinished). */
  alreadyUpgraded: boolean;
  /** A previous run's sealed packs were kept and its copy continued. */
  resumed: boolean;
  packsSealed: number;
  blobsCopied: number;
  bytesCopied: number;
  blobsSkipped: { cursor: string; reason: string }[];
  durationMs: number;
}

export interface UpgradeDeps {
  dir: string;
  storage: RepositoryStorage;
  locks: RepositoryLocks;
  tool: string;
  logger?: Logger;
}

export interface UpgradeOptions {
  onProgress?: ProgressFn;
  /** Pack size for the copy (tests use small ones; default pack-format.ts PACK_SEAL_BYTES). */
  sealBytes?: number;
}

function markerFormat(data: Buffer | null): { format: string; json: Record<string, unknown> } | null {
  if (!data) return null;
  try {
    const json = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    return { format: String(json.format), json };
  } catch {
    return { format: '(unreadable)', json: {} };
  }
}

export async function upgradeRepository(deps: UpgradeDeps, opts: UpgradeOptions = {}): Promise<UpgradeReport> {
  const { storage, logger: log } = deps;
  const started = Date.now();
  const report: UpgradeReport = { from: REPOSITORY_FORMAT_1, to: REPOSITORY_FORMAT_2, alreadyUpgraded: false, resumed: false, packsSealed: 0, blobsCopied: 0, bytesCopied: 0, blobsSkipped: [], durationMs: 0 };
  const lock = await deps.locks.acquire('gc', { what: 'upgrade' });
  try {
    const marker = markerFormat(await storage.read(REPOSITORY_MARKER));
    if (!marker || (marker.format !== REPOSITORY_FORMAT_1 && marker.format !== REPOSITORY_FORMAT_2)) {
      throw RepoUpgradeUnknownFormatError({ dir: deps.dir, format: marker?.format ?? '(no marker)' });
    }
    report.from = marker.format;
    if (marker.format === REPOSITORY_FORMAT_2) {
      if (!(await storage.stat(UPGRADE_DIR))) {
        report.alreadyUpgraded = true;
        return report;
      }
      report.from = REPOSITORY_FORMAT_1;
      report.resumed = true;
      await cleanUp(storage, opts.onProgress, log);
      return report;
    }

    const state = await readUpgradeState(storage);
    const firstRun = state.start === null;
    if (firstRun) {
      await writeUpgradeStart(storage, { format: UPGRADE_STATE_FORMAT, from: REPOSITORY_FORMAT_1, to: REPOSITORY_FORMAT_2, started: new Date(started).toISOString(), tool: deps.tool });
    }
    const writers = await deps.locks.listLive('vm-');
    if (writers.length) {
      if (firstRun && state.records.length === 0) await storage.removeTree(UPGRADE_DIR);
      throw RepoUpgradeBusyError({
        writers: writers.map((w) => ({ lock: w.name, pid: w.info.pid, host: w.info.host })),
        hint: 'wait for the backups to finish (or stop pve-cbtd: systemctl stop pve-cbtd), then run the upgrade again',
      });
    }

    const problem = recordsProblem(state.records);
    if (problem) throw RepoUpgradeStateCorruptError({ file: sealedRecordKey(problem.seq), reason: problem.reason, hint: UPGRADE_STATE_HINT });
    const sealedIds = await sealedPackIds(storage);
    const resume = resumePoint(state.records, (id) => sealedIds.has(id));
    for (const r of [...resume.redo].reverse()) await removeSealedRecord(storage, r.seq);
    await removeUnsealedPacks(storage, sealedIds);
    report.resumed = !firstRun;
    log?.info('upgrade phase: copy', { resumeAfter: resume.after, packsDone: resume.done.length, dropped: resume.redo.length });

    await copyBlobs(storage, resume.after, resume.nextSeq, report, opts);
    opts.onProgress?.(1, 1, 'copied');

    const json = { ...marker.json, format: REPOSITORY_FORMAT_2, chunkSize: FORMAT_2_CHUNK_SIZE, encryption: marker.json.encryption ?? null, upgraded: new Date().toISOString() };
    await storage.writeAtomic(REPOSITORY_MARKER, Buffer.from(`${JSON.stringify(json)}\n`));
    opts.onProgress?.(1, 1, 'switched');
    log?.info('upgrade phase: marker switched to format 2');
    await cleanUp(storage, opts.onProgress, log);
    return report;
  } finally {
    report.durationMs = Date.now() - started;
    await deps.locks.release(lock);
  }
}

async function copyBlobs(storage: RepositoryStorage, after: string | null, firstSeq: number, report: UpgradeReport, opts: UpgradeOptions): Promise<void> {
  const writer = new RawPackWriter(storage, { sealBytes: opts.sealBytes });
  let seq = firstSeq;
  let range: { first: string; last: string; skipped: SealedRecord['skipped']; blobs: number } | null = null;
  const record = async (sealed: SealedPack): Promise<void> => {
    const r = range!;
    const rec: SealedRecord = { seq, packId: sealed.packId, first: r.first, last: r.last, blobs: r.blobs, bytes: sealed.bytes, skipped: r.skipped };
    await writeSealedRecord(storage, rec);
    opts.onProgress?.(seq + 1, 0, 'sealed');
    seq++;
    report.packsSealed++;
    range = null;
  };
  const shards = shardsToVisit(after);
  try {
    for (let i = 0; i < shards.length; i++) {
      const { kind, shard } = shards[i];
      opts.onProgress?.(i, shards.length, 'copy');
      const folder = `${BLOB_DIRS[kind]}/${shard}`;
      for (const digest of shardBlobsToCopy(kind, shard, await storage.list(folder), after)) {
        const cursor = cursorOf(kind, digest);
        const stored = await storage.read(`${folder}/${digest}`);
        if (!stored) continue; // gone meanwhile: nothing to copy
        const checked = checkBlob(kind, digest, stored);
        if (typeof checked !== 'number') {
          range ??= { first: cursor, last: cursor, skipped: [], blobs: 0 };
          range.skipped.push({ cursor, reason: checked.reason });
          range.last = cursor;
          report.blobsSkipped.push({ cursor, reason: checked.reason });
          continue;
        }
        // A pack sealed by this append covers the range up to the previous blob.
        if (writer.full(stored.length, digest)) {
          const sealed = await writer.seal();
          if (sealed) await record(sealed);
        }
        range ??= { first: cursor, last: cursor, skipped: [], blobs: 0 };
        await writer.append(digest, kind, checked, stored);
        range.last = cursor;
        range.blobs++;
        report.blobsCopied++;
        report.bytesCopied += stored.length;
      }
    }
    opts.onProgress?.(shards.length, shards.length, 'copy');
    if (range) {
      // Also when the range holds only skipped blobs: an empty pack records that they were seen.
      await writer.begin();
      const sealed = await writer.seal();
      if (sealed) await record(sealed);
    }
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** The plain length of an intact blob, or why it is not. */
function checkBlob(kind: BlobKind, digest: string, stored: Buffer): number | { reason: string } {
  const plain = decodeBlobSync(stored, magicOf(kind), true, lz4);
  if (typeof plain === 'string') return { reason: plain };
  if (sha256Hex(plain) !== digest) return { reason: 'content does not match its digest' };
  return plain.length;
}

async function sealedPackIds(storage: RepositoryStorage): Promise<Set<string>> {
  const out = new Set<string>();
  for (const shard of await storage.list(PACKS_DIR)) {
    for (const name of await storage.list(`${PACKS_DIR}/${shard}`)) {
      if (name.endsWith('.idx') && isPackId(name.slice(0, -4))) out.add(name.slice(0, -4));
    }
  }
  return out;
}

/** While the marker says format 1 only the upgrade writes packs: one without .idx is a crashed run's. */
async function removeUnsealedPacks(storage: RepositoryStorage, sealed: Set<string>): Promise<void> {
  for (const shard of await storage.list(PACKS_DIR)) {
    for (const name of await storage.list(`${PACKS_DIR}/${shard}`)) {
      const id = name.slice(0, 32);
      if ((name.endsWith('.pack') && !sealed.has(id)) || name.includes('.tmp-')) await storage.remove(`${PACKS_DIR}/${shard}/${name}`);
    }
  }
}

async function cleanUp(storage: RepositoryStorage, onProgress: ProgressFn | undefined, log: Logger | undefined): Promise<void> {
  for (const d of Object.values(BLOB_DIRS)) await storage.removeTree(d);
  await storage.removeTree(UPGRADE_DIR);
  onProgress?.(1, 1, 'cleaned');
  log?.info('upgrade done: format-1 blob folders removed');
}
