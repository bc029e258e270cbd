/**
 * `pve-cbt log`: the daemon's JSON-lines logs, filtered by VM, job, age and level. Human output is
 * one line per entry with its timestamp; `--json` prints the entries as JSON lines (one object per
 * line, also with --follow), exactly as stored (a stream: no envelope, see output.ts); people see
 * backup ids in the PBS form. `--follow` keeps printing new entries until Ctrl-C.
 * A missing log directory or an unknown `--job` is an error (exit 1, log-query.ts); a filter that
 * matches nothing prints a "no log entries" note on stderr and exits 0 (with --json: no lines).
 */
import { displayBackupIdsIn } from '../../repository/backup-id';
import type { LogLevel } from '../../config/config-schema';
import { LOG_LEVELS } from '../../config/config-schema';
import { formatLogLine, type LogEntry } from '../../log/log-entry';
import { assertKnownJob, assertLogDir, noEntriesNote } from '../../log/log-query';
import { followLog, parseSince, readLog, type LogFilter } from '../../log/read-log';
import { VERIFY_JOB_ID } from '../../service/scheduled-job';
import { defineCommand } from '../command';
import { InvalidArgumentError } from 'commander';
import { isCbtError } from '../../../shared/errors/cbt-error';
import { parseVmid } from '../option-parsers';

/** `--since`: a duration back from the moment of parsing (`30m`, `2h`, `1d`) or an ISO time. */
export function parseSinceOption(raw: string): Date {
  try {
    return parseSince(raw, new Date());
  } catch (err) {
    if (isCbtError(err)) throw new InvalidArgumentError(`${err.message}`);
    throw err;
  }
}

interface LogOptions {
  vm?: number;
  job?: string;
  since?: Date;
  level?: LogLevel;
  follow?: boolean;
  dir?: string;
}

export const logCommand = defineCommand<LogOptions>({
  name: 'log',
  summary: 'show the daemon log, filtered',
  description: 'Show entries of the pve-cbt daemon log (JSON lines in logDir), oldest first.',
  options: [
    { flags: '--vm <vmid>', description: 'only entries about this VM', parse: parseVmid },
    { flags: '--job <id>', description: 'only entries of this job' },
    { flags: '--since <time>', description: "only entries newer than a duration ('30m', '2h', '1d') or an ISO time", parse: parseSinceOption },
    { flags: '--level <level>', description: 'only this level and more severe', choices: LOG_LEVELS },
    { flags: '-f, --follow', description: 'keep printing new entries until interrupted' },
    { flags: '--dir <path>', description: 'read logs from this directory instead of the configured logDir' },
  ],
  examples: ['pve-cbt log --vm 101 --since 2h', 'pve-cbt log --job nightly --level warn', 'pve-cbt log --follow --json'],
  async run(ctx) {
    const logDir = ctx.opts.dir ?? ctx.loadConfig().logDir;
    assertLogDir(logDir, ctx.opts.dir ? 'option' : 'config');
    const filter: LogFilter = { vmid: ctx.opts.vm, jobId: ctx.opts.job, since: ctx.opts.since, level: ctx.opts.level };
    const checkJob = (): void => {
      if (filter.jobId !== undefined) assertKnownJob(filter.jobId, configuredJobIds(ctx), readLog(logDir, {}));
    };
    const show = (e: LogEntry): void => (ctx.json ? ctx.out.json(e) : ctx.out.line(displayBackupIdsIn(formatLogLine(e, { timestamp: true }))));
    if (ctx.opts.follow) {
      checkJob();
      await followLog({ logDir, filter, onEntry: show, signal: ctx.signal });
      return;
    }
    const entries = readLog(logDir, filter);
    // Only an empty answer can hide a typo in --job; reading every entry again is for that case.
    if (entries.length === 0) checkJob();
    entries.forEach(show);
    if (entries.length === 0 && !ctx.json) ctx.stderr.write(`pve-cbt: ${noEntriesNote(logDir, filterWords(ctx.opts))}\n`);
  },
});

/** The configured job ids (and the verify job's); with --dir an unreadable config just adds none. */
function configuredJobIds(ctx: { opts: LogOptions; loadConfig(): { jobs: readonly { id: string }[] } }): string[] {
  try {
    return [VERIFY_JOB_ID, ...ctx.loadConfig().jobs.map((j) => j.id)];
  } catch (err) {
    if (ctx.opts.dir) return [VERIFY_JOB_ID];
    throw err;
  }
}

function filterWords(o: LogOptions): string[] {
  const words: string[] = [];
  if (o.vm !== undefined) words.push(`--vm ${o.vm}`);
  if (o.job !== undefined) words.push(`--job ${o.job}`);
  if (o.since !== undefined) words.push(`--since ${o.since.toISOString()}`);
  if (o.level !== undefined) words.push(`--level ${o.level}`);
  return words;
}
