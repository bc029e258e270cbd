import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { sqliteDatabase } from './sqlite-module';
import { CatalogMigrationError, CatalogTooNewError } from './catalog-errors';
import type { Migration } from './migration';

const MIGRATIONS_DIR = path.join(__dirname, 'migrations');

/** Migrations are discovered from the folder so that subsystems add theirs without a shared list. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^\d{3}-[a-z0-9-]+\.(js|ts)$/.test(f) && !f.endsWith('.d.ts'));
  const migrations = files.map((file) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(path.join(dir, file)) as { migration?: Migration };
    const m = mod.migration;
    if (!m || typeof m.up !== 'function') throw CatalogMigrationError({ file, reason: 'no exported migration' });
    if (m.version !== Number(file.slice(0, 3))) throw CatalogMigrationError({ file, reason: 'version does not match file name' });
    return m;
  });
  migrations.sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw CatalogMigrationError({ file: m.name, reason: `expected version ${i + 1}` });
  });
  return migrations;
}

/** The catalog holds which VMs and disks are backed up and where: 0600 whatever the umask. */
export const CATALOG_FILE_MODE = 0o600;

/** The database file and the WAL and shared-memory files SQLite keeps beside it. */
export function catalogFiles(file: string): string[] {
  return [file, `${file}-wal`, `${file}-shm`];
}

function makePrivate(file: string): void {
  for (const f of catalogFiles(file)) {
    try {
      if ((fs.statSync(f).mode & 0o777) !== CATALOG_FILE_MODE) fs.chmodSync(f, CATALOG_FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/**
 * Opens (creating if needed) the SQLite catalog in WAL mode and applies pending migrations.
 * The file is created 0600 before SQLite opens it (SQLite gives its -wal and -shm files the mode
 * of the database file), and all three are set to 0600 if they are not.
 */
export function openCatalog(file: string, migrations: Migration[] = loadMigrations()): Database.Database {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.closeSync(fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT, CATALOG_FILE_MODE));
  makePrivate(file);
  const db = new (sqliteDatabase())(file);
  try {
    db.pragma('journal_mode = WAL');
    makePrivate(file);
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const current = db.pragma('user_version', { simple: true }) as number;
    const known = migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
    if (current > known) throw CatalogTooNewError({ dbVersion: current, knownVersion: known, file });
    for (const m of migrations) {
      if (m.version <= current) continue;
      db.transaction(() => {
        m.up(db);
        db.pragma(`user_version = ${m.version}`);
      })();
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
