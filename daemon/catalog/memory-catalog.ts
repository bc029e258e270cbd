/**
 * A catalog that lives only in memory, with the same schema as the file (every migration applied).
 * Read-only CLI commands use it when the node has no catalog file yet, so that `list`, `show` or
 * `verify` on a fresh or mistyped stateDir never create one (issue 17); what they would record
 * (verify results) is also in the repository, which stays the source of truth.
 */
import type Database from 'better-sqlite3';
import { sqliteDatabase } from './sqlite-module';
import { loadMigrations } from './open-catalog';

export function openMemoryCatalog(): Database.Database {
  const db = new (sqliteDatabase())(':memory:');
  db.pragma('foreign_keys = ON');
  for (const m of loadMigrations()) {
    db.transaction(() => {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return db;
}
