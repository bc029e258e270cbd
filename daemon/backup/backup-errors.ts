/**
 * Error codes of the backup engine. Each names the VM (and disk where one is involved) so that a
 * failed job can be read from the log without the stack.
 */
import { defineError } from '../../shared/errors/cbt-error';

/** `waitedMs` 0 (the default: no waiting) is not mentioned; a real wait is, in seconds. */
export const BackupVzdumpBusyError = defineError<{ vmid: number; waitedMs: number; hint?: string }>(
  'CBT_BACKUP_VZDUMP_BUSY',
  (d) =>
    `VM ${d.vmid} is being backed up by vzdump${d.waitedMs >= 1000 ? ` (still after waiting ${Math.round(d.waitedMs / 1000)} s)` : ''}; pve-cbt does not start a backup meanwhile`,
);

export const BackupNbdBusyError = defineError<{ vmid: number; waitedMs: number; desc: string }>(
  'CBT_BACKUP_NBD_BUSY',
  (d) => `QEMU of VM ${d.vmid} already runs an NBD server (PVE migration or backup?) after waiting ${d.waitedMs} ms: ${d.desc}`,
);

export const BackupImageInUseError = defineError<{ vmid: number; disk: string; path: string; pid: number }>(
  'CBT_BACKUP_IMAGE_IN_USE',
  (d) => `VM ${d.vmid} disk ${d.disk} (${d.path}) is held by running QEMU pid ${d.pid}; refusing to open it offline`,
);

export const BackupJobFailedError = defineError<{ vmid: number; job: string; status: string; error?: string }>(
  'CBT_BACKUP_FLEECE_JOB',
  (d) => `copy-before-write job ${d.job} of VM ${d.vmid} is ${d.status}${d.error ? `: ${d.error}` : ''}; the point-in-time view is lost`,
);

export const BackupDiskMismatchError = defineError<{ vmid: number; disk: string; reason: string }>(
  'CBT_BACKUP_DISK_MISMATCH',
  (d) => `VM ${d.vmid} disk ${d.disk}: ${d.reason}`,
);

export const BackupToolError = defineError<{ command: string; reason: string }>(
  'CBT_BACKUP_TOOL',
  (d) => `${d.command} failed: ${d.reason}`,
);

export const BackupReadError = defineError<{ vmid: number; disk: string; reason: string }>(
  'CBT_BACKUP_READ',
  (d) => `reading VM ${d.vmid} disk ${d.disk} failed: ${d.reason}`,
);

export const BackupAbortedError = defineError<{ vmid: number }>(
  'CBT_BACKUP_ABORTED',
  (d) => `backup of VM ${d.vmid} was cancelled`,
);

/** QEMU still lists a block job or export of this backup after its cleanup asked it to go. */
export const BackupCleanupTimeoutError = defineError<{ vmid: number | null; what: string; timeoutMs: number }>(
  'CBT_BACKUP_CLEANUP_TIMEOUT',
  (d) => `${d.what} still present after ${d.timeoutMs} ms`,
);

export const BackupNoDisksError = defineError<{ vmid: number }>(
  'CBT_BACKUP_NO_DISKS',
  (d) => `VM ${d.vmid} has no disk to back up`,
);
