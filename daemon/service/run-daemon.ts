/**
 * `pve-cbt daemon`: take the state directory's single-instance lock (daemon-lock.ts), recover,
 * serve the control socket, run scheduled jobs, and on SIGTERM stop cleanly — stop the scheduler,
 * cancel running backups (each leaves no manifest and keeps its bitmap's changes), close the socket
 * and the catalog, release the lock. systemd's `Restart=on-failure` covers the
 * rest: an unexpected exit is recovered by the next start's `recoverAtStartup`.
 * Under systemd (`Type=notify`) it says READY=1 once the socket accepts requests and STOPPING=1 on
 * the way out (sd-notify.ts). A reload request (SIGHUP, wired by `pve-cbt daemon`) re-reads the
 * config without touching running backups (reload-config.ts): RELOADING=1, then READY=1.
 */
import type { Logger } from 'winston';
import type { CbtConfig } from '../config/config-schema';
import { createConfigReloader } from './config-reloader';
import { sdNotify } from './sd-notify';
import { startIpcServer } from '../ipc/ipc-server';
import { migrationDepsOf } from '../migration/migration-deps';
import { startMigrationWatcher } from '../migration/migration-watcher';
import { createScheduler, systemClock, type Clock } from '../schedule/scheduler';
import { requestHandlers } from './request-handlers';
import { runScheduledJob, scheduledJobs } from './scheduled-job';
import { openServices, type Services } from './services';
import { acquireDaemonLock } from './daemon-lock';
import { ensurePrivateDir } from './state-dir';
import { recoverAtStartup } from './startup-recovery';

export interface DaemonOptions {
  config: CbtConfig;
  logger: Logger;
  signal: AbortSignal;
  clock?: Clock;
  /** Called once the socket accepts requests (tests, the demo). */
  onReady?: (s: Services) => void;
  /** Loads the config again for a reload; without it reload requests are refused with a warning. */
  reloadConfig?: () => CbtConfig;
  /** Subscribes to reload requests (SIGHUP); returns the unsubscribe. */
  onReloadRequest?: (reload: () => void) => () => void;
  /** NOTIFY_SOCKET is read here; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export async function runDaemon(opts: DaemonOptions): Promise<void> {
  const { config, logger } = opts;
  // The single-instance lock comes before anything that changes state (catalog rebuild, spool,
  // partial backups, QEMU leftovers): a second daemon must leave a running one's backup alone.
  ensurePrivateDir(config.stateDir);
  const lock = acquireDaemonLock(config.stateDir);
  let s: Services;
  try {
    s = await openServices(config, logger);
  } catch (err) {
    lock.release();
    throw err;
  }
  try {
    await recoverAtStartup(s);
    const server = await startIpcServer({ socketPath: config.socketPath, logger, handlers: requestHandlers(s), idleTimeoutMs: config.ipcIdleTimeoutMs });
    const services = s;
    const schedulerFor = (c: CbtConfig) =>
      createScheduler({
        jobs: scheduledJobs(c),
        clock: opts.clock ?? systemClock,
        logger,
        onFire: (job) => runScheduledJob(services, job).then(() => undefined),
      });
    let scheduler = schedulerFor(config);
    scheduler.start();
    const migrations = startMigrationWatcher(migrationDepsOf(s));
    logger.info('daemon ready', { socketPath: config.socketPath, repository: config.repository, jobs: scheduler.nextRuns() });
    const notify = (fields: Record<string, string>) => sdNotify(fields, { env: opts.env, logger });
    await notify({ READY: '1', STATUS: 'ready' });
    opts.onReady?.(s);
    const reloader = createConfigReloader({
      services,
      logger,
      load: opts.reloadConfig,
      notify,
      rescheduled: (c) => {
        scheduler.stop();
        scheduler = schedulerFor(c);
        scheduler.start();
        return scheduler.nextRuns();
      },
    });
    const unsubscribe = opts.onReloadRequest?.(() => reloader.request());
    if (!opts.signal.aborted) await new Promise((resolve) => opts.signal.addEventListener('abort', resolve, { once: true }));
    unsubscribe?.();
    await reloader.idle();
    logger.info('daemon stopping', { reason: String(opts.signal.reason ?? 'signal') });
    await notify({ STOPPING: '1', STATUS: 'stopping: cancelling running backups' });
    scheduler.stop();
    await migrations.stop();
    await s.queue.cancelAll('daemon stopping');
    await server.close();
  } finally {
    await s.exec?.close();
    s.db.close();
    lock.release();
  }
  logger.info('daemon stopped');
}
