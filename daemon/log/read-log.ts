/**
 * Reading the daemon's JSON-lines logs back (`pve-cbt log`). Files are `pve-cbt-YYYY-MM-DD.log`
 * with same-day size rotations `….log.1`, `….log.2` (see create-logger.ts); sorted by date then
 * rotation number they are in write order. Lines that are not JSON objects (a half-written last
 * line, foreign text) are skipped. Filtering is pure (`matchesFilter`); `followLog` polls the
 * directory, so it also picks up files created by rotation while it runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { LogLevel } from '../config/config-schema';
import { LOG_FILE_PREFIX, LOG_FILE_SUFFIX } from './create-logger';
import { isAtLeast, type LogEntry } from './log-entry';
import { LogSinceInvalidError } from './log-errors';

export interface LogFilter {
  vmid?: number;
  jobId?: string;
  /** Entries of one queue task (`taskId`, as `pve-cbt task log` shows them). */
  taskId?: string;
  since?: Date;
  /** Show this level and more severe ones. */
  level?: LogLevel;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `30m`, `2h`, `1d`, `1w`, `90s` (before `now`), or an ISO 8601 date/time. */
export function parseSince(text: string, now: Date): Date {
  const m = /^(\d+)\s*([smhdw])$/i.exec(text.trim());
  if (m) return new Date(now.getTime() - Number(m[1]) * UNIT_MS[m[2].toLowerCase()]);
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const d = new Date(text);
    if (!Number.isNaN(d.getTime())) return d;
  }
  throw LogSinceInvalidError({ since: text, hint: "use a duration like '30m', '2h', '1d' or an ISO time like '2026-11-25T02:00'" });
}

export function matchesFilter(entry: LogEntry, filter: LogFilter): boolean {
  if (filter.vmid !== undefined && entry.vmid !== filter.vmid) return false;
  if (filter.jobId !== undefined && entry.jobId !== filter.jobId) return false;
  if (filter.taskId !== undefined && entry.taskId !== filter.taskId) return false;
  if (filter.level !== undefined && !isAtLeast(entry.level, filter.level)) return false;
  if (filter.since !== undefined) {
    const t = entry.timestamp === undefined ? NaN : Date.parse(entry.timestamp);
    if (!(t >= filter.since.getTime())) return false;
  }
  return true;
}

export function parseLogLine(line: string): LogEntry | null {
  if (!line.startsWith('{')) return null;
  try {
    const v = JSON.parse(line) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
    const e = v as LogEntry;
    return typeof e.level === 'string' && e.message !== undefined ? e : null;
  } catch {
    return null;
  }
}

const FILE_RE = new RegExp(`^${LOG_FILE_PREFIX}(\\d{4}-\\d{2}-\\d{2})${LOG_FILE_SUFFIX.replace('.', '\\.')}(?:\\.(\\d+))?$`);

/** Log files oldest first; an absent directory has none. */
export function listLogFiles(logDir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(logDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .map((name) => ({ name, m: FILE_RE.exec(name) }))
    .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
    .sort((a, b) => a.m[1].localeCompare(b.m[1]) || Number(a.m[2] ?? 0) - Number(b.m[2] ?? 0))
    .map((f) => path.join(logDir, f.name));
}

export function filterLines(lines: Iterable<string>, filter: LogFilter): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of lines) {
    const e = parseLogLine(line);
    if (e && matchesFilter(e, filter)) out.push(e);
  }
  return out;
}

export function readLog(logDir: string, filter: LogFilter = {}): LogEntry[] {
  return listLogFiles(logDir).flatMap((file) => filterLines(fs.readFileSync(file, 'utf8').split('\n'), filter));
}

export interface FollowLogOptions {
  logDir: string;
  filter?: LogFilter;
  onEntry(entry: LogEntry): void;
  /** Stops following; the promise then resolves. */
  signal: AbortSignal;
  pollMs?: number;
}

/**
 * Emits every matching entry already in the files, then new ones as they are written, until
 * `signal` aborts. Offsets are kept per file; a file that shrank was replaced and is re-read.
 */
export async function followLog(opts: FollowLogOptions): Promise<void> {
  const filter = opts.filter ?? {};
  const state = new Map<string, { offset: number; rest: string; decoder: StringDecoder }>();
  const poll = (): void => {
    const files = listLogFiles(opts.logDir);
    for (const known of state.keys()) if (!files.includes(known)) state.delete(known); // expired by maxFiles
    for (const file of files) {
      let s = state.get(file);
      if (!s) state.set(file, (s = { offset: 0, rest: '', decoder: new StringDecoder('utf8') }));
      const size = fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
      if (size < s.offset) [s.offset, s.rest, s.decoder] = [0, '', new StringDecoder('utf8')];
      if (size === s.offset) continue;
      const fd = fs.openSync(file, 'r');
      try {
        const buf = Buffer.alloc(size - s.offset);
        const n = fs.readSync(fd, buf, 0, buf.length, s.offset);
        s.offset += n;
        const lines = (s.rest + s.decoder.write(buf.subarray(0, n))).split('\n');
        s.rest = lines.pop() ?? '';
        for (const e of filterLines(lines, filter)) opts.onEntry(e);
      } finally {
        fs.closeSync(fd);
      }
    }
  };
  while (!opts.signal.aborted) {
    poll();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, opts.pollMs ?? 500);
      function done(): void {
        clearTimeout(timer);
        opts.signal.removeEventListener('abort', done);
        resolve();
      }
      opts.signal.addEventListener('abort', done, { once: true });
    });
  }
}
