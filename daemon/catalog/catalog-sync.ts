/**
 * Brings the catalog up to the repository before it answers a listing (`list`, `status`).
 *
 * The repository is the truth and more than one writer feeds it: two nodes' daemons may share one
 * repository (README "Living with Proxmox VE operations"), a daemon killed between its manifest
 * commit and the catalog insert leaves its catalog behind, and a read-only CLI command on a node
 * without a catalog file works on an empty in-memory one. So before each listing the backup
 * folders are listed (one directory read per VM, no file opened) and compared with the ids the
 * catalog knows:
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
import type Database from 'better-sqlite3';
import { REPOSITORY_MARKER, type BackupInfo, type Repository } from '../repository/repository';
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

/** Backup folder ids of one VM or of all, committed or not: directory listings only. */
async function backupFolders(repo: CatalogStores['repo'], vmid?: number): Promise<string[]> {
  const vms = vmid === undefined ? await repo.storage.list('vm') : [String(vmid)];
  const out: string[] = [];
  for (const vm of vms) {
    for (const t of await repo.storage.list(`vm/${vm}`)) {
      const id = `vm/${vm}/${t}`;
      if (isBackupId(id)) out.push(id);
    }
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

/** Records what the repository has and the catalog lacks, forgets what the repository lost. */
export async function syncCatalog(s: CatalogStores, vmid?: number): Promise<{ added: number; forgotten: number }> {
  // Catalog first: a backup committed or removed between the two reads then shows as a folder to
  // read (idempotent) or a folder whose manifest is gone (skipped), never as a stale row.
  const known = catalogBackupIds(s.db, vmid);
  const folders = await backupFolders(s.repo, vmid);
  const { unknown, gone } = diffCatalog(known, folders);
  const found: { m: Manifest; v: VerifyState | null }[] = [];
  for (const id of unknown) {
    const c = await readCommitted(s.repo, id);
    if (c) found.push(c);
  }
  const forget = gone.length > 0 && (await s.repo.storage.stat(REPOSITORY_MARKER)) !== null ? gone : [];
  if (found.length === 0 && forget.length === 0) return { added: 0, forgotten: 0 };
  s.db.transaction(() => {
    for (const { m, v } of found) {
      s.catalog.recordBackup(m);
      if (v) s.catalog.recordVerify(m.id, v);
    }
    for (const id of forget) s.catalog.forgetBackup(id);
  })();
  return { added: found.length, forgotten: forget.length };
}

/** `Repository.listBackups`, answered by the catalog after `syncCatalog`. */
export async function listBackupsFromCatalog(s: CatalogStores, vmid?: number): Promise<BackupInfo[]> {
  await syncCatalog(s, vmid);
  return listCatalogBackups(s.db, vmid);
}
