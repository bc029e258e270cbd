/**
 * A logger that makes the real one (create-logger.ts: winston and its rotating file, ~40 ms of
 * module loading) only when something is first logged. The CLI's commands open the stores with a
 * logger, and the read-only ones (`list`, `show`) never write a line: they no longer pay for
 * winston at every start.
 *
 * Any use other than `child` makes the real logger: a log call, `on`, `transports`, `level`. A
 * `child` taken before that is itself deferred and makes its parent (then itself) on its first use,
 * so a component that takes its child logger at start-up costs nothing until it logs. `real()`
 * says whether the logger was made (only a made logger needs closing).
 */
import type { Logger } from 'winston';

export interface DeferredLogger {
  logger: Logger;
  /** The real logger, or null while nothing made it. */
  real(): Logger | null;
}

export function deferredLogger(make: () => Logger): DeferredLogger {
  let made: Logger | null = null;
  const root = (): Logger => (made ??= make());
  return { logger: deferred(root), real: () => made };
}

function deferred(resolve: () => Logger): Logger {
  let target: Logger | null = null;
  const get = (): Logger => (target ??= resolve());
  return new Proxy({} as Logger, {
    get(_shell, prop) {
      if (prop === 'child' && !target) return (meta: Record<string, unknown>) => deferred(() => get().child(meta));
      const real = get();
      const value: unknown = Reflect.get(real, prop, real);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(real) : value;
    },
    set(_shell, prop, value) {
      return Reflect.set(get(), prop, value);
    },
    has(_shell, prop) {
      return Reflect.has(get(), prop);
    },
  });
}
