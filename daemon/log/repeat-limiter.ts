/**
 * Rate limit for repeated identical log entries (pure, no timers: the caller passes the time).
 *
 * Entries are grouped by a key (create-logger.ts uses level, message and error code). In each
 * interval the first `burst` entries of a key pass; the rest are counted, and `flush` at the end of
 * the interval returns one summary per key that dropped anything ("suppressed N similar"). A flood
 * of garbage on the socket thus writes at most `burst` lines plus one summary per kind of warning
 * and interval, however many messages it holds. Keys are forgotten after an interval without an
 * entry, and at most `maxKeys` are tracked; beyond that new keys are counted under one overflow key,
 * so the limiter's own memory stays bounded too.
 */
export interface RepeatLimiterOptions {
  /** Entries per key and interval that pass (default 10). */
  burst?: number;
  /** Length of an interval in ms (default 60 s). */
  intervalMs?: number;
  /** Most distinct keys tracked at once (default 1000). */
  maxKeys?: number;
}

export interface Suppressed {
  key: string;
  /** The first entry of the key in this interval, for the summary line. */
  sample: Record<string, unknown>;
  suppressed: number;
}

interface KeyState {
  windowStart: number;
  passed: number;
  suppressed: number;
  sample: Record<string, unknown>;
}

export const OVERFLOW_KEY = '(other)';

export class RepeatLimiter {
  readonly burst: number;
  readonly intervalMs: number;
  private readonly maxKeys: number;
  private readonly keys = new Map<string, KeyState>();

  constructor(opts: RepeatLimiterOptions = {}) {
    this.burst = opts.burst ?? 10;
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.maxKeys = opts.maxKeys ?? 1000;
  }

  /** True when the entry may be written now. */
  admit(key: string, sample: Record<string, unknown>, now: number): boolean {
    let k = this.keys.get(key);
    if (!k && this.keys.size >= this.maxKeys) {
      key = OVERFLOW_KEY;
      k = this.keys.get(key);
      if (!k) {
        k = { windowStart: now, passed: this.burst, suppressed: 0, sample };
        this.keys.set(key, k);
      }
    }
    if (!k) {
      k = { windowStart: now, passed: 0, suppressed: 0, sample };
      this.keys.set(key, k);
    }
    if (k.passed < this.burst) {
      k.passed++;
      return true;
    }
    k.suppressed++;
    return false;
  }

  /** Summaries of the intervals that ended by `now`; those keys start a fresh interval. */
  flush(now: number): Suppressed[] {
    const out: Suppressed[] = [];
    for (const [key, k] of this.keys) {
      if (now - k.windowStart < this.intervalMs) continue;
      if (k.suppressed > 0) out.push({ key, sample: k.sample, suppressed: k.suppressed });
      if (k.passed === 0 && k.suppressed === 0) this.keys.delete(key);
      else Object.assign(k, { windowStart: now, passed: 0, suppressed: 0 });
    }
    return out;
  }

  get trackedKeys(): number {
    return this.keys.size;
  }
}
