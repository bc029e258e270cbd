/**
 * A catalog SQLite cannot read (garbage in catalog.sqlite: SQLITE_NOTADB, SQLITE_CORRUPT, or a
 * failed `PRAGMA quick_check`) must not stop the daemon or the CLI: the repository is the source of
 * truth for backups, so the damaged files are moved aside (`catalog.sqlite.corrupt-<time>`, with its
 * -wal and -shm) for a post-mortem, a fresh catalog is created, and the caller rebuilds the backup
 * tables from the repository (BackupCatalog.rebuildFromRepository).
 *
 * What the repository cannot give back is lost with the old file: job history and the bitmap
 * ledger. An empty ledger has no record of any bitmap, so every disk's next backup is a
 * full-compare (mode-decision.ts: `ledger-no-record`) — slower, never a wrong incremental.
 * Any other open error (a catalog too new, a permission problem, a busy file) is thrown as it is.
 *
 * `quick_check` reads every page: about 1 s for a catalog of 365,000 backups. Read-only CLI commands
 * (`list`, `show`: `{ quickCheck: false }`) skip it and meet damage where SQLite meets it, as
 * SQLITE_CORRUPT from the pages they read (`isCatalogDamage`); their caller then opens the catalog
 * again with the check (local-stores.ts), which sets it aside as above. The daemon checks at every start.
 */
import fs from 'node:fs';
import type Database from 'better-sqlite3';
import { catalogFiles, openCatalog } from './open-catalog';
import type { Migration } from './migration';
import { CatalogQuickCheckError } from './catalog-errors';

const DAMAGE_CODES = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT']);

export interface OpenedCatalog {
  db: Database.Database;
  /** Set when the old catalog was unreadable: where its files went and why. */
  setAside?: { files: string[]; reason: string };
}

/** An error SQLite raises for a damaged or foreign catalog file. */
export function isCatalogDamage(err: unknown): boolean {
  return isDamage(err) || CatalogQuickCheckError.is(err);
}

function isDamage(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && [...DAMAGE_CODES].some((c) => code === c || code.startsWith(`${c}_`));
}

/** Returns null when the open catalog passes SQLite's quick check, else the first problem found. */
function quickCheck(db: Database.Database): string | null {
  const rows = db.pragma('quick_check') as { quick_check: string }[];
  return rows.length === 1 && rows[0].quick_check === 'ok' ? null : rows.map((r) => r.quick_check).join('; ');
}

function openChecked(file: string, migrations: Migration[] | undefined, check = true): Database.Database {
  const db = migrations ? openCatalog(file, migrations) : openCatalog(file);
  if (!check) return db;
  let problem: string | null;
  try {
    problem = quickCheck(db);
  } catch (err) {
    db.close();
    throw err;
  }
  if (problem !== null) {
    db.close();
    throw CatalogQuickCheckError({ file, problem });
  }
  return db;
}

/** Moves the catalog's files that exist to `<name>.corrupt-<time>`; returns the new names. */
export function setCatalogAside(file: string, now: Date = new Date()): string[] {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  const moved: string[] = [];
  for (const f of catalogFiles(file)) {
    const to = `${f}.corrupt-${stamp}`;
    try {
      fs.renameSync(f, to);
      moved.push(to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return moved;
}

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * A non-empty file that does not start with SQLite's magic string. Checked before SQLite opens it,
 * because SQLite drops the -wal of a file it cannot read, and the set-aside copy should keep it.
 */
function headerDamaged(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    const head = Buffer.alloc(SQLITE_HEADER.length);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return n > 0 && (n < head.length || !head.equals(SQLITE_HEADER));
  } finally {
    fs.closeSync(fd);
  }
}

/** Opens the catalog; an unreadable one is set aside and replaced by a fresh, empty one. */
export function openCatalogOrSetAside(file: string, migrations?: Migration[], opts: { quickCheck?: boolean } = {}): OpenedCatalog {
  if (headerDamaged(file)) {
    const files = setCatalogAside(file);
    return { db: openChecked(file, migrations), setAside: { files, reason: 'SQLITE_NOTADB: the file does not start with the SQLite header' } };
  }
  try {
    return { db: openChecked(file, migrations, opts.quickCheck !== false) };
  } catch (err) {
    const quick = CatalogQuickCheckError.is(err);
    if (!quick && !isDamage(err)) throw err;
    const files = setCatalogAside(file);
    // A quick_check failure is the damage SQLite reports as SQLITE_CORRUPT, found by the check rather than a read.
    const reason = quick ? `SQLITE_CORRUPT (quick_check): ${String(err.details.problem)}` : `${(err as { code: string }).code}: ${(err as Error).message}`;
    return { db: openChecked(file, migrations), setAside: { files, reason } };
  }
}
