/**
 * The one way `pve-cbt` shows a point in time, to people and in JSON: ISO 8601 in UTC with a `Z`,
 * whole seconds (`2026-12-05T03:00:00Z`), as backup ids and PBS show times. Never the locale's
 * format (`12/5/2026, 3:00:00 AM` reads differently on every node and sorts wrong). Log entries
 * keep their milliseconds (`{ ms: true }`), since several happen within one second.
 * Input is a Date, epoch milliseconds or a string any `Date` parses (an ISO time from a manifest,
 * the catalog or a log line); a value that is not a time is shown as given, never as `Invalid Date`.
 * An absent time (null, undefined, '') prints as `-`, as in the task and status tables.
 */
export interface FormatTimeOptions {
  /** Keep milliseconds (`…T03:00:00.123Z`). */
  ms?: boolean;
}

export function formatTime(t: Date | number | string | null | undefined, opts: FormatTimeOptions = {}): string {
  if (t === null || t === undefined || t === '') return '-';
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const iso = d.toISOString();
  return opts.ms ? iso : iso.replace(/\.\d{3}Z$/, 'Z');
}

/** `formatTime` for a value that may be absent: `-` in tables, or the given placeholder. */
export function formatTimeOr(t: Date | number | string | null | undefined, absent = '-'): string {
  return t === null || t === undefined || t === '' ? absent : formatTime(t);
}
