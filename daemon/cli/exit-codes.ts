/**
 * Exit codes of `pve-cbt`, one table for the code, the help text and the docs:
 *
 * | code | name              | meaning                                                         |
 * |------|-------------------|-----------------------------------------------------------------|
 * | 0    | ok                | the command did what was asked                                  |
 * | 1    | failure           | it failed (any error not listed below)                          |
 * | 2    | usage             | the command line is wrong (CBT_CLI_USAGE and bad option values) |
 * | 3    | config-invalid    | the config file was refused (CBT_CONFIG_INVALID)                |
 * | 4    | daemon-unavailable| the daemon could not be reached (CBT_IPC_UNAVAILABLE, …)        |
 * | 5    | partial           | done, but with findings (e.g. verify found bad chunks)          |
 * | 130  | cancelled         | Ctrl-C (SIGINT) cancelled it; nothing half-done was kept        |
 *
 * A command returns `exitCode: ExitCode.Partial` for 5; every other code comes from the error.
 */
import { isCbtError } from '../../shared/errors/cbt-error';

export const ExitCode = Object.freeze({
  Ok: 0,
  Failure: 1,
  Usage: 2,
  ConfigInvalid: 3,
  DaemonUnavailable: 4,
  Partial: 5,
  /** 128 + SIGINT, the shell's code for a command stopped by Ctrl-C. */
  Cancelled: 130,
} as const);
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODE_TABLE: readonly { code: ExitCode; name: string; meaning: string }[] = [
  { code: ExitCode.Ok, name: 'ok', meaning: 'the command did what was asked' },
  { code: ExitCode.Failure, name: 'failure', meaning: 'it failed' },
  { code: ExitCode.Usage, name: 'usage', meaning: 'the command line is wrong' },
  { code: ExitCode.ConfigInvalid, name: 'config-invalid', meaning: 'the config file was refused' },
  { code: ExitCode.DaemonUnavailable, name: 'daemon-unavailable', meaning: 'the daemon could not be reached' },
  { code: ExitCode.Partial, name: 'partial', meaning: 'done, but with findings (e.g. verify found problems)' },
  { code: ExitCode.Cancelled, name: 'cancelled', meaning: 'Ctrl-C cancelled it (a backup: nothing written, bitmaps kept)' },
];

/** Error codes with an exit code other than 1. Add codes here, not in commands. */
export const EXIT_CODE_BY_ERROR: Readonly<Record<string, ExitCode>> = Object.freeze({
  CBT_CLI_USAGE: ExitCode.Usage,
  CBT_CLI_STDOUT_TTY: ExitCode.Usage,
  CBT_LOG_SINCE_INVALID: ExitCode.Usage,
  CBT_RESTORE_TARGET_EXISTS: ExitCode.Usage,
  CBT_RESTORE_TARGET_DIR_MISSING: ExitCode.Usage,
  CBT_RESTORE_TARGET_UNSUPPORTED: ExitCode.Usage,
  CBT_RESTORE_VM_EXISTS: ExitCode.Usage,
  CBT_RESTORE_VM_DISK_UNKNOWN: ExitCode.Usage,
  CBT_RESTORE_VM_NO_CONFIG: ExitCode.Usage,
  CBT_RESTORE_VM_MISSING: ExitCode.Usage,
  CBT_CONFIG_INVALID: ExitCode.ConfigInvalid,
  CBT_IPC_UNAVAILABLE: ExitCode.DaemonUnavailable,
  CBT_IPC_CONNECTION_LOST: ExitCode.DaemonUnavailable,
  CBT_IPC_SHUTTING_DOWN: ExitCode.DaemonUnavailable,
  CBT_IPC_BUSY: ExitCode.DaemonUnavailable,
  CBT_CLI_CANCELLED: ExitCode.Cancelled,
});

export function exitCodeFor(err: unknown): ExitCode {
  return (isCbtError(err) && EXIT_CODE_BY_ERROR[err.code]) || ExitCode.Failure;
}

export function exitCodeHelp(): string {
  return ['Exit codes:', ...EXIT_CODE_TABLE.map((e) => `  ${String(e.code).padEnd(3)}  ${e.name.padEnd(19)}${e.meaning}`)].join('\n');
}
