/**
 * What a reload (SIGHUP, `systemctl reload pve-cbtd`) may change while backups run. The new config
 * is loaded and validated like at start; a refused one changes nothing. Keys read at the moment
 * they are used apply at once: the jobs and the verify job (the scheduler is re-armed; a job that
 * is running goes on), `notify`, `logLevel`, the qemu-server paths, pvesm and qm. Keys that opened
 * something at start — the repository and its chunking, state dir, socket, log files, concurrency,
 * the socket's idle timeout — keep their running value and are named in the log as needing a
 * restart (a restart cancels running backups; a reload never does). Pure: `planReload`.
 */
import type { CbtConfig } from '../config/config-schema';

export const RESTART_KEYS = [
  'repository',
  'stateDir',
  'socketPath',
  'logDir',
  'logMaxSize',
  'logMaxFiles',
  'chunkSize',
  'compression',
  'concurrency',
  'ipcIdleTimeoutMs',
] as const satisfies readonly (keyof CbtConfig)[];

export interface ReloadPlan {
  /** The config to run with: the new one, with the restart keys kept from the running one. */
  config: CbtConfig;
  /** Changed keys that take effect now. */
  applied: string[];
  /** Changed keys that keep their running value until a restart. */
  needRestart: string[];
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export function planReload(running: CbtConfig, loaded: CbtConfig): ReloadPlan {
  const keys = [...new Set([...Object.keys(running), ...Object.keys(loaded)])].sort() as (keyof CbtConfig)[];
  const changed = keys.filter((k) => !same(running[k], loaded[k]));
  const restart = new Set<string>(RESTART_KEYS);
  const config = { ...loaded } as Record<string, unknown>;
  for (const k of RESTART_KEYS) config[k] = running[k];
  return {
    config: Object.freeze(config) as unknown as CbtConfig,
    applied: changed.filter((k) => !restart.has(k)),
    needRestart: changed.filter((k) => restart.has(k)),
  };
}
