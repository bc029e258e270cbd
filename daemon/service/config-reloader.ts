/**
 * The daemon's reload (SIGHUP, `systemctl reload pve-cbtd`): tells systemd RELOADING=1, loads and
 * validates the config again, applies what may change while backups run (reload-config.ts) — the
 * services hand out the new config from then on, the log level changes, the scheduler is re-armed
 * when jobs or the verify job changed — and says READY=1 again. A config that does not validate
 * changes nothing and is logged at error level. Running backups are never touched. One reload at
 * a time: a request during a reload runs one more afterwards.
 */
import type { Logger } from 'winston';
import type { CbtConfig } from '../config/config-schema';
import { planReload } from './reload-config';
import type { NotifyFields } from './sd-notify';
import type { Services } from './services';
import { ConfigReloadUnavailableError } from './service-errors';

export interface ConfigReloaderOptions {
  services: Services;
  logger: Logger;
  /** Loads the config again; without it a reload is refused (logged). */
  load?: () => CbtConfig;
  /** sd_notify; resolves once sent (or not under systemd). */
  notify: (fields: NotifyFields) => Promise<unknown>;
  /** Re-arms the scheduler for the new jobs; returns their next runs for the log. */
  rescheduled: (config: CbtConfig) => unknown;
}

export interface ConfigReloader {
  request(): void;
  /** Resolves when no reload is running. */
  idle(): Promise<void>;
}

export function createConfigReloader(opts: ConfigReloaderOptions): ConfigReloader {
  const { services, logger } = opts;
  let running: Promise<void> | undefined;
  let again = false;

  const reloadOnce = async (): Promise<void> => {
    await opts.notify({ RELOADING: '1', STATUS: 'reloading the config' });
    let ok = false;
    try {
      if (!opts.load) throw ConfigReloadUnavailableError({});
      const plan = planReload(services.config, opts.load());
      // Services hand out `config` at the moment of use; running backups keep what they started with.
      (services as { config: CbtConfig }).config = plan.config;
      logger.level = plan.config.logLevel;
      const jobsChanged = plan.applied.some((k) => k === 'jobs' || k === 'verify');
      const jobs = jobsChanged ? opts.rescheduled(plan.config) : undefined;
      const runningTasks = services.queue.list().filter((h) => h.state === 'running').map((h) => h.id);
      logger.info('config reloaded', { applied: plan.applied, ...(jobs ? { jobs } : {}), running: runningTasks });
      if (plan.needRestart.length) logger.warn('config changes that need a restart (systemctl restart pve-cbtd) were not applied', { keys: plan.needRestart });
      ok = true;
    } catch (err) {
      logger.error('config reload refused: running on with the previous config', { error: err });
    }
    await opts.notify({ READY: '1', STATUS: ok ? 'ready (config reloaded)' : 'ready (config reload refused, see the log)' });
  };

  return {
    request() {
      if (running) {
        again = true;
        return;
      }
      running = (async () => {
        do {
          again = false;
          await reloadOnce();
        } while (again);
      })().finally(() => (running = undefined));
    },
    idle: async () => {
      await running;
    },
  };
}
