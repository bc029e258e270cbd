/**
 * Converters for command parameters and option values. They throw commander's
 * InvalidArgumentError, which run-cli turns into CBT_CLI_USAGE (exit 2) naming the bad value.
 * Every command loads this file: a converter that needs a heavier module (`--since` needs the log
 * reader) lives with its one command instead (commands/log.ts).
 */
import { InvalidArgumentError } from 'commander';
import { isCbtError } from '../../shared/errors/cbt-error';
import { normalizeBackupId } from '../repository/backup-id';

/** A Proxmox VM id: an integer from 100 to 999999999. */
export function parseVmid(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 100 || n > 999_999_999) throw new InvalidArgumentError(`'${raw}' is not a VM id (100..999999999)`);
  return n;
}

export function parsePositiveInt(raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new InvalidArgumentError(`'${raw}' is not a positive integer`);
  return Number(raw);
}

/** A backup id, PBS form (`vm/101/2026-11-25T02:00:03Z`) or folder form (`…T02_00_03Z`). */
export function parseBackupIdArg(raw: string): string {
  try {
    return normalizeBackupId(raw);
  } catch (err) {
    if (isCbtError(err)) throw new InvalidArgumentError(`'${raw}' is not a backup id (vm/VMID/YYYY-MM-DDThh:mm:ssZ)`);
    throw err;
  }
}
