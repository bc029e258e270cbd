/**
 * One row per VM with backups, as `proxmox-backup-client list` shows backup groups: how many, the
 * first and last backup's time, the last one's id and verify state, and the bytes all of them read
 * and stored. Read from `vm_groups` (kept by triggers, 005-catalog-scale.ts) and one index lookup
 * per group for the last backup: 1,000 rows for 1,000 VMs, however many backups each has.
 * `pve-cbt list` shows these unless given a VMID or `--all`.
 */
import type Database from 'better-sqlite3';
import type { BackupInfo } from '../repository/repository';

export interface VmGroup {
  vmid: number;
  backups: number;
  first: Date;
  last: Date;
  lastId: string;
  lastVerifyState: BackupInfo['verifyState'];
  bytesRead: number;
  bytesStored: number;
}

type GroupRow = [vmid: number, backups: number, first: string, last: string, lastId: string, lastVerify: BackupInfo['verifyState'], bytesRead: number, bytesStored: number];

const GROUPS = `SELECT g.vmid, g.backups, g.first_time, g.last_time, b.id, b.verify_state, g.bytes_read, g.bytes_stored
  FROM vm_groups g JOIN backups b INDEXED BY backups_vmid_time ON b.vmid = g.vmid AND b.time = g.last_time
  ORDER BY g.vmid`;

/** The VM groups, by VMID. */
export function listVmGroups(db: Database.Database): VmGroup[] {
  return (db.prepare(GROUPS).raw(true).all() as GroupRow[]).map(([vmid, backups, first, last, lastId, lastVerifyState, bytesRead, bytesStored]) => ({
    vmid,
    backups,
    first: new Date(first),
    last: new Date(last),
    lastId,
    lastVerifyState,
    bytesRead,
    bytesStored,
  }));
}
