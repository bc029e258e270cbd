import { defineError } from '../../shared/errors/cbt-error';

/** The command line itself is wrong (unknown option, missing argument, bad value); exit code 2. */
export const CliUsageError = defineError<{ command: string; problem: string; hint: string }>(
  'CBT_CLI_USAGE',
  (d) => d.problem,
);


/**
 * The CLI cannot write its log entries into logDir (read-only or full file system, no permission,
 * something that is not a file where the day's log goes). `reason` is the errno code or message.
 */
export const CliLogUnwritableError = defineError<{ logDir: string; reason: string; hint: string }>(
  'CBT_CLI_LOG_UNWRITABLE',
  (d) => `cannot write the log in ${d.logDir}: ${d.reason}`,
);

/** The CLI received SIGINT or SIGTERM: what it was doing is cancelled (a second signal exits at once, 130). */
export const CliInterruptedError = defineError<{ signal: string }>(
  'CBT_CLI_INTERRUPTED',
  (d) => `received ${d.signal}`,
);
