/**
 * Error codes of the SQLite catalog (backups, jobs, the bitmap ledger's tables).
 */
import { defineError } from '../../shared/errors/cbt-error';

/** A migration file in daemon/catalog/migrations is malformed (a packaging bug). */
export const CatalogMigrationError = defineError<{ file: string; reason: string }>(
  'CBT_CATALOG_MIGRATION',
  (d) => `catalog migration ${d.file} is invalid: ${d.reason}`,
);
/** SQLite's quick_check found the catalog damaged (it is set aside and rebuilt, see damaged-catalog.ts). */
export const CatalogQuickCheckError = defineError<{ file: string; problem: string }>(
  'CBT_CATALOG_QUICK_CHECK',
  (d) => `catalog ${d.file} failed quick_check: ${d.problem}`,
);
/** The catalog was written by a newer pve-cbt (a downgrade): it is not touched. */
export const CatalogTooNewError = defineError<{ dbVersion: number; knownVersion: number; file: string }>(
  'CBT_CATALOG_TOO_NEW',
  (d) => `catalog ${d.file} has schema version ${d.dbVersion}, newer than this pve-cbt knows (${d.knownVersion})`,
);
