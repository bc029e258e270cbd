/**
 * `pve-cbt daemon`: the long-running service (systemd unit pve-cbtd.service runs it). Logs go to
 * the JSON-lines files in logDir and as readable lines to stdout, which systemd sends to journald.
 */
import { closeLogger, createLogger } from '../../log/create-logger';
import { runDaemon } from '../../service/run-daemon';
import { defineCommand } from '../command';

export const daemonCommand = defineCommand({
  name: 'daemon',
  summary: 'run the pve-cbt daemon (normally started by systemd as pve-cbtd)',
  description:
    'Serves the control socket for hooks and the CLI, runs scheduled backup jobs, and stops cleanly on SIGTERM: running backups are cancelled without a manifest and their bitmaps keep every change.',
  examples: ['systemctl start pve-cbtd', 'pve-cbt daemon --config /etc/pve-cbt/config.json'],
  async run(ctx) {
    const config = ctx.loadConfig();
    const logger = createLogger({
      logDir: config.logDir,
      level: config.logLevel,
      maxSize: config.logMaxSize,
      maxFiles: config.logMaxFiles,
      console: { stream: ctx.stdout },
      defaultMeta: { component: 'daemon' },
    });
    try {
      await runDaemon({ config, logger, signal: ctx.signal });
    } catch (err) {
      logger.error('daemon failed', { error: err });
      throw err;
    } finally {
      await closeLogger(logger);
    }
  },
});
