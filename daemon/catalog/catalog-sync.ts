/**
 * Brings the catalog up to the repository before it answers a listing (`list`, `status`).
 *
 * The repository is the truth and more than one writer feeds it: two nodes' daemons may share one
 * repository (README "Living with Proxmox VE operations"), a daemon killed between its manifest
 * commit and the catalog insert leaves its catalog behind, and a read-only CLI command on a node
 * without a catalog file works on an empty in-memory one. So before each listing the backup
 * folders are listed (one directory read per VM, no file opened; only the VM folders whose
 * modification time changed since the last full listing of them, see `syncCatalog`, or all with
 * `refresh`) and compared with the ids the catalog knows:
 * - a folder the catalog does not know is read (manifest.json, verify.json) and recorded; a folder
 *   without a valid manifest (a backup being written, a partial one) is left out, as
 *   `Repository.listBackups` leaves it out, and looked at again next time;
 * - a backup the catalog knows whose folder is gone (removed or pruned by another node) is forgotten.
 *   A removal interrupted between moving the manifest aside and deleting the folder keeps the
 *   backup listed until the folder goes (the partial cleanup at the next GC or daemon start).
 * Known backups are taken from the catalog as they are: manifests never change once committed, and
 * this node's verify results reach the catalog as they are made. A verify run on another node
 * updates verify.json there and reaches this catalog on `pve-cbt catalog rebuild` (or when the
 * catalog is set aside as damaged); until then `list` shows this node's last verify state.
 * Nothing is forgotten when the repository marker is missing (an unmounted file system lists as
 * empty; that must not empty the catalog).
 */
import fs from 'node:fs';
import type Database from 'better-sqlite3';
import type { BackupInfo, Repository } from '../repository/repository';
import { REPOSITORY_MARKER } from '../repository/repository-marker';
import { isBackupId } from '../repository/backup-id';
import type { Manifest } from '../repository/manifest';
import type { VerifyState } from '../repository/verify';
import { RepoBackupNotFoundError, RepoManifestAuthFailedError, RepoManifestCorruptError } from '../repository/repository-errors';
import type { BackupCatalog } from './backup-catalog';
import { catalogBackupIds, listCatalogBackups } from './catalog-backup-list';

export interface CatalogStores {
  readonly db: Database.Database;
  readonly catalog: BackupCatalog;
  readonly repo: Pick<Repository, 'storage' | 'readManifest' | 'readVerifyState'>;
}

/** What the catalog must learn: folders it does not know, and known backups whose folder is gone. */
export function diffCatalog(known: readonly string[], folders: readonly string[]): { unknown: string[]; gone: string[] } {
  const inCatalog = new Set(known);
  const inRepo = new Set(folders);
  return { unknown: folders.filter((id) => !inCatalog.has(id)), gone: known.filter((id) => !inRepo.has(id)) };
}

/** A folder's mark is kept only when its time is this far in the past: a change within the same
 * clock tick as the listing would leave the time as it was (the "racy" case git's index knows). */
export const MARK_SETTLED_MS = 2000;

/** Whether a folder listed whole with modification time `mtimeMs` at `nowMs` may be skipped while its time stays. */
export function markSettled(mtimeMs: number, nowMs: number): boolean {
  return nowMs - mtimeMs >= MARK_SETTLED_MS;
}

/** VM folders (`vm/VMID`) to list: every one that is new, changed or gone, all of them with `refresh`. */
export function foldersToList(onDisk: ReadonlyMap<string, number | null>, inCatalog: readonly string[], marks: ReadonlyMap<string, number>, refresh: boolean): string[] {
  const out = new Set<string>();
  for (const [vm, mtime] of onDisk) if (refresh || mtime === null || marks.get(vm) !== mtime) out.add(vm);
  for (const vm of inCatalog) if (!onDisk.has(vm)) out.add(vm);
  return [...out];
}

export interface SyncOptions {
  /** List every VM folder, whatever the marks say (`list --refresh`). */
  refresh?: boolean;
  /** The clock the marks are judged by (tests). */
  nowMs?: number;
}

const isVmFolder = (name: string): boolean => /^[1-9][0-9]*$/.test(name);

/** Backup folder ids of one VM folder, committed or not: one directory listing. */
async function backupFolders(repo: CatalogStores['repo'], vm: string): Promise<string[]> {
  const out: string[] = [];
  for (const t of await repo.storage.list(`vm/${vm}`)) {
    const id = `vm/${vm}/${t}`;
    if (isBackupId(id)) out.push(id);
  }
  return out;
}

async function readCommitted(repo: CatalogStores['repo'], id: string): Promise<{ m: Manifest; v: VerifyState | null } | null> {
  try {
    const m = await repo.readManifest(id);
    return { m, v: await repo.readVerifyState(id) };
  } catch (err) {
    if (RepoBackupNotFoundError.is(err) || RepoManifestCorruptError.is(err) || RepoManifestAuthFailedError.is(err)) return null;
    throw err;
  }
}

/**
 * Modification time of each VM folder (null: gone, not a folder, or the backend keeps none). On a
 * local directory with plain stat(2) calls: 1,000 of them take ~3 ms, through the thread pool ~20.
 */
async function folderTimes(repo: CatalogStores['repo'], vms: readonly string[]): Promise<Map<string, number | null>> {
  // One path join for the folder of all VMs, not one per VM (VM names are digits, see isVmFolder).
  const vmRoot = repo.storage.localPath?.('vm');
  const times = vmRoot !== undefined
    ? vms.map((vm) => {
        const st = fs.statSync(`${vmRoot}/${vm}`, { throwIfNoEntry: false });
        return st ? { isDirectory: st.isDirectory(), mtimeMs: st.mtimeMs } : null;
      })
    : await Promise.all(vms.map((vm) => repo.storage.stat(`vm/${vm}`)));
  return new Map(vms.map((vm, i) => [vm, times[i]?.isDirectory && Number.isFinite(times[i]?.mtimeMs) ? (times[i] as { mtimeMs: number }).mtimeMs : null]));
}

/**
 * Records what the repository has and the catalog lacks, forgets what the repository lost. Only
 * VM folders whose modification time changed since the catalog last listed them whole are listed
 * (a backup folder appearing or going changes it; a manifest written into a folder seen without
 * one does not, so such a folder keeps its VM from being marked): with 1,000 VMs that is 1,000
 * stats instead of 1,000 listings and a diff of 365,000 ids.
 */
export async function syncCatalog(s: CatalogStores, vmid?: number, opts: SyncOptions = {}): Promise<{ added: number; forgotten: number; listed: number }> {
  const nowMs = opts.nowMs ?? Date.now();
  const onDiskNames = vmid === undefined ? (await s.repo.storage.list('vm')).filter(isVmFolder) : [String(vmid)];
  // Catalog first: a backup committed or removed between the two reads then shows as a folder to
  // read (idempotent) or a folder whose manifest is gone (skipped), never as a stale row.
  const inCatalog = (vmid === undefined ? (s.db.prepare('SELECT vmid FROM vm_groups').pluck(true).all() as number[]) : [vmid]).map(String);
  const marks = new Map(
    (vmid === undefined ? s.db.prepare('SELECT folder, mtime_ms FROM folder_marks').raw(true).all() : s.db.prepare('SELECT folder, mtime_ms FROM folder_marks WHERE folder = ?').raw(true).all(String(vmid))) as [string, number][],
  );
  // Times before listings: a change between the two is seen by the next sync.
  const times = await folderTimes(s.repo, onDiskNames);
  const toList = foldersToList(times, inCatalog, marks, opts.refresh === true);
  const found: { m: Manifest; v: VerifyState | null }[] = [];
  const gone: string[] = [];
  const settled = new Map<string, number | null>();
  for (const vm of toList) {
    const known = catalogBackupIds(s.db, Number(vm));
    const folders = times.has(vm) ? await backupFolders(s.repo, vm) : [];
    const diff = diffCatalog(known, folders);
    let pending = false;
    for (const id of diff.unknown) {
      const c = await readCommitted(s.repo, id);
      if (c) found.push(c);
      else pending = true;
    }
    gone.push(...diff.gone);
    const t = times.get(vm) ?? null;
    settled.set(vm, !pending && t !== null && markSettled(t, nowMs) ? t : null);
  }
  const forget = gone.length > 0 && (await s.repo.storage.stat(REPOSITORY_MARKER)) !== null ? gone : [];
  const marksChange = [...settled].some(([vm, t]) => (marks.get(vm) ?? null) !== t);
  if (found.length === 0 && forget.length === 0 && !marksChange) return { added: 0, forgotten: 0, listed: toList.length };
  const setMark = s.db.prepare('INSERT INTO folder_marks (folder, mtime_ms) VALUES (?, ?) ON CONFLICT (folder) DO UPDATE SET mtime_ms = excluded.mtime_ms');
  const dropMark = s.db.prepare('DELETE FROM folder_marks WHERE folder = ?');
  s.db.transaction(() => {
    for (const { m, v } of found) {
      s.catalog.recordBackup(m);
      if (v) s.catalog.recordVerify(m.id, v);
    }
    for (const id of forget) s.catalog.forgetBackup(id);
    // A folder whose lost backups could not be forgotten (no marker) is listed again next time.
    for (const [vm, t] of settled) {
      if (t === null || (gone.length > 0 && forget.length === 0)) dropMark.run(vm);
      else setMark.run(vm, t);
    }
  })();
  return { added: found.length, forgotten: forget.length, listed: toList.length };
}

/** `Repository.listBackups`, answered by the catalog after `syncCatalog`. */
export async function listBackupsFromCatalog(s: CatalogStores, vmid?: number, opts: SyncOptions = {}): Promise<BackupInfo[]> {
  await syncCatalog(s, vmid, opts);
  return listCatalogBackups(s.db, vmid);
}
