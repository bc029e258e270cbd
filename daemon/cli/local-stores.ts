/**
 * For commands that work on the repository and catalog directly (list, show, restore, verify,
 * prune, gc, forget): the repository's own locks make this safe next to a running daemon, and these
 * commands keep working while the daemon is down. None of them creates a repository: one that is
 * missing is CBT_CLI_NO_REPOSITORY (a typo in `repository` must not leave an empty repository
 * behind). Read-only ones (`{ readOnly: true }`: list, show, restore, verify) create nothing at all:
 * no stateDir, no catalog file (an in-memory one stands in), no logDir (no log then). Their log entries go to the same log files as
 * the daemon's (component `cli`), so `pve-cbt log` tells the whole story. The logger is made on
 * the first entry (deferred-logger.ts): a command that logs nothing does not load winston.
 * A logDir the CLI cannot write is CBT_CLI_LOG_UNWRITABLE before the command starts (a probe file
 * is created and removed); a write that fails later (the log transport's 'error') never crashes the
 * CLI: it is one warning line on stderr at the end, with the same code.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import type { CbtConfig } from '../config/config-schema';
import { REPOSITORY_MARKER } from '../repository/repository-marker';
import { isS3Url } from '../repository/s3-url';
import { closeLogger, createLogger } from '../log/create-logger';
import { deferredLogger } from '../log/deferred-logger';
import { isCatalogDamage } from '../catalog/damaged-catalog';
import { openStores, type Services } from '../service/services';
import { CliLogUnwritableError, CliNoRepositoryError } from './cli-errors';
import type { CommandContext } from './command';

export type Stores = Omit<Services, 'queue'>;

const LOG_HINT = 'check logDir in the config and its file system (full? read-only?), and run pve-cbt as root';

function logUnwritable(logDir: string, err: unknown) {
  const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message ?? String(err);
  return CliLogUnwritableError({ logDir, reason, hint: LOG_HINT }, err);
}

/** Creates logDir if needed and proves a file can be created in it. */
function probeLogDir(logDir: string): void {
  try {
    fs.mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const probe = path.join(logDir, `.pve-cbt-write-probe-${process.pid}`);
    fs.closeSync(fs.openSync(probe, 'w', 0o600));
    fs.rmSync(probe, { force: true });
  } catch (err) {
    throw logUnwritable(logDir, err);
  }
}

/** The CLI's logger into logDir (probed by the caller first); `onError` receives a write error of the log files (the first one is enough to report). */
function cliLogger(config: CbtConfig, onError: (err: Error) => void = () => undefined): Logger {
  let logger: Logger;
  try {
    logger = createLogger({
      logDir: config.logDir,
      level: config.logLevel,
      maxSize: config.logMaxSize,
      maxFiles: config.logMaxFiles,
      console: false,
      defaultMeta: { component: 'cli' },
    });
  } catch (err) {
    throw logUnwritable(config.logDir, err);
  }
  logger.on('error', onError);
  // winston-daily-rotate-file does not pass its file stream's errors on: an unhandled 'error' there
  // would end the CLI with a stack trace.
  for (const t of logger.transports) {
    (t as unknown as { logStream?: NodeJS.EventEmitter }).logStream?.on('error', onError);
  }
  return logger;
}

export interface WithStoresOptions {
  /** The command only reads: create no directory or file (see the header). */
  readOnly?: boolean;
  /** Skip the catalog's quick_check (read-only commands that answer before they write anything). */
  skipQuickCheck?: boolean;
}

function requireRepository(ctx: CommandContext<unknown, unknown>, config: CbtConfig): void {
  // An s3:// repository is checked when it is opened (CBT_REPO_NOT_A_REPOSITORY), not here.
  if (isS3Url(config.repository) || fs.existsSync(path.join(config.repository, REPOSITORY_MARKER))) return;
  const configFile = ctx.configPath ?? ctx.env.PVE_CBT_CONFIG ?? '(defaults)';
  throw CliNoRepositoryError({
    repository: config.repository,
    configFile,
    hint: `nothing was backed up with this config yet, or 'repository' in ${configFile} names another place (pve-cbtd creates the repository when it starts)`,
  });
}

export async function withStores<T>(ctx: CommandContext<unknown, unknown>, fn: (s: Stores) => Promise<T>, opts: WithStoresOptions = {}): Promise<T> {
  const config = ctx.loadConfig();
  requireRepository(ctx, config);
  let logError: Error | undefined;
  // The log directory is checked now (a command must not run when it could not log); winston is
  // loaded only when the command first logs (deferred-logger.ts).
  const noLogDir = opts.readOnly && !fs.existsSync(config.logDir);
  if (!noLogDir) probeLogDir(config.logDir);
  const deferred = deferredLogger(() => (noLogDir ? createLogger({ console: false }) : cliLogger(config, (err) => (logError ??= err))));
  const logger = deferred.logger;
  try {
    // `skipQuickCheck`: the catalog's whole-file check is skipped and damage met where the command
    // reads; then the catalog is opened again with the check, which sets a damaged one aside and
    // rebuilds it, and the command runs again (it must have written nothing yet: `list`).
    const attempt = async (skipQuickCheck: boolean): Promise<T> => {
      const stores = await openStores(config, logger, { createRepository: false, readOnly: opts.readOnly, skipQuickCheck, env: ctx.env });
      try {
        return await fn(stores);
      } finally {
        stores.db.close();
      }
    };
    if (!opts.readOnly || !opts.skipQuickCheck) return await attempt(false);
    try {
      return await attempt(true);
    } catch (err) {
      if (!isCatalogDamage(err)) throw err;
      return await attempt(false);
    }
  } finally {
    const made = deferred.real();
    if (made) await closeLogger(made);
    if (logError) {
      const e = logUnwritable(config.logDir, logError);
      ctx.stderr.write(`pve-cbt: warning: ${e.message} (${e.code})\n`);
    }
  }
}
