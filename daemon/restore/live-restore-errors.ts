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
