/**
 * Progress in the daemon's log at a calm pace: one `info` entry at most every `intervalMs`
 * (default 30 s) plus one when done reaches total, so a long backup leaves a readable trail in the
 * journal without flooding it. Pass a child logger carrying vmid/disk/jobId; the entry adds
 * `done`, `total`, `percent` and `bytesPerSecond` (average since the first report).
 */
import type { Logger } from 'winston';

export interface ProgressLogOptions {
  logger: Logger;
  message?: string;
  intervalMs?: number;
  now?: () => number;
}

export function createProgressLog(opts: ProgressLogOptions): (p: { done: number; total: number }) => void {
  const now = opts.now ?? Date.now;
  const intervalMs = opts.intervalMs ?? 30_000;
  const started = now();
  let last = started;
  let completeLogged = false;
  return ({ done, total }) => {
    const t = now();
    const complete = total > 0 && done >= total;
    if (complete ? completeLogged : t - last < intervalMs) return;
    last = t;
    completeLogged = complete;
    opts.logger.info(opts.message ?? 'progress', {
      done,
      total,
      percent: total > 0 ? Math.floor((done / total) * 100) : undefined,
      bytesPerSecond: t > started ? Math.round((done * 1000) / (t - started)) : undefined,
    });
  };
}
