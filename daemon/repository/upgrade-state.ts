/**
 * The state of `pve-cbt repository upgrade` (format 1 → 2) under `.upgrade/`, so that a crash at
 * any moment resumes without redoing what is durable:
 *
 *   .upgrade/upgrade.json            {"format":"pve-cbt-upgrade-1","from":"pve-cbt-repository-1",
 *                                     "to":"pve-cbt-repository-2","started":ISO,"tool":"pve-cbt x.y"}
 *                                    written first; its presence makes backups wait
 *                                    (CBT_REPO_UPGRADE_IN_PROGRESS) until the upgrade is done
 *   .upgrade/sealed/<seq 8 digits>.json  one per sealed pack, in order (upgrade-plan.ts, SealedRecord):
 *                                    {"seq":0,"packId":"<32 hex>","first":"chunk:<digest>",
 *                                     "last":"chunk:<digest>","blobs":n,"bytes":n,"skipped":[...]}
 *
 * Every file is written with `writeAtomic` (temporary file, rename, fsync of file and folder), and
 * a record only after its pack's .idx is durable: a record never names a pack that is not sealed.
 * Records are small and one per pack (a few thousand per TiB), so no file is rewritten as the copy
 * goes on. The folder is removed last, after the marker says format 2 and `.chunks/` and `.pages/`
 * are gone.
 */
import type { RepositoryStorage } from './storage';
import { parseCursor, type SealedRecord } from './upgrade-plan';
import { RepoUpgradeInProgressError, RepoUpgradeStateCorruptError } from './upgrade-errors';

export const UPGRADE_DIR = '.upgrade';
export const UPGRADE_START_FILE = `${UPGRADE_DIR}/upgrade.json`;
export const UPGRADE_SEALED_DIR = `${UPGRADE_DIR}/sealed`;
export const UPGRADE_STATE_FORMAT = 'pve-cbt-upgrade-1';

export interface UpgradeStart {
  format: typeof UPGRADE_STATE_FORMAT;
  from: string;
  to: string;
  started: string;
  tool: string;
}

export const UPGRADE_STATE_HINT = 'the upgrade stopped without changing anything; look at the file (or remove .upgrade/ while the marker still says format 1 to start over)';

export function sealedRecordKey(seq: number): string {
  return `${UPGRADE_SEALED_DIR}/${String(seq).padStart(8, '0')}.json`;
}

export function encodeSealedRecord(r: SealedRecord): Buffer {
  return Buffer.from(`${JSON.stringify(r)}\n`);
}

/** A record's content, checked field by field; throws CBT_REPO_UPGRADE_STATE_CORRUPT. */
export function parseSealedRecord(file: string, data: Buffer): SealedRecord {
  let v: Partial<SealedRecord>;
  try {
    v = JSON.parse(data.toString('utf8')) as Partial<SealedRecord>;
  } catch (err) {
    throw RepoUpgradeStateCorruptError({ file, reason: `not JSON (${(err as Error).message})`, hint: UPGRADE_STATE_HINT });
  }
  const bad = (reason: string) => RepoUpgradeStateCorruptError({ file, reason, hint: UPGRADE_STATE_HINT });
  if (typeof v !== 'object' || v === null) throw bad('not an object');
  if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 0) throw bad('seq is not a count');
  if (typeof v.packId !== 'string' || !/^[0-9a-f]{32}$/.test(v.packId)) throw bad('packId is not 32 hex digits');
  if (typeof v.first !== 'string' || !parseCursor(v.first)) throw bad('first is not a blob cursor');
  if (typeof v.last !== 'string' || !parseCursor(v.last)) throw bad('last is not a blob cursor');
  if (!Number.isSafeInteger(v.blobs) || (v.blobs as number) < 0) throw bad('blobs is not a count');
  if (!Number.isSafeInteger(v.bytes) || (v.bytes as number) < 0) throw bad('bytes is not a count');
  if (!Array.isArray(v.skipped) || !v.skipped.every((s) => s && typeof s.cursor === 'string' && parseCursor(s.cursor) && typeof s.reason === 'string')) {
    throw bad('skipped is not a list of {cursor, reason}');
  }
  if (sealedRecordKey(v.seq as number).split('/').pop() !== file.split('/').pop()) throw bad(`seq ${v.seq} does not match the file name`);
  return { seq: v.seq!, packId: v.packId, first: v.first, last: v.last, blobs: v.blobs!, bytes: v.bytes!, skipped: v.skipped };
}

export function parseUpgradeStart(file: string, data: Buffer): UpgradeStart {
  try {
    const v = JSON.parse(data.toString('utf8')) as UpgradeStart;
    if (v.format === UPGRADE_STATE_FORMAT && typeof v.from === 'string' && typeof v.to === 'string' && typeof v.started === 'string') return v;
  } catch {
    // reported below
  }
  throw RepoUpgradeStateCorruptError({ file, reason: `not a ${UPGRADE_STATE_FORMAT} start record`, hint: UPGRADE_STATE_HINT });
}

/** The upgrade state as stored: start record (null: none yet) and the sealed records in order. */
export async function readUpgradeState(storage: RepositoryStorage): Promise<{ start: UpgradeStart | null; records: SealedRecord[] }> {
  const startData = await storage.read(UPGRADE_START_FILE);
  const start = startData ? parseUpgradeStart(UPGRADE_START_FILE, startData) : null;
  const records: SealedRecord[] = [];
  for (const name of await storage.list(UPGRADE_SEALED_DIR)) {
    if (!/^\d{8}\.json$/.test(name)) continue; // a writeAtomic temporary left by a crash
    const key = `${UPGRADE_SEALED_DIR}/${name}`;
    const data = await storage.read(key);
    if (data) records.push(parseSealedRecord(key, data));
  }
  return { start, records: records.sort((a, b) => a.seq - b.seq) };
}

export async function writeUpgradeStart(storage: RepositoryStorage, start: UpgradeStart): Promise<void> {
  await storage.writeAtomic(UPGRADE_START_FILE, Buffer.from(`${JSON.stringify(start)}\n`));
}

export async function writeSealedRecord(storage: RepositoryStorage, r: SealedRecord): Promise<void> {
  await storage.writeAtomic(sealedRecordKey(r.seq), encodeSealedRecord(r));
}

export async function removeSealedRecord(storage: RepositoryStorage, seq: number): Promise<void> {
  await storage.remove(sealedRecordKey(seq));
}

/**
 * Called by a backup writer after it took its lock: refuses while an upgrade is under way or was
 * interrupted (the upgrade takes its lock and then looks for writers: one of the two sees the other).
 */
export async function refuseDuringUpgrade(storage: RepositoryStorage, dir: string): Promise<void> {
  if (await storage.stat(UPGRADE_START_FILE)) {
    throw RepoUpgradeInProgressError({ dir, hint: 'wait for `pve-cbt repository upgrade` to finish, or run it again if it was interrupted' });
  }
}
