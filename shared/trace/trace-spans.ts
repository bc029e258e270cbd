/**
 * Timing spans for measuring one path end to end across processes (the CLI, the daemon, hooks), as
 * `bench/incremental-path.ts` and docs/incremental-path.md use them.
 *
 * Off unless the environment names a file in `PVE_CBT_TRACE`: then every span is appended to it as
 * one JSON line `{"pid","name","start","ms"}`, `start` in epoch milliseconds (microsecond precision,
 * `performance.timeOrigin + performance.now()`, so lines of different processes sort on one time
 * line). While off, a span costs one check and the wrapped function runs as it would.
 * Appending is synchronous and unbuffered (O_APPEND, one write per line), so lines of concurrent
 * processes never interleave and a process that exits at once loses none.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

const file = process.env.PVE_CBT_TRACE || undefined;

export function traceOn(): boolean {
  return file !== undefined;
}

/** Now, in epoch milliseconds with sub-millisecond precision. */
export function traceNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Records a span that started at `start` (traceNow()) and ends now. */
export function traceSince(name: string, start: number, extra?: Record<string, unknown>): void {
  if (!file) return;
  const ms = traceNow() - start;
  try {
    fs.appendFileSync(file, `${JSON.stringify({ pid: process.pid, name, start: Number(start.toFixed(3)), ms: Number(ms.toFixed(3)), ...extra })}\n`);
  } catch {
    // a trace is a measurement aid; it never fails the work it measures
  }
}

/** Runs `fn` and records its span (also when it throws). */
export async function traced<T>(name: string, fn: () => Promise<T>, extra?: Record<string, unknown>): Promise<T> {
  if (!file) return fn();
  const start = traceNow();
  try {
    return await fn();
  } finally {
    traceSince(name, start, extra);
  }
}

/** `traced` for synchronous work. */
export function tracedSync<T>(name: string, fn: () => T, extra?: Record<string, unknown>): T {
  if (!file) return fn();
  const start = traceNow();
  try {
    return fn();
  } finally {
    traceSince(name, start, extra);
  }
}
