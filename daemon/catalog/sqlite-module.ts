/**
 * better-sqlite3, loaded when the first catalog opens: a CLI command that never opens one
 * (`backup`, `status`, `task`: they ask the daemon) does not pay for loading the native module.
 */
import type Database from 'better-sqlite3';

let loaded: typeof Database | undefined;

export function sqliteDatabase(): typeof Database {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded ??= require('better-sqlite3') as typeof Database);
}
