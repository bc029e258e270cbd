/**
 * One row per VM with backups, as `proxmox-backup-client list` shows backup groups: how many, the
 * first and last backup's time, the last one's id, and the bytes all of them read and stored. Read
 * from `vm_groups` alone (kept by triggers, 005-catalog-scale.ts): 1,000 rows for 1,000 VMs,
 * however many backups each has, and no lookup into `backups` (1,000 lookups there cost ~25 ms on
 * a catalog a new process has not read yet).
 * `pve-cbt list` shows these unless given a VMID or `--all`.
 */
import type Database from 'better-sqlite3';

export interface VmGroup {
  vmid: number;
  backups: number;
  first: Date;
  last: Date;
  lastId: string;
  bytesRead: number;
  bytesStored: number;
}

type GroupRow = [vmid: number, backups: number, first: string, last: string, lastId: string, bytesRead: number, bytesStored: number];

const GROUPS = 'SELECT vmid, backups, first_time, last_time, last_id, bytes_read, bytes_stored FROM vm_groups ORDER BY vmid';

/** The VM groups, by VMID. */
export function listVmGroups(db: Database.Database): VmGroup[] {
  return (db.prepare(GROUPS).raw(true).all() as GroupRow[]).map(([vmid, backups, first, last, lastId, bytesRead, bytesStored]) => ({
    vmid,
    backups,
    first: new Date(first),
    last: new Date(last),
    lastId,
    bytesRead,
    bytesStored,
  }));
}
