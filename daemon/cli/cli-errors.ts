import { defineError } from '../../shared/errors/cbt-error';

/** The command line itself is wrong (unknown option, missing argument, bad value); exit code 2. */
export const CliUsageError = defineError<{ command: string; problem: string; hint: string }>(
  'CBT_CLI_USAGE',
  (d) => d.problem,
);

/**
 * `restore --to -` with stdout on a terminal: the disk's raw bytes would flood it (and could drive
 * the terminal with escape sequences). Pipe or redirect stdout instead; exit code 2.
 */
export const CliStdoutIsTerminalError = defineError<{ command: string; hint: string }>(
  'CBT_CLI_STDOUT_TTY',
  (d) => `${d.command} --to - would write a raw disk image to the terminal`,
);

/**
 * A CLI command found no repository where the config says (`repository`): nothing was backed up
 * with this config yet, or the config names another place. CLI commands never create one; the
 * daemon does when it starts.
 */
export const CliNoRepositoryError = defineError<{ repository: string; configFile: string; hint: string }>(
  'CBT_CLI_NO_REPOSITORY',
  (d) => `no pve-cbt repository at ${d.repository}`,
);

/**
 * The CLI cannot write its log entries into logDir (read-only or full file system, no permission,
 * something that is not a file where the day's log goes). `reason` is the errno code or message.
 */
export const CliLogUnwritableError = defineError<{ logDir: string; reason: string; hint: string }>(
  'CBT_CLI_LOG_UNWRITABLE',
  (d) => `cannot write the log in ${d.logDir}: ${d.reason}`,
);

/** Ctrl-C cancelled the command's daemon task (a backup: nothing written, bitmaps kept); exit code 130. */
export const CliCancelledError = defineError<{ what: string; taskId: string; reason: string; hint: string }>(
  'CBT_CLI_CANCELLED',
  (d) => `${d.what} cancelled (${d.reason}, task ${d.taskId})`,
);

/** The CLI received SIGINT or SIGTERM: what it was doing is cancelled (a second signal exits at once, 130). */
export const CliInterruptedError = defineError<{ signal: string }>(
  'CBT_CLI_INTERRUPTED',
  (d) => `received ${d.signal}`,
);
