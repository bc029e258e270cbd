/**
 * `execFile` run from a worker thread, so that starting the program does not stop the caller's
 * event loop.
 *
 * Why: libuv's spawn is synchronous up to the child's execve (fork, then a blocking read on a
 * close-on-exec pipe). In the daemon, with its worker threads and a heap of 50-150 MB, that was
 * 19-46 ms per `pvesm path` on the bench machine (PVE_CBT_TRACE, docs/incremental-path.md), and
 * nothing else of the backup could run meanwhile, although the engine starts pvesm early precisely
 * so that the manifests, the writer's lock and QEMU's leftovers check overlap it. From a worker the
 * fork and the wait happen on that thread; the main thread goes on.
 *
 * The worker is one thread for the process, started by `createOffThreadExec` (the daemon does at
 * start, so its start-up is not on any backup's path), unref'd while idle so it never keeps a
 * process alive, and replaced on the next call if it died. It inherits the environment the process
 * had when it started (worker_threads' default), as a child of the main thread would have it.
 * Results and failures have execFile's shape (`killed` on the timeout, stdout/stderr as text), so a
 * caller treats both runners alike (`inThreadExec` is the plain one).
 */
import { execFile } from 'node:child_process';
import { Worker } from 'node:worker_threads';

export interface ExecOutcome {
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the program failed to start, exited non-zero, died of a signal or timed out (`killed`). */
  readonly error?: { readonly message: string; readonly killed: boolean; readonly code?: string | number | null };
}

export type ExecRunner = (file: string, args: readonly string[], opts: { readonly timeoutMs: number }) => Promise<ExecOutcome>;

/** execFile on the calling thread. */
export const inThreadExec: ExecRunner = (file, args, opts) =>
  new Promise((resolve) => {
    execFile(file, [...args], { timeout: opts.timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, ...(err ? { error: { message: err.message, killed: err.killed === true, code: err.code ?? null } } : {}) });
    });
  });

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { execFile } = require('node:child_process');
parentPort.on('message', ({ id, file, args, timeoutMs }) => {
  execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
    const error = err ? { message: err.message, killed: err.killed === true, code: err.code ?? null } : undefined;
    parentPort.postMessage({ id, stdout, stderr, error });
  });
});
`;

interface Pending {
  resolve(o: ExecOutcome): void;
  reject(err: Error): void;
}

export interface OffThreadExec {
  readonly exec: ExecRunner;
  /** Stops the worker; calls after this run on the calling thread. */
  close(): Promise<void>;
}

export function createOffThreadExec(): OffThreadExec {
  let worker: Worker | undefined;
  let closed = false;
  let nextId = 0;
  const pending = new Map<number, Pending>();

  const start = (): Worker => {
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.unref();
    const fail = (err: Error): void => {
      if (worker === w) worker = undefined;
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    w.on('message', ({ id, ...outcome }: ExecOutcome & { id: number }) => {
      const p = pending.get(id);
      pending.delete(id);
      if (pending.size === 0) w.unref();
      p?.resolve(outcome);
    });
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`exec worker exited with code ${code}`)));
    return w;
  };
  // Started now, not at the first call: its start-up (a V8 isolate) is not on a backup's path.
  worker = start();

  const exec: ExecRunner = (file, args, opts) => {
    if (closed) return inThreadExec(file, args, opts);
    const w = (worker ??= start());
    const id = ++nextId;
    return new Promise<ExecOutcome>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ id, file, args: [...args], timeoutMs: opts.timeoutMs });
    });
  };
  return {
    exec,
    async close() {
      closed = true;
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
    },
  };
}
