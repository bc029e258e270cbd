/**
 * What `pve-cbt log` checks before and after reading, so that an empty answer is never a silent
 * one: a log directory that does not exist is CBT_LOG_DIR_MISSING; a `--job` that is neither
 * configured nor named by any entry is CBT_LOG_JOB_UNKNOWN (with a did-you-mean among the known
 * ids); a filter that matches nothing in existing logs is a plain "no entries" note (exit 0).
 */
import fs from 'node:fs';
import { didYouMean } from '../config/did-you-mean';
import type { LogEntry } from './log-entry';
import { LogDirMissingError, LogJobUnknownError } from './log-errors';

export function assertLogDir(logDir: string, source: 'option' | 'config'): void {
  if (fs.statSync(logDir, { throwIfNoEntry: false })?.isDirectory()) return;
  throw LogDirMissingError({
    logDir,
    source,
    hint: source === 'option' ? 'check the path given with --dir' : 'the daemon has not written a log yet: is pve-cbtd running (systemctl status pve-cbtd)?',
  });
}

/** Job ids known to the config and to the entries; throws when `jobId` is not among them. */
export function assertKnownJob(jobId: string, configured: readonly string[], entries: Iterable<LogEntry>): void {
  const known = new Set(configured);
  if (known.has(jobId)) return;
  for (const e of entries) {
    if (typeof e.jobId !== 'string') continue;
    if (e.jobId === jobId) return;
    known.add(e.jobId);
  }
  const list = [...known].sort();
  const guess = didYouMean(jobId, list);
  throw LogJobUnknownError({
    jobId,
    known: list,
    hint: guess ? `did you mean '${guess}'?` : list.length ? `known jobs: ${list.join(', ')}` : 'no job has run yet and none is configured',
  });
}

/** The "nothing matched" line, naming the filter so it is clear what was looked for. */
export function noEntriesNote(logDir: string, filterWords: readonly string[]): string {
  return `no log entries${filterWords.length ? ` match ${filterWords.join(' ')}` : ''} in ${logDir}`;
}
