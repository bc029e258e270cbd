/**
 * `pve-cbt daemon`: the long-running service (systemd unit pve-cbtd.service runs it). Logs go to
 * the JSON-lines files in logDir and as readable lines to stdout, which systemd sends to journald.
 * SIGHUP (`systemctl reload pve-cbtd`) re-reads the config without cancelling running backups; the
 * handler is installed first thing, so an early SIGHUP is a reload after start, never a kill.
 */
import { loadConfig } from '../../config/load-config';
import { closeLogger, createLogger } from '../../log/create-logger';
import { checkNodeAbi } from '../../service/node-abi';
import { runDaemon } from '../../service/run-daemon';
import { defineCommand, type CommandContext } from '../command';

export const daemonCommand = defineCommand({
  name: 'daemon',
  summary: 'run the pve-cbt daemon (normally started by systemd as pve-cbtd)',
  description:
    'Serves the control socket for hooks and the CLI, runs scheduled backup jobs, and stops cleanly on SIGTERM: running backups are cancelled without a manifest and their bitmaps keep every change. SIGHUP re-reads the config; running backups go on.',
  examples: ['systemctl start pve-cbtd', 'pve-cbt daemon --config /etc/pve-cbt/config.json'],
  async run(ctx) {
    let onHup: () => void = () => (hupBeforeReady = true);
    let hupBeforeReady = false;
    const hup = (): void => onHup();
    process.on('SIGHUP', hup);
    try {
      await runWithConfig(ctx, (reload) => {
        onHup = reload;
        if (hupBeforeReady) reload();
        return () => (onHup = () => undefined);
      });
    } finally {
      process.off('SIGHUP', hup);
    }
  },
});

async function runWithConfig(ctx: CommandContext, onReloadRequest: (reload: () => void) => () => void): Promise<void> {
  const config = ctx.loadConfig();
  // Before anything opens the catalog: a Node.js upgraded since install gets a clear refusal.
  checkNodeAbi();
  const logger = createLogger({
    logDir: config.logDir,
    level: config.logLevel,
    maxSize: config.logMaxSize,
    maxFiles: config.logMaxFiles,
    console: { stream: ctx.stdout },
    env: ctx.env,
    defaultMeta: { component: 'daemon' },
  });
  try {
    await runDaemon({
      config,
      logger,
      signal: ctx.signal,
      env: ctx.env,
      reloadConfig: () => loadConfig({ path: ctx.configPath, env: ctx.env }),
      onReloadRequest,
    });
  } catch (err) {
    logger.error('daemon failed', { error: err });
    throw err;
  } finally {
    await closeLogger(logger);
  }
}
