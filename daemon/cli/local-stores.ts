/**
 * For commands that work on the repository and catalog directly (list, show, restore, verify,
 * prune, gc): the repository's own locks make this safe next to a running daemon, and these
 * commands keep working while the daemon is down. Their log entries go to the same log files as
 * the daemon's (component `cli`), so `pve-cbt log` tells the whole story.
 */
import type { CbtConfig } from '../config/config-schema';
import { closeLogger, createLogger } from '../log/create-logger';
import { openStores, type Services } from '../service/services';
import type { CommandContext } from './command';

export type Stores = Omit<Services, 'queue'>;

export function cliLogger(config: CbtConfig) {
  return createLogger({
    logDir: config.logDir,
    level: config.logLevel,
    maxSize: config.logMaxSize,
    maxFiles: config.logMaxFiles,
    console: false,
    defaultMeta: { component: 'cli' },
  });
}

export async function withStores<T>(ctx: CommandContext<unknown, unknown>, fn: (s: Stores) => Promise<T>): Promise<T> {
  const config = ctx.loadConfig();
  const logger = cliLogger(config);
  try {
    const stores = await openStores(config, logger);
    try {
      return await fn(stores);
    } finally {
      stores.db.close();
    }
  } finally {
    await closeLogger(logger);
  }
}
