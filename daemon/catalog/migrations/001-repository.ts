import type Database from 'better-sqlite3';
import type { Migration } from '../migration';

/**
 * Repository catalog: committed backups and their disks (a copy of what the manifests say, so the
 * CLI and scheduler can answer without reading the repository), verify results with the chunks
 * found bad, and jobs with their outcome. The repository stays the source of truth: everything but
 * `jobs` can be rebuilt from it (see backup-catalog.ts). Times are ISO 8601 UTC strings.
 */
export const migration: Migration = {
  version: 1,
  name: 'repository',
  up(db: Database.Database): void {
    db.exec(`
      CREATE TABLE backups (
        id                TEXT PRIMARY KEY,
        vmid              INTEGER NOT NULL,
        time              TEXT NOT NULL,
        parent            TEXT,
        tool_version      TEXT NOT NULL,
        manifest_checksum TEXT NOT NULL,
        verify_state      TEXT NOT NULL DEFAULT 'none' CHECK (verify_state IN ('none', 'ok', 'failed')),
        verified_at       TEXT
      );
      CREATE INDEX backups_vmid_time ON backups (vmid, time);

      CREATE TABLE backup_disks (
        backup_id         TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
        disk              TEXT NOT NULL,
        format            TEXT NOT NULL,
        size              INTEGER NOT NULL,
        chunk_size        INTEGER NOT NULL,
        page_entries      INTEGER NOT NULL,
        mode              TEXT NOT NULL,
        reason            TEXT NOT NULL,
        bitmap_name       TEXT,
        bitmap_generation INTEGER,
        consistency       TEXT,
        bytes_read        INTEGER NOT NULL,
        bytes_stored      INTEGER NOT NULL,
        duration_ms       INTEGER NOT NULL,
        PRIMARY KEY (backup_id, disk)
      );

      CREATE TABLE bad_chunks (
        backup_id  TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
        disk       TEXT NOT NULL,
        offset     INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('chunk', 'page')),
        digest     TEXT NOT NULL,
        problem    TEXT NOT NULL CHECK (problem IN ('missing', 'corrupt')),
        found_at   TEXT NOT NULL,
        PRIMARY KEY (backup_id, disk, offset)
      );
      CREATE INDEX bad_chunks_digest ON bad_chunks (digest);

      CREATE TABLE jobs (
        id            TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        vmid          INTEGER,
        started_at    TEXT NOT NULL,
        ended_at      TEXT,
        status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'cancelled')),
        backup_id     TEXT,
        error_code    TEXT,
        error_message TEXT,
        result        TEXT
      );
      CREATE INDEX jobs_vmid_started ON jobs (vmid, started_at);
    `);
  },
};
