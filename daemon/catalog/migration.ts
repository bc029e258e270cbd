import type Database from 'better-sqlite3';

/**
 * One numbered schema step. Migrations live one per file in `migrations/NNN-name.ts`, export
 * `migration`, and are applied in version order inside a transaction; `PRAGMA user_version`
 * records the last one applied. A shipped migration is never edited, only followed by a new one.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  up(db: Database.Database): void;
}
