import { defineError } from '../../shared/errors/cbt-error';

/** The command line itself is wrong (unknown option, missing argument, bad value); exit code 2. */
export const CliUsageError = defineError<{ command: string; problem: string; hint: string }>(
  'CBT_CLI_USAGE',
  (d) => d.problem,
);

/** A command needs the daemon and it cannot be reached; exit code 4. */
export const CliDaemonUnavailableError = defineError<{ socketPath: string; hint: string }>(
  'CBT_CLI_DAEMON_UNAVAILABLE',
  (d) => `the pve-cbt daemon is not running (no answer on ${d.socketPath})`,
);
