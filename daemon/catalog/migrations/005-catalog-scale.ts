import type Database from 'better-sqlite3';
import type { Migration } from '../migration';

/**
 * What `list` and `status` need to stay fast with 1,000 VMs × 365 backups (issue 18):
 * - `vm_groups`: one row per VM with backups (count, first and last time, the last one's id, bytes read and stored),
 *   kept by triggers on `backups` and `backup_disks`, so that `pve-cbt list` shows the groups by
 *   reading 1,000 rows instead of 365,000 (catalog-groups.ts);
 * - `folder_marks`: the modification time of each `vm/VMID` folder as the catalog sync last listed
 *   it in full, so that the next sync lists only the folders that changed (catalog-sync.ts).
 * Both are filled from what the catalog holds now: groups by one aggregate, marks left empty (the
 * first sync lists every folder, as before).
 */
export const migration: Migration = {
  version: 5,
  name: 'catalog-scale',
  up(db: Database.Database): void {
    db.exec(`
      CREATE TABLE vm_groups (
        vmid         INTEGER PRIMARY KEY,
        backups      INTEGER NOT NULL,
        first_time   TEXT NOT NULL,
        last_time    TEXT NOT NULL,
        last_id      TEXT NOT NULL,
        bytes_read   INTEGER NOT NULL DEFAULT 0,
        bytes_stored INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO vm_groups (vmid, backups, first_time, last_time, last_id, bytes_read, bytes_stored)
        SELECT b.vmid, count(*), min(b.time), max(b.time),
               (SELECT l.id FROM backups l WHERE l.vmid = b.vmid ORDER BY l.time DESC LIMIT 1),
               coalesce(sum((SELECT sum(d.bytes_read) FROM backup_disks d WHERE d.backup_id = b.id)), 0),
               coalesce(sum((SELECT sum(d.bytes_stored) FROM backup_disks d WHERE d.backup_id = b.id)), 0)
        FROM backups b GROUP BY b.vmid;

      CREATE TRIGGER vm_groups_backup_added AFTER INSERT ON backups BEGIN
        INSERT INTO vm_groups (vmid, backups, first_time, last_time, last_id) VALUES (NEW.vmid, 1, NEW.time, NEW.time, NEW.id)
          ON CONFLICT (vmid) DO UPDATE SET backups = backups + 1, first_time = min(first_time, NEW.time), last_time = max(last_time, NEW.time),
            last_id = CASE WHEN NEW.time >= last_time THEN NEW.id ELSE last_id END;
      END;
      CREATE TRIGGER vm_groups_disk_added AFTER INSERT ON backup_disks BEGIN
        UPDATE vm_groups SET bytes_read = bytes_read + NEW.bytes_read, bytes_stored = bytes_stored + NEW.bytes_stored
          WHERE vmid = (SELECT vmid FROM backups WHERE id = NEW.backup_id);
      END;
      -- Before the delete: the backup's disks (removed by the cascade) are still there to subtract.
      CREATE TRIGGER vm_groups_backup_leaving BEFORE DELETE ON backups BEGIN
        UPDATE vm_groups SET backups = backups - 1,
            bytes_read = bytes_read - coalesce((SELECT sum(bytes_read) FROM backup_disks WHERE backup_id = OLD.id), 0),
            bytes_stored = bytes_stored - coalesce((SELECT sum(bytes_stored) FROM backup_disks WHERE backup_id = OLD.id), 0)
          WHERE vmid = OLD.vmid;
      END;
      CREATE TRIGGER vm_groups_backup_removed AFTER DELETE ON backups BEGIN
        DELETE FROM vm_groups WHERE vmid = OLD.vmid AND backups <= 0;
        UPDATE vm_groups SET first_time = (SELECT min(time) FROM backups WHERE vmid = OLD.vmid),
            last_time = (SELECT max(time) FROM backups WHERE vmid = OLD.vmid),
            last_id = (SELECT id FROM backups WHERE vmid = OLD.vmid ORDER BY time DESC LIMIT 1)
          WHERE vmid = OLD.vmid;
      END;

      CREATE TABLE folder_marks (
        folder   TEXT PRIMARY KEY,
        mtime_ms REAL NOT NULL
      );
    `);
  },
};
