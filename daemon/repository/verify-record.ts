/**
 * The result of the last verify of the whole repository (the scheduled verify job, or `pve-cbt
 * verify` without a backup), in `verify-last.json` at the repository root, for `pve-cbt status`.
 * Written atomically after each such run; a verify of one backup leaves it alone. Mutable state,
 * like each backup's `verify.json`; losing it loses nothing but the display.
 */
import type { RepositoryStorage } from './storage';
import type { VerifyReport } from './verify';

export const LAST_VERIFY_FILE = 'verify-last.json';

export interface LastVerify {
  /** When the run started and ended (ISO). */
  time: string;
  finishedAt: string;
  ok: boolean;
  backups: number;
  okBackups: number;
  badBackups: number;
  problems: number;
  chunksChecked: number;
  pagesChecked: number;
  durationMs: number;
}

export function lastVerifyOf(report: VerifyReport, started: Date, finished: Date): LastVerify {
  const bad = report.backups.filter((b) => !b.ok).length;
  return {
    time: started.toISOString(),
    finishedAt: finished.toISOString(),
    ok: report.ok,
    backups: report.backups.length,
    okBackups: report.backups.length - bad,
    badBackups: bad,
    problems: report.backups.reduce((n, b) => n + b.problems.length, 0),
    chunksChecked: report.chunksChecked,
    pagesChecked: report.pagesChecked,
    durationMs: report.durationMs,
  };
}

export async function writeLastVerify(storage: RepositoryStorage, v: LastVerify): Promise<void> {
  await storage.writeAtomic(LAST_VERIFY_FILE, Buffer.from(`${JSON.stringify(v, null, 1)}\n`));
}

/** Null when no whole-repository verify ran yet, or the file is unreadable as a record. */
export async function readLastVerify(storage: RepositoryStorage): Promise<LastVerify | null> {
  const raw = await storage.read(LAST_VERIFY_FILE);
  if (!raw) return null;
  try {
    const v = JSON.parse(raw.toString('utf8')) as Partial<LastVerify>;
    return typeof v.time === 'string' && typeof v.ok === 'boolean' && typeof v.badBackups === 'number' ? (v as LastVerify) : null;
  } catch {
    return null;
  }
}
