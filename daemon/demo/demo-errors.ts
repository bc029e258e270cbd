/**
 * Error codes of `pve-cbt demo`: the demo checks every restore against the disk at backup time and
 * stops at the first backup or comparison that fails.
 */
import { defineError } from '../../shared/errors/cbt-error';

/** A restore differs from the simulated disk as it was at backup time. */
export const DemoMismatchError = defineError<{ backupId: string; disk: string; firstDifference: number }>(
  'CBT_DEMO_MISMATCH',
  (d) => `restore of ${d.disk} from ${d.backupId} differs from the disk at backup time at byte ${d.firstDifference}`,
);
/** A backup (or the closing verify) of the demo failed. */
export const DemoBackupFailedError = defineError<{ vmid: number; code: string; message: string }>(
  'CBT_DEMO_BACKUP_FAILED',
  (d) => `backup of VM ${d.vmid} failed: ${d.code}: ${d.message}`,
);
