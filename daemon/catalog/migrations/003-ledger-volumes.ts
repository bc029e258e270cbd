import type Database from 'better-sqlite3';
import type { Migration } from '../migration';

/**
 * The volume each ledger record was made for: `volid` (the VM config's volume id) and `path` (what
 * `pvesm path` gave for it) of the disk when its bitmap was marked valid. No Proxmox hook fires for
 * `qm disk move` or for attaching another volume under a disk key, so the engine learns of those by
 * comparing the config's volume with these columns (backup/mode-decision.ts, `volume-changed`).
 * Records from before this migration have NULL here: their volume is not checked.
 */
export const migration: Migration = {
  version: 3,
  name: 'ledger-volumes',
  up(db: Database.Database): void {
    db.exec(`
      ALTER TABLE bitmap_state ADD COLUMN volid TEXT;
      ALTER TABLE bitmap_state ADD COLUMN path TEXT;
    `);
  },
};
