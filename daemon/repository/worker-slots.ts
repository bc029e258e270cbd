/**
 * The thread pool under the repository's two worker kinds, blob-workers.ts and
 * run-read-workers.ts: up to `size` threads running one worker source (`eval: true`), started on
 * demand, each with its outstanding jobs by id.
 *
 * - A job goes to an idle thread, else to a new one while the pool is not full, else to the one
 *   with the fewest outstanding.
 * - A thread is ref'd only while it has work, so an idle pool never keeps the process alive.
 * - A thread that fails (an uncaught error, a reply that cannot be deserialized) is retired and
 *   replaced by the next job's. Its jobs fail only once the thread has stopped: a job may hold a
 *   view of the caller's memory (a pooled chunk buffer), which goes back to its pool, and is
 *   reused, as soon as the job settles.
 *
 * What a reply means is the owner's: `answer` gets each reply with the job it settles.
 */
import { Worker } from 'node:worker_threads';
import { RepoWorkerExitedError } from './repository-errors';

export interface PoolJob {
  reject(err: Error): void;
}

export interface WorkerSlot<J extends PoolJob> {
  readonly worker: Worker;
  readonly jobs: Map<number, J>;
}

export class WorkerSlots<J extends PoolJob, R extends { id: number }> {
  private readonly slots: (WorkerSlot<J> | undefined)[];
  private nextId = 0;

  constructor(
    size: number,
    private readonly source: string,
    private readonly workerData: unknown,
    private readonly answer: (job: J, reply: R) => void,
  ) {
    this.slots = new Array<WorkerSlot<J> | undefined>(size).fill(undefined);
  }

  /** Sends the message `make(id)` to `on` or the least busy thread; `job` is settled by `answer`, or fails when its thread goes. */
  send(make: (id: number) => unknown, job: J, on?: WorkerSlot<J>, transfer?: ArrayBuffer[]): void {
    const slot = on ?? this.leastBusy();
    const id = this.nextId++;
    // Recorded only once sent: if postMessage throws, no ref'd thread is left waiting for it.
    slot.worker.postMessage(make(id), transfer);
    slot.jobs.set(id, job);
    if (slot.jobs.size === 1) slot.worker.ref();
  }

  /** The threads running now. */
  live(): WorkerSlot<J>[] {
    return this.slots.filter((s): s is WorkerSlot<J> => s !== undefined);
  }

  /** Stops the threads; outstanding jobs fail. */
  async close(): Promise<void> {
    const workers = this.live().map((s) => s.worker);
    this.slots.fill(undefined);
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private leastBusy(): WorkerSlot<J> {
    let best: WorkerSlot<J> | undefined;
    let free = -1;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (!s) {
        if (free < 0) free = i;
      } else if (!best || s.jobs.size < best.jobs.size) best = s;
    }
    if (best && (best.jobs.size === 0 || free < 0)) return best;
    return this.spawn(free);
  }

  private spawn(index: number): WorkerSlot<J> {
    const worker = new Worker(this.source, { eval: true, workerData: this.workerData });
    worker.unref();
    const slot: WorkerSlot<J> = { worker, jobs: new Map() };
    let reason: Error | undefined;
    const retire = (err: Error): void => {
      reason ??= err;
      if (this.slots[index] === slot) this.slots[index] = undefined;
      void worker.terminate();
    };
    worker.on('message', (reply: R) => {
      const job = slot.jobs.get(reply.id);
      slot.jobs.delete(reply.id);
      if (slot.jobs.size === 0) worker.unref();
      if (job) this.answer(job, reply);
    });
    worker.on('error', retire);
    // A reply that cannot be deserialized would otherwise leave its job waiting forever.
    worker.on('messageerror', retire);
    worker.on('exit', (code) => {
      if (this.slots[index] === slot) this.slots[index] = undefined;
      const err = reason ?? RepoWorkerExitedError({ exitCode: code });
      for (const job of slot.jobs.values()) job.reject(err);
      slot.jobs.clear();
    });
    this.slots[index] = slot;
    return slot;
  }
}
