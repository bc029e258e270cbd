/**
 * Fires each enabled job at the next run of its calendar event, forever, until stopped. Time comes
 * from an injected `Clock` so tests drive it with a fake one.
 *
 * - One timer per job. A timer that fires early (clock adjusted backwards) re-arms for the rest.
 * - After a run the next one is computed from max(now, that run), so a run that was missed while
 *   the host slept fires once, late, instead of once per missed slot.
 * - Delays longer than setTimeout allows (~24.8 days) are split into several timers.
 * - `onFire` is not awaited: it hands the job to the job queue, which owns concurrency and per-VM
 *   exclusion. Its errors (sync or async) are logged, never thrown into the timer.
 */
import type { Logger } from 'winston';
import { nextRun, parseCalendarEvent } from './calendar-event';

export interface Clock {
  now(): Date;
  /** Calls `fn` once after `ms`; the returned function cancels it. */
  setTimer(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => new Date(),
  setTimer: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

export interface SchedulableJob {
  readonly id: string;
  readonly schedule: string;
  readonly enabled?: boolean;
}

export interface SchedulerOptions<J extends SchedulableJob> {
  jobs: readonly J[];
  clock: Clock;
  onFire(job: J, scheduledAt: Date): void | Promise<void>;
  logger?: Logger;
}

export interface Scheduler {
  start(): void;
  stop(): void;
  /** When each enabled job runs next (null: never again); for `pve-cbt status`. */
  nextRuns(): { jobId: string; at: Date | null }[];
}

/** setTimeout's limit; longer waits are chained. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function createScheduler<J extends SchedulableJob>(opts: SchedulerOptions<J>): Scheduler {
  // Parse up front: a bad schedule fails at start, not at the first timer.
  const entries = opts.jobs
    .filter((job) => job.enabled !== false)
    .map((job) => ({ job, event: parseCalendarEvent(job.schedule), at: null as Date | null, cancel: undefined as (() => void) | undefined }));
  let running = false;

  const fire = (entry: (typeof entries)[number], at: Date): void => {
    const log = opts.logger?.child({ jobId: entry.job.id });
    log?.info('scheduled job fires', { scheduledAt: at.toISOString() });
    try {
      const r = opts.onFire(entry.job, at);
      if (r instanceof Promise) r.catch((err: unknown) => log?.error('scheduled job failed to start', { err }));
    } catch (err) {
      log?.error('scheduled job failed to start', { err });
    }
  };

  const arm = (entry: (typeof entries)[number], after: Date): void => {
    entry.at = nextRun(entry.event, after);
    if (entry.at === null) {
      opts.logger?.warn('schedule never fires again', { jobId: entry.job.id, schedule: entry.job.schedule });
      return;
    }
    wait(entry, entry.at);
  };

  const wait = (entry: (typeof entries)[number], at: Date): void => {
    const delay = at.getTime() - opts.clock.now().getTime();
    entry.cancel = opts.clock.setTimer(Math.max(0, Math.min(delay, MAX_TIMER_MS)), () => {
      entry.cancel = undefined;
      if (!running) return;
      const now = opts.clock.now();
      if (now.getTime() < at.getTime()) {
        wait(entry, at);
        return;
      }
      fire(entry, at);
      if (running) arm(entry, now.getTime() > at.getTime() ? now : at);
    });
  };

  return {
    start() {
      if (running) return;
      running = true;
      const now = opts.clock.now();
      for (const e of entries) arm(e, now);
      opts.logger?.info('scheduler started', { jobs: entries.map((e) => ({ jobId: e.job.id, next: e.at?.toISOString() ?? null })) });
    },
    stop() {
      running = false;
      for (const e of entries) {
        e.cancel?.();
        e.cancel = undefined;
      }
    },
    nextRuns: () => entries.map((e) => ({ jobId: e.job.id, at: e.at })),
  };
}
