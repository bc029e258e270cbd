/**
 * Error codes of live restore (`pve-cbt restore BACKUP --vmid ID --storage STORAGE --live`): the VM
 * runs on the backup served over NBD while its data moves into the new volumes. Each failure says
 * in which phase it happened, whether the VM was stopped, and what was freed or left behind; a VM
 * that could not be stopped is named with its pid, never left running on the export silently.
 */
import { defineError } from '../../shared/errors/cbt-error';

export type LivePhase = 'allocate' | 'serve' | 'start' | 'mirror' | 'switch' | 'config';

/** QEMU did not come up on the overlays (its exit status or stderr in `reason`). */
export const RestoreLiveStartFailedError = defineError<{ vmid: number; reason: string }>(
  'CBT_RESTORE_LIVE_START_FAILED',
  (d) => `cannot start VM ${d.vmid} on the served backup: ${d.reason}`,
);

/** A mirror job failed, vanished or did not end on the volume (the QEMU job's error in `reason`). */
export const RestoreLiveJobFailedError = defineError<{ vmid: number; disk: string; job: string; reason: string }>(
  'CBT_RESTORE_LIVE_JOB_FAILED',
  (d) => `moving ${d.disk} of VM ${d.vmid} into its volume failed (job ${d.job}): ${d.reason}`,
);

/**
 * The live restore failed after something existed; the cause is attached. The VM was stopped
 * (`vmStopped`), or could not be (`vmPid` still runs on the export: stop it by hand); `freed` lists
 * the volumes removed again, `leftover` what could not be removed.
 */
export const RestoreLiveFailedError = defineError<{
  backupId: string;
  vmid: number;
  phase: LivePhase;
  disk: string | null;
  reason: string;
  causeCode: string | null;
  vmStarted: boolean;
  vmStopped: boolean;
  vmPid: number | null;
  freed: string[];
  leftover: { volid: string; reason: string }[];
}>(
  'CBT_RESTORE_LIVE_FAILED',
  (d) =>
    `live restore of VM ${d.vmid} from ${d.backupId} failed while ${d.phase === 'mirror' ? 'moving the data' : d.phase}${d.disk ? ` (${d.disk})` : ''}: ${d.reason}` +
    (d.vmStarted ? (d.vmStopped ? '; the VM was stopped' : `; the VM (pid ${d.vmPid}) could NOT be stopped and still runs on the export: stop it`) : '') +
    (d.leftover.length ? `; left behind: ${d.leftover.map((l) => l.volid).join(', ')}` : '; no volume was left behind'),
);

/**
 * The process that ran a live restore (the daemon, holding the NBD export) died before the restore
 * ended, and the next daemon start resolved it (live-restore-recovery.ts): the VM was stopped if it
 * still ran on the overlays (`vmStopped`; `vmPid` when it could not be), the allocated volumes freed
 * (`freed`, `leftover`), no config written. The task of the restore is recorded failed with this code.
 */
export const RestoreLiveInterruptedError = defineError<{
  backupId: string;
  vmid: number;
  taskId: string | null;
  phase: LivePhase;
  /** What recovery found of the restore's QEMU: on the export, on its volumes, gone, or another QEMU of this VMID. */
  vm: 'on-export' | 'on-volumes' | 'gone' | 'foreign';
  vmStopped: boolean;
  vmPid: number | null;
  freed: string[];
  leftover: { volid: string; reason: string }[];
  reason: string;
}>(
  'CBT_RESTORE_LIVE_INTERRUPTED',
  (d) =>
    `live restore of VM ${d.vmid} from ${d.backupId}${d.taskId ? ` (${d.taskId})` : ''} was interrupted while ${d.phase === 'mirror' ? 'moving the data' : d.phase}: ${d.reason}` +
    (d.vm === 'gone' ? '; its VM was not running any more' : d.vm === 'foreign' ? '; another QEMU of this VMID runs and was left alone' : d.vmStopped ? '; the VM was stopped' : `; the VM (pid ${d.vmPid}) could NOT be stopped: stop it`) +
    '; no config was written' +
    (d.leftover.length ? `; left behind: ${d.leftover.map((l) => l.volid).join(', ')}` : '; no volume was left behind'),
);
