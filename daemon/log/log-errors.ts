import { defineError } from '../../shared/errors/cbt-error';

/** `--since` is neither a duration (`30m`, `2h`, `1d`, `1w`) nor an ISO date. */
export const LogSinceInvalidError = defineError<{ since: string; hint: string }>(
  'CBT_LOG_SINCE_INVALID',
  (d) => `cannot read '${d.since}' as a time: ${d.hint}`,
);

/**
 * `pve-cbt log` was pointed at a directory that does not exist (`--dir`, or the configured logDir
 * before the daemon ever ran): refused instead of printing nothing, which looks like "no problems".
 */
export const LogDirMissingError = defineError<{ logDir: string; source: 'option' | 'config'; hint: string }>(
  'CBT_LOG_DIR_MISSING',
  (d) => `log directory ${d.logDir} does not exist${d.source === 'option' ? ' (given with --dir)' : ' (logDir in the config)'}`,
);

/** `pve-cbt log --job ID` names a job that is neither configured nor in any log entry (a typo). */
export const LogJobUnknownError = defineError<{ jobId: string; known: string[]; hint: string }>(
  'CBT_LOG_JOB_UNKNOWN',
  (d) => `no job '${d.jobId}': it is not configured and no log entry names it`,
);
