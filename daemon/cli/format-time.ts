/**
 * Times as `pve-cbt` prints them for people: ISO 8601 in UTC to the second (`2026-12-05T03:00:00Z`),
 * never the locale's format, so output reads the same on every node and sorts as text. JSON keeps
 * the full ISO strings the daemon sends. Absent times print as `-`.
 */
export function formatTime(t: string | number | Date | null | undefined): string {
  if (t === null || t === undefined || t === '') return '-';
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return `${d.toISOString().slice(0, 19)}Z`;
}
