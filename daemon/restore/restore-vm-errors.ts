/**
 * Error codes of whole-VM restore (`pve-cbt restore BACKUP --vmid ID --storage STORAGE`) and of the
 * VM config a backup keeps. Each carries the backup, the VMID and the disk or volume involved.
 * CBT_RESTORE_VM_EXISTS, CBT_RESTORE_VM_DISK_UNKNOWN, CBT_RESTORE_VM_MISSING and CBT_RESTORE_VM_NO_CONFIG are usage errors (exit 2).
 */
import { defineError } from '../../shared/errors/cbt-error';

/** The backup keeps no VM config (made before configs were saved), or no firewall file. */
export const RestoreVmNoConfigError = defineError<{ backupId: string; file: 'conf' | 'firewall'; hint: string }>(
  'CBT_RESTORE_VM_NO_CONFIG',
  (d) => (d.file === 'conf' ? `backup ${d.backupId} keeps no VM config` : `backup ${d.backupId} keeps no firewall config`),
);

/** VMID.conf exists and --force was not given. */
export const RestoreVmExistsError = defineError<{ vmid: number; conf: string; hint: string }>(
  'CBT_RESTORE_VM_EXISTS',
  (d) => `VM ${d.vmid} exists (${d.conf})`,
);

/** `--disk` replaces a disk of an existing VM, and there is no such VM. */
export const RestoreVmMissingError = defineError<{ vmid: number; conf: string; hint: string }>(
  'CBT_RESTORE_VM_MISSING',
  (d) => `VM ${d.vmid} does not exist (no ${d.conf}): --disk replaces a disk of an existing VM`,
);

/** The target VM's QEMU runs: nothing is allocated or written, not even with --force. */
export const RestoreVmRunningError = defineError<{ vmid: number; pid: number; hint: string }>(
  'CBT_RESTORE_VM_RUNNING',
  (d) => `refusing to restore VM ${d.vmid}: it is running (QEMU pid ${d.pid})`,
);

/** --disk names a disk the backup (or, for a single-disk restore, the target VM) lacks. */
export const RestoreVmDiskUnknownError = defineError<{ backupId: string; vmid: number; disk: string; where: 'backup' | 'target config'; hint: string }>(
  'CBT_RESTORE_VM_DISK_UNKNOWN',
  (d) => `disk ${d.disk} is not in the ${d.where === 'backup' ? `backup ${d.backupId}` : `config of VM ${d.vmid}`}`,
);

/** `pvesm alloc` failed or printed no volume id; nothing of this disk exists. */
export const RestoreVmAllocFailedError = defineError<{ storage: string; vmid: number; disk: string; name: string; reason: string }>(
  'CBT_RESTORE_VM_ALLOC_FAILED',
  (d) => `cannot allocate ${d.name} for ${d.disk} of VM ${d.vmid} on storage ${d.storage}: ${d.reason}`,
);

/**
 * The restore failed after volumes were allocated; the cause is attached. `freed` lists what was
 * removed again, `leftover` what could not be (with the reason): those need `pvesm free` by hand.
 */
export const RestoreVmFailedError = defineError<{
  backupId: string;
  vmid: number;
  disk: string | null;
  reason: string;
  causeCode: string | null;
  freed: string[];
  leftover: { volid: string; reason: string }[];
}>(
  'CBT_RESTORE_VM_FAILED',
  (d) =>
    `restore of VM ${d.vmid} from ${d.backupId} failed${d.disk ? ` at ${d.disk}` : ''}: ${d.reason}` +
    (d.leftover.length ? `; left behind: ${d.leftover.map((l) => l.volid).join(', ')}` : '; nothing was left behind'),
);
