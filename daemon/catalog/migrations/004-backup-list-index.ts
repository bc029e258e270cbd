import type Database from 'better-sqlite3';
import type { Migration } from '../migration';

/**
 * The order `pve-cbt list` prints every VM's backups in (time, then vmid; catalog-backup-list.ts),
 * as an index, so that listing 1,000 VMs × 365 backups walks an index instead of sorting. One VM's
 * backups are served by `backups_vmid_time` (001-repository.ts).
 */
export const migration: Migration = {
  version: 4,
  name: 'backup-list-index',
  up(db: Database.Database): void {
    db.exec('CREATE INDEX backups_time_vmid ON backups (time, vmid, id);');
  },
};
