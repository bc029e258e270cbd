/**
 * The daemon's one queue for work on VMs (backups, restores, verifies), shared by the CLI and the
 * scheduler so both obey the same rules:
 *
 * - At most one job per VM runs at a time: a bitmap, an NBD export and the QMP socket belong to one
 *   job. A second request for a busy VM WAITS behind it (FIFO per VM). With `join: true` it instead
 *   JOINS a job of the same VM and kind that is still queued (not started): it gets that job's
 *   handle, so e.g. a scheduled backup arriving while an identical one waits adds nothing.
 *   A running job is never joined: its data was read before the request came.
 * - At most `concurrency` jobs run overall. When a slot frees, the oldest queued job whose VM is
 *   idle starts (so one busy VM does not block the others).
 * - `cancel()` removes a queued job, or aborts a running one through its AbortSignal; the job must
 *   stop and clean up (a cancelled backup leaves no manifest and keeps its bitmap).
 * - `cancelAll()` (SIGTERM) closes the queue, cancels everything and resolves when every running
 *   job has settled, so the daemon exits only after cleanup.
 *
 * A handle's `promise` may be ignored without an unhandled rejection. Queue entries are "tasks" in
 * logs (`taskId`) to keep them apart from configured jobs (`jobId`).
 */
import type { Logger } from 'winston';
import { JobCancelledError, JobQueueClosedError } from './job-errors';

export interface JobProgress {
  done: number;
  total: number;
  phase?: string;
  disk?: string;
  /** A live restore's mirror frame: the bytes moved of `disk` (done/total are over all its disks). */
  diskDone?: number;
  diskTotal?: number;
  /** Backups: chunk bytes the repository took so far, and of those the ones it already had. */
  chunkBytes?: number;
  reusedBytes?: number;
  /** A step a person reads (a live restore's `VM 9101 runs on the backup`), sent as its own frame. */
  message?: string;
}

export type ProgressFn = (p: JobProgress) => void;

export interface JobSpec<R> {
  vmid: number;
  /** 'backup', 'restore', 'verify', …; joins match on vmid + kind. */
  kind: string;
  /** `taskId` is the handle's id, for logs and records made inside the task. */
  run(signal: AbortSignal, progress: ProgressFn, taskId: string): Promise<R>;
  join?: boolean;
  /** Extra log context, e.g. `{ jobId: 'nightly' }` for scheduled runs. */
  meta?: Record<string, unknown>;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobHandle<R> {
  readonly id: string;
  readonly vmid: number;
  readonly kind: string;
  readonly state: JobState;
  readonly queuedAt: Date;
  readonly startedAt: Date | undefined;
  /** Last reported progress. */
  readonly progress: JobProgress | undefined;
  /** Resolves with run()'s result; rejects with its error or CBT_JOB_CANCELLED. */
  readonly promise: Promise<R>;
  onProgress(fn: ProgressFn): () => void;
  cancel(reason?: string): void;
}

export interface JobQueue {
  enqueue<R>(spec: JobSpec<R>): JobHandle<R>;
  /** Running jobs first, then queued ones in start order. */
  list(): JobHandle<unknown>[];
  get(id: string): JobHandle<unknown> | undefined;
  cancelAll(reason?: string): Promise<void>;
}

export interface JobQueueOptions {
  /** Global limit of running jobs (config `concurrency`). */
  concurrency: number;
  logger?: Logger;
  /** Ids for handles; default `task-1`, `task-2`, … per queue. */
  newId?: () => string;
}

interface Entry {
  handle: JobHandle<unknown>;
  spec: JobSpec<unknown>;
  state: JobState;
  startedAt?: Date;
  progress?: JobProgress;
  listeners: Set<ProgressFn>;
  abort: AbortController;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  settled?: Promise<void>;
}

export function createJobQueue(opts: JobQueueOptions): JobQueue {
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${opts.concurrency}`);
  let counter = 0;
  const newId = opts.newId ?? (() => `task-${++counter}`);
  const queued: Entry[] = [];
  const running = new Map<string, Entry>();
  const busyVms = new Set<number>();
  let closed = false;

  const logFor = (e: Entry) => opts.logger?.child({ vmid: e.handle.vmid, taskId: e.handle.id, kind: e.handle.kind, ...e.spec.meta });

  const cancelledError = (e: Entry, reason: string) => JobCancelledError({ taskId: e.handle.id, vmid: e.handle.vmid, kind: e.handle.kind, reason });

  const pump = (): void => {
    for (let i = 0; i < queued.length && running.size < opts.concurrency; ) {
      const e = queued[i];
      if (busyVms.has(e.handle.vmid)) {
        i++;
        continue;
      }
      queued.splice(i, 1);
      start(e);
    }
  };

  const start = (e: Entry): void => {
    e.state = 'running';
    e.startedAt = new Date();
    running.set(e.handle.id, e);
    busyVms.add(e.handle.vmid);
    const log = logFor(e);
    // `task …` (kind in the context): the work itself logs `backup started` / `backup finished`.
    log?.info('task started');
    const progress: ProgressFn = (p) => {
      e.progress = p;
      for (const fn of e.listeners) fn(p);
    };
    e.settled = (async () => {
      try {
        const result = await e.spec.run(e.abort.signal, progress, e.handle.id);
        e.state = 'done';
        log?.info('task finished', { durationMs: Date.now() - (e.startedAt?.getTime() ?? 0) });
        e.resolve(result);
      } catch (err) {
        e.state = e.abort.signal.aborted ? 'cancelled' : 'failed';
        if (e.state === 'cancelled') log?.warn('task cancelled', { err });
        else log?.error('task failed', { err });
        e.reject(err);
      } finally {
        running.delete(e.handle.id);
        busyVms.delete(e.handle.vmid);
        pump();
      }
    })();
  };

  const cancel = (e: Entry, reason: string): void => {
    if (e.state === 'queued') {
      queued.splice(queued.indexOf(e), 1);
      e.state = 'cancelled';
      logFor(e)?.info(`${e.handle.kind} removed from the queue`, { reason });
      e.reject(cancelledError(e, reason));
    } else if (e.state === 'running' && !e.abort.signal.aborted) {
      e.abort.abort(cancelledError(e, reason));
    }
  };

  return {
    enqueue<R>(spec: JobSpec<R>): JobHandle<R> {
      if (closed) throw JobQueueClosedError({ vmid: spec.vmid, kind: spec.kind });
      if (spec.join) {
        const twin = queued.find((q) => q.handle.vmid === spec.vmid && q.handle.kind === spec.kind);
        if (twin) return twin.handle as JobHandle<R>;
      }
      let resolve!: (v: unknown) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<unknown>((res, rej) => {
        [resolve, reject] = [res, rej];
      });
      promise.catch(() => undefined); // callers may ignore the outcome
      const id = newId();
      const queuedAt = new Date();
      // The handle reads live state from its entry.
      const entry: Entry = {
        spec: spec as JobSpec<unknown>,
        state: 'queued',
        listeners: new Set(),
        abort: new AbortController(),
        resolve,
        reject,
        handle: undefined as unknown as JobHandle<unknown>,
      };
      entry.handle = {
        id,
        vmid: spec.vmid,
        kind: spec.kind,
        queuedAt,
        promise,
        get state() {
          return entry.state;
        },
        get startedAt() {
          return entry.startedAt;
        },
        get progress() {
          return entry.progress;
        },
        onProgress(fn) {
          entry.listeners.add(fn);
          return () => entry.listeners.delete(fn);
        },
        cancel: (reason = 'cancelled by request') => cancel(entry, reason),
      };
      queued.push(entry);
      logFor(entry)?.info(`${spec.kind} queued`, { waitingFor: busyVms.has(spec.vmid) ? 'vm' : running.size >= opts.concurrency ? 'slot' : undefined });
      pump();
      return entry.handle as JobHandle<R>;
    },
    list: () => [...running.values(), ...queued].map((e) => e.handle),
    get: (id) => (running.get(id) ?? queued.find((q) => q.handle.id === id))?.handle,
    async cancelAll(reason = 'the daemon is stopping') {
      closed = true;
      for (const e of [...queued]) cancel(e, reason);
      const settling = [...running.values()].map((e) => {
        cancel(e, reason);
        return e.settled;
      });
      await Promise.all(settling);
    },
  };
}
