import { defineError } from '../../shared/errors/cbt-error';

/** `--since` is neither a duration (`30m`, `2h`, `1d`, `1w`) nor an ISO date. */
export const LogSinceInvalidError = defineError<{ since: string; hint: string }>(
  'CBT_LOG_SINCE_INVALID',
  (d) => `cannot read '${d.since}' as a time: ${d.hint}`,
);
