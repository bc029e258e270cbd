/**
 * Progress of long operations (backup, restore, verify, gc) in bytes, for a person watching:
 * - 'bar' on a TTY: a cli-progress bar with bytes done/total, throughput and ETA;
 * - 'lines' otherwise (pipes, journald, CI): one plain line at most every `intervalMs` (5 s) and one
 *   at 100 %, so logs stay readable;
 * - 'silent' with --json, where stdout belongs to the JSON result.
 * A backup also reports reuse, like PBS's "reused N %": of the chunk bytes the repository took so
 * far, the share it already had (unchanged, known digest, zero). Shown on the bar, in every line and
 * in the final line once a backup reported it.
 * Throughput is measured over the last 10 s, so a slow start does not spoil the ETA forever.
 * Time comes from `now()` so the line mode is tested without timers.
 */
import type { SingleBar } from 'cli-progress';

export type ProgressMode = 'bar' | 'lines' | 'silent';

export interface ProgressOptions {
  label: string;
  /** Total bytes; 0 when not known yet (update it later). */
  total: number;
  stream: NodeJS.WritableStream & { isTTY?: boolean };
  /** Default: 'silent' with json, 'bar' on a TTY, 'lines' otherwise. */
  mode?: ProgressMode;
  json?: boolean;
  intervalMs?: number;
  now?: () => number;
  /**
   * What `total` counts: bytes (default) or items (gc's backups and shards), shown as plain numbers
   * and without the final `N in Ts (rate)` line.
   */
  unit?: 'bytes' | 'items';
}

/** Of the chunk bytes the repository took so far, those it already had. */
export interface ReuseFigures {
  chunkBytes: number;
  reusedBytes: number;
}

export interface ProgressReporter {
  update(done: number, total?: number, reuse?: ReuseFigures): void;
  /**
   * Ends the display; prints the final line in line mode. Idempotent. `'failed'` ends it without
   * the final line: the error says what happened, not a misleading `0 B in 0s`.
   */
  finish(outcome?: 'done' | 'failed'): void;
}

const WINDOW_MS = 10_000;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) [v, i] = [v / 1024, i + 1];
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[i]}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `reused 42%` (floor; `100%` only when everything was reused), or '' before any chunk settled. */
export function formatReuse(r: ReuseFigures | undefined): string {
  if (!r || r.chunkBytes <= 0) return '';
  const pct = r.reusedBytes >= r.chunkBytes ? 100 : Math.floor((r.reusedBytes / r.chunkBytes) * 100);
  return `reused ${pct}%`;
}

export function createProgressReporter(opts: ProgressOptions): ProgressReporter {
  const mode: ProgressMode = opts.mode ?? (opts.json ? 'silent' : opts.stream.isTTY ? 'bar' : 'lines');
  const now = opts.now ?? Date.now;
  const intervalMs = opts.intervalMs ?? 5000;
  const started = now();
  let total = opts.total;
  let done = 0;
  let finished = false;
  let lastLine = started;
  let printedComplete = false;
  let reuse: ReuseFigures | undefined;
  let reuseAtComplete = '';
  const reuseSuffix = (sep: string): string => {
    const r = formatReuse(reuse);
    return r ? `${sep}${r}` : '';
  };
  const samples: { t: number; done: number }[] = [{ t: started, done: 0 }];
  const items = opts.unit === 'items';
  const amount = (n: number): string => (items ? String(n) : formatBytes(n));

  const rate = (): number => {
    const t = now();
    while (samples.length > 1 && t - samples[0].t > WINDOW_MS) samples.shift();
    const first = samples[0];
    return t > first.t ? ((done - first.done) * 1000) / (t - first.t) : 0;
  };
  const stats = () => {
    const r = rate();
    const eta = total > 0 && r > 0 ? ((total - done) / r) * 1000 : Infinity;
    return {
      bytes: total > 0 ? `${amount(done)}/${amount(total)}` : amount(done),
      speed: `${items ? r.toFixed(1) : formatBytes(Math.round(r))}/s`,
      eta: formatDuration(eta),
      percent: total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : undefined,
    };
  };

  let bar: SingleBar | undefined;
  if (mode === 'bar') {
    // Loaded only for a bar (a terminal): --json and piped runs do not pay for it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { SingleBar: Bar } = require('cli-progress') as typeof import('cli-progress');
    bar = new Bar({
      stream: opts.stream,
      format: `${opts.label} [{bar}] {percentage}% | {bytes} | {speed} | ETA {etaText}{reuse}`,
      // A short bar leaves room for the figures on an 80- or 100-column terminal.
      barsize: 20,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
      fps: 5,
    });
    bar.start(Math.max(total, 1), 0, { ...stats(), etaText: '?', reuse: '' });
  }

  const line = (): void => {
    const s = stats();
    const pct = s.percent === undefined ? '' : ` (${s.percent}%)`;
    opts.stream.write(`${opts.label}: ${s.bytes}${pct}, ${s.speed}, ETA ${s.eta}${reuseSuffix(', ')}\n`);
  };

  return {
    update(value: number, newTotal?: number, newReuse?: ReuseFigures): void {
      if (finished) return;
      done = value;
      if (newReuse) reuse = newReuse;
      if (newTotal !== undefined) total = newTotal;
      samples.push({ t: now(), done });
      if (mode === 'bar' && bar) {
        if (newTotal !== undefined) bar.setTotal(Math.max(total, 1));
        const s = stats();
        bar.update(done, { ...s, etaText: s.eta, reuse: reuseSuffix(' | ') });
      } else if (mode === 'lines') {
        const complete = total > 0 && done >= total;
        if (complete ? !printedComplete : now() - lastLine >= intervalMs) {
          line();
          lastLine = now();
          printedComplete = complete;
          reuseAtComplete = formatReuse(reuse);
        }
      }
    },
    finish(outcome: 'done' | 'failed' = 'done'): void {
      if (finished) return;
      finished = true;
      if (bar) bar.stop();
      // The final reuse figure comes once every insert settled, after the 100 % line. Counted items
      // have no meaningful rate (the command's own summary says what was done), and a failed run
      // ends without a misleading `0 B in 0s`.
      if (mode === 'lines' && (!printedComplete || formatReuse(reuse) !== reuseAtComplete) && outcome === 'done' && !items) {
        const elapsed = now() - started;
        const avg = elapsed > 0 ? (done * 1000) / elapsed : 0;
        opts.stream.write(`${opts.label}: ${formatBytes(done)} in ${formatDuration(elapsed)} (${formatBytes(Math.round(avg))}/s)${reuseSuffix(', ')}\n`);
      }
    },
  };
}
