import type Database from 'better-sqlite3';
import type { Migration } from '../migration';

/**
 * Bitmap validity ledger (see daemon/ledger/ledger.ts), independent of the repository tables.
 * - `lifecycle_events`: every hook event as received, with its source; `seq` (made by the hook) is
 *   unique so that an event arriving both live and from the spool is stored and applied once.
 *   `effect` is a JSON summary of what the event changed, for `status`/`log`.
 * - `bitmap_state`: per disk, whether pve-cbt's dirty bitmap can be trusted, why not, and the identity
 *   (name, generation, QEMU pid + start time) under which it was created.
 * - `vm_activity`: per VM, what the rules need to remember between events (vzdump busy, a clean stop
 *   announced by pre-stop, whether QEMU is believed running, its last known pid).
 * Times are ISO 8601 UTC strings.
 */
export const migration: Migration = {
  version: 2,
  name: 'ledger',
  up(db: Database.Database): void {
    db.exec(`
      CREATE TABLE lifecycle_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        seq           TEXT UNIQUE,
        vmid          INTEGER,
        phase         TEXT NOT NULL,
        source        TEXT NOT NULL CHECK (source IN ('hookscript', 'vzdump')),
        mode          TEXT,
        event_time    TEXT NOT NULL,
        received_at   TEXT NOT NULL,
        migrated_from TEXT,
        qemu_pid      INTEGER,
        effect        TEXT NOT NULL
      );
      CREATE INDEX lifecycle_events_vmid ON lifecycle_events (vmid, id);

      CREATE TABLE bitmap_state (
        vmid            INTEGER NOT NULL,
        disk            TEXT NOT NULL,
        format          TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('valid', 'invalid', 'suspect', 'unknown')),
        reason          TEXT,
        changed_at      TEXT NOT NULL,
        bitmap_name     TEXT,
        generation      INTEGER,
        qemu_pid        INTEGER,
        qemu_start_time INTEGER,
        PRIMARY KEY (vmid, disk)
      );

      CREATE TABLE vm_activity (
        vmid          INTEGER PRIMARY KEY,
        vzdump_busy   INTEGER NOT NULL DEFAULT 0,
        vzdump_mode   TEXT,
        vzdump_since  TEXT,
        running       INTEGER NOT NULL DEFAULT 0,
        stop_expected INTEGER NOT NULL DEFAULT 0,
        qemu_pid      INTEGER,
        last_phase    TEXT,
        last_event_at TEXT
      );
    `);
  },
};
