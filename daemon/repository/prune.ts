/**
 * Retention (pure): which backups of one VM to keep, with Proxmox Backup Server's semantics.
 *
 * Backups are considered newest first. The options are applied in the order keep-last, hourly,
 * daily, weekly, monthly, yearly. Each option keeps the newest backup of each of its N newest
 * periods (hour, day, ISO week, month, year); a backup already kept by an earlier option counts for
 * its period (that period is not filled again), and a backup that an option passed over because
 * its period was already filled is marked for removal and no later option looks at it again.
 * Whatever no option kept is removed. With no option set, everything is kept.
 * Periods are computed in UTC (PBS uses the server's local time zone).
 */
export interface PruneOptions {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
}

export interface PruneMark {
  id: string;
  keep: boolean;
  /** 'keep-last', 'keep-daily', ..., 'keep-all' (no option set) or 'remove'. */
  reason: string;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** ISO 8601 week-numbering year and week of a UTC date, as 'GGGG/VV'. */
export function isoWeek(t: Date): string {
  const d = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86400000 + 1) / 7);
  return `${d.getUTCFullYear()}/${pad(week)}`;
}

const SELECTORS: [keyof PruneOptions, string, (t: Date, id: string) => string][] = [
  ['keepLast', 'keep-last', (_t, id) => id],
  ['keepHourly', 'keep-hourly', (t) => `${t.getUTCFullYear()}/${pad(t.getUTCMonth() + 1)}/${pad(t.getUTCDate())}/${pad(t.getUTCHours())}`],
  ['keepDaily', 'keep-daily', (t) => `${t.getUTCFullYear()}/${pad(t.getUTCMonth() + 1)}/${pad(t.getUTCDate())}`],
  ['keepWeekly', 'keep-weekly', (t) => isoWeek(t)],
  ['keepMonthly', 'keep-monthly', (t) => `${t.getUTCFullYear()}/${pad(t.getUTCMonth() + 1)}`],
  ['keepYearly', 'keep-yearly', (t) => `${t.getUTCFullYear()}`],
];

export function computePrune(backups: { id: string; time: Date }[], opts: PruneOptions): PruneMark[] {
  const list = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
  const marks = new Map<string, PruneMark>();
  const active = SELECTORS.filter(([key]) => (opts[key] ?? 0) > 0);
  if (!active.length) return list.map((b) => ({ id: b.id, keep: true, reason: 'keep-all' }));

  for (const [key, reason, select] of active) {
    const keep = opts[key] ?? 0;
    const alreadyIncluded = new Set<string>();
    for (const b of list) if (marks.get(b.id)?.keep) alreadyIncluded.add(select(b.time, b.id));
    const included = new Set<string>();
    for (const b of list) {
      if (marks.has(b.id)) continue;
      const sel = select(b.time, b.id);
      if (alreadyIncluded.has(sel)) continue;
      if (!included.has(sel)) {
        if (included.size >= keep) break;
        included.add(sel);
        marks.set(b.id, { id: b.id, keep: true, reason });
      } else {
        marks.set(b.id, { id: b.id, keep: false, reason: 'remove' });
      }
    }
  }
  return list.map((b) => marks.get(b.id) ?? { id: b.id, keep: false, reason: 'remove' });
}
