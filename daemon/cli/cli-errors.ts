import { defineError } from '../../shared/errors/cbt-error';

/** The command line itself is wrong (unknown option, missing argument, bad value); exit code 2. */
export const CliUsageError = defineError<{ command: string; problem: string; hint: string }>(
  'CBT_CLI_USAGE',
  (d) => d.problem,
);

