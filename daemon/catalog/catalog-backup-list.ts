/**
 * The catalog's answer to "which backups are there": the same `BackupInfo` list, in the same order
 * (time, then vmid), that `Repository.listBackups` builds by reading every manifest and verify.json,
 * in two queries instead of three file reads per backup. `list` and `status` use it through
 * `listBackupsFromCatalog` (catalog-sync.ts), which first brings the catalog up to the repository.
 *
 * Disks come in manifest order: rows of `backup_disks` are inserted in that order (backup-catalog.ts
 * `insertBackup`), so their rowid keeps it.
 */
import type Database from 'better-sqlite3';
import type { BackupInfo } from '../repository/repository';
import type { BackupMode } from '../repository/manifest';

/** Rows come as arrays (`raw`): building an object per row costs more than the query. */
type ListRow = [id: string, vmid: number, time: string, parent: string | null, verifyState: BackupInfo['verifyState']];
type ListDiskRow = [backupId: string, disk: string, format: string, size: number, mode: BackupMode, reason: string, bytesRead: number, bytesStored: number];

const ALL_BACKUPS = 'SELECT id, vmid, time, parent, verify_state FROM backups INDEXED BY backups_time_vmid ORDER BY time, vmid, id';
const VM_BACKUPS = 'SELECT id, vmid, time, parent, verify_state FROM backups WHERE vmid = ? ORDER BY time, id';
const DISK_COLUMNS = 'd.backup_id, d.disk, d.format, d.size, d.mode, d.reason, d.bytes_read, d.bytes_stored';
const ALL_DISKS = `SELECT ${DISK_COLUMNS} FROM backup_disks d ORDER BY d.rowid`;
const VM_DISKS = `SELECT ${DISK_COLUMNS} FROM backups b JOIN backup_disks d ON d.backup_id = b.id WHERE b.vmid = ? ORDER BY d.rowid`;

/** Backups of one VM or of all, oldest first (ties: lower vmid first), as the catalog holds them. */
export function listCatalogBackups(db: Database.Database, vmid?: number): BackupInfo[] {
  const args = vmid === undefined ? [] : [vmid];
  const backups = db.prepare(vmid === undefined ? ALL_BACKUPS : VM_BACKUPS).raw(true).all(...args) as ListRow[];
  const disksOf = new Map<string, BackupInfo['disks']>();
  for (const [backupId, name, format, size, mode, reason, bytesRead, bytesStored] of db.prepare(vmid === undefined ? ALL_DISKS : VM_DISKS).raw(true).all(...args) as ListDiskRow[]) {
    let list = disksOf.get(backupId);
    if (!list) disksOf.set(backupId, (list = []));
    list.push({ name, format, size, mode, reason, bytesRead, bytesStored });
  }
  return backups.map(([id, vmidOf, time, parent, verifyState]) => ({
    id,
    vmid: vmidOf,
    time: new Date(time),
    parent,
    disks: disksOf.get(id) ?? [],
    verifyState,
  }));
}

/** Ids of the backups the catalog knows, of one VM or of all. */
export function catalogBackupIds(db: Database.Database, vmid?: number): string[] {
  const st = vmid === undefined ? db.prepare('SELECT id FROM backups') : db.prepare('SELECT id FROM backups WHERE vmid = ?');
  return st.pluck(true).all(...(vmid === undefined ? [] : [vmid])) as string[];
}
