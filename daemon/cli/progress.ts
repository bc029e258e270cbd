/**
 * Progress of long operations (backup, restore, verify, gc) in bytes, for a person watching:
 * - 'bar' on a TTY: a cli-progress bar with bytes done/total, throughput and ETA;
 * - 'lines' otherwise (pipes, journald, CI): one plain line at most every `intervalMs` (5 s) and one
 *   at 100 %, so logs stay readable;
 * - 'silent' with --json, where stdout belongs to the JSON result.
 * Throughput is measured over the last 10 s, so a slow start does not spoil the ETA forever.
 * Time comes from `now()` so the line mode is tested without timers.
 */
import { SingleBar } from 'cli-progress';

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

export interface ProgressReporter {
  update(done: number, total?: number): void;
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
    bar = new SingleBar({
      stream: opts.stream,
      format: `${opts.label} [{bar}] {percentage}% | {bytes} | {speed} | ETA {etaText}`,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
      fps: 5,
    });
    bar.start(Math.max(total, 1), 0, { ...stats(), etaText: '?' });
  }

  const line = (): void => {
    const s = stats();
    const pct = s.percent === undefined ? '' : ` (${s.percent}%)`;
    opts.stream.write(`${opts.label}: ${s.bytes}${pct}, ${s.speed}, ETA ${s.eta}\n`);
  };

  return {
    update(value: number, newTotal?: number): void {
      if (finished) return;
      done = value;
      if (newTotal !== undefined) total = newTotal;
      samples.push({ t: now(), done });
      if (mode === 'bar' && bar) {
        if (newTotal !== undefined) bar.setTotal(Math.max(total, 1));
        const s = stats();
        bar.update(done, { ...s, etaText: s.eta });
      } else if (mode === 'lines') {
        const complete = total > 0 && done >= total;
        if (complete ? !printedComplete : now() - lastLine >= intervalMs) {
          line();
          lastLine = now();
          printedComplete = complete;
        }
      }
    },
    finish(outcome: 'done' | 'failed' = 'done'): void {
      if (finished) return;
      finished = true;
      if (bar) bar.stop();
      // Counted items have no meaningful rate; the command's own summary says what was done.
      if (mode === 'lines' && !printedComplete && outcome === 'done' && !items) {
        const elapsed = now() - started;
        const avg = elapsed > 0 ? (done * 1000) / elapsed : 0;
        opts.stream.write(`${opts.label}: ${formatBytes(done)} in ${formatDuration(elapsed)} (${formatBytes(Math.round(avg))}/s)\n`);
      }
    },
  };
}
