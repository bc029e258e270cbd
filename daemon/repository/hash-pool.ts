/**
 * SHA-256 on worker threads, so that hashing chunks (1.4 GB/s per core here with SHA-NI, the
 * largest CPU cost of reading a disk) runs beside the thread that receives NBD data instead of
 * after it: a full-compare spent ~0.9 s of its 3 s in `Hash.update` on the main thread.
 *
 * Data in a SharedArrayBuffer (the NBD reader's pooled pieces) reaches a worker without a copy;
 * other buffers are copied by postMessage, which still costs far less than hashing them. Inputs
 * below `INLINE_BELOW` are hashed inline: the round trip would cost more than the hash.
 * Each job goes to the worker with the fewest outstanding. A worker is ref'd only while it has
 * work, so an idle pool never keeps the process alive; one that dies fails its jobs and is replaced.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { sha256Hex } from './digest';

const INLINE_BELOW = 64 * 1024;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');
parentPort.on('message', ({ id, data, offset, length }) => {
  const view = data instanceof SharedArrayBuffer ? new Uint8Array(data, offset, length) : data;
  parentPort.postMessage({ id, digest: crypto.createHash('sha256').update(view).digest('hex') });
});`;

interface Job {
  resolve(digest: string): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
}

export class HashPool {
  private readonly slots: (Slot | undefined)[];
  private nextId = 0;

  constructor(readonly size: number = Math.max(1, os.availableParallelism())) {
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  sha256Hex(data: Buffer): Promise<string> {
    if (data.length < INLINE_BELOW) return Promise.resolve(sha256Hex(data));
    const slot = this.leastBusy();
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const shared = data.buffer instanceof SharedArrayBuffer;
      // Recorded only once sent: if postMessage throws, no ref'd worker is left waiting for it.
      slot.worker.postMessage({ id, data: shared ? data.buffer : data, offset: data.byteOffset, length: data.length });
      slot.jobs.set(id, { resolve, reject });
      if (slot.jobs.size === 1) slot.worker.ref();
    });
  }

  /** Stops the workers; outstanding jobs fail. */
  async close(): Promise<void> {
    const workers = this.slots.filter((s): s is Slot => s !== undefined).map((s) => s.worker);
    this.slots.fill(undefined);
    await Promise.all(workers.map((w) => w.terminate()));
  }

  /** An idle worker if there is one, else a new one while the pool is not full, else the least busy. */
  private leastBusy(): Slot {
    let best: Slot | undefined;
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

  private spawn(index: number): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    const slot: Slot = { worker, jobs: new Map() };
    const fail = (err: Error): void => {
      if (this.slots[index] === slot) this.slots[index] = undefined;
      for (const job of slot.jobs.values()) job.reject(err);
      slot.jobs.clear();
    };
    worker.on('message', ({ id, digest }: { id: number; digest: string }) => {
      const job = slot.jobs.get(id);
      slot.jobs.delete(id);
      if (slot.jobs.size === 0) worker.unref();
      job?.resolve(digest);
    });
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`hash worker exited with code ${code}`)));
    this.slots[index] = slot;
    return slot;
  }
}
