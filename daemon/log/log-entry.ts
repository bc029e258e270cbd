/**
 * One log record as written to the JSON-lines files (winston `json()` plus an ISO `timestamp`), and
 * its one-line human rendering shared by the journald console output and `pve-cbt log`.
 * Context fields `vmid`, `disk` and `jobId` come from child loggers
 * (`logger.child({ vmid: 101, disk: 'scsi0', jobId: 'nightly' })`) and are what `pve-cbt log` filters on.
 */
import type { LogLevel } from '../config/config-schema';

export interface LogEntry {
  level: string;
  message: string;
  timestamp?: string;
  vmid?: number;
  disk?: string;
  jobId?: string;
  [field: string]: unknown;
}

/** winston's npm levels: lower is more severe. */
export const LEVEL_PRIORITY: Readonly<Record<string, number>> = Object.freeze({
  error: 0,
  warn: 1,
  info: 2,
  http: 3,
  verbose: 4,
  debug: 5,
  silly: 6,
});

export function isAtLeast(level: string, threshold: LogLevel): boolean {
  return (LEVEL_PRIORITY[level] ?? LEVEL_PRIORITY.info) <= LEVEL_PRIORITY[threshold];
}

const COLORS: Record<string, string> = { error: '31', warn: '33', info: '32', verbose: '36', debug: '90' };
const CONTEXT_KEYS = new Set(['level', 'message', 'timestamp', 'vmid', 'disk', 'jobId', 'stack', 'service']);

function quoted(v: string): string {
  return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
}

/** Errors (as create-logger serializes them) show as `CODE: message`; the stack stays in the file. */
function fieldValue(v: unknown): string {
  if (typeof v === 'string') return quoted(v);
  const e = v as { message?: unknown; code?: unknown } | null;
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    return quoted(typeof e.code === 'string' ? `${e.code}: ${e.message}` : e.message);
  }
  return JSON.stringify(v) ?? String(v);
}

export interface FormatLineOptions {
  /** journald stamps lines itself, so the console output leaves the timestamp out. */
  timestamp?: boolean;
  colors?: boolean;
}

/** `2026-11-25T02:00:01.000Z info  vm=101 disk=scsi0 job=nightly backup done bytesRead=1048576` */
export function formatLogLine(entry: LogEntry, opts: FormatLineOptions = {}): string {
  const parts: string[] = [];
  if (opts.timestamp && entry.timestamp) parts.push(entry.timestamp);
  const level = entry.level.padEnd(5);
  parts.push(opts.colors && COLORS[entry.level] ? `\x1b[${COLORS[entry.level]}m${level}\x1b[0m` : level);
  if (entry.vmid !== undefined) parts.push(`vm=${entry.vmid}`);
  if (entry.disk !== undefined) parts.push(`disk=${entry.disk}`);
  if (entry.jobId !== undefined) parts.push(`job=${entry.jobId}`);
  parts.push(String(entry.message).replace(/\s*\n\s*/g, ' '));
  for (const [k, v] of Object.entries(entry)) {
    if (!CONTEXT_KEYS.has(k) && v !== undefined) parts.push(`${k}=${fieldValue(v)}`);
  }
  return parts.join(' ');
}
