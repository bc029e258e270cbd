/**
 * Error codes of bitmap parking (park-bitmaps.ts): moving pve-cbt's bitmaps out of a stopped VM's
 * qcow2 image into a sidecar and back.
 */
import { defineError } from '../../shared/errors/cbt-error';

export const ParkingNotQcow2Error = defineError<{ file: string; problem: string }>(
  'CBT_PARKING_NOT_QCOW2',
  (d) => `${d.file} is not a readable qcow2 image: ${d.problem}`,
);

export const ParkingRecordBadError = defineError<{ file: string; problem: string }>(
  'CBT_PARKING_RECORD_BAD',
  (d) => `parked-bitmap record ${d.file} is unusable (${d.problem}); its bitmaps are dropped and the disk's next backup is a full-compare`,
);

/** The VM config carries qemu-server's `lock:` property (rollback, backup, migrate, ...): its images are Proxmox's now. */
export const ParkingVmLockedError = defineError<{ vmid: number; lock: string }>(
  'CBT_PARKING_VM_LOCKED',
  (d) => `VM ${d.vmid} is locked by Proxmox VE (config says "lock: ${d.lock}"); pve-cbt does not touch its images until the operation ends`,
);

/** Putting parked bitmaps back ran out of the time the pre-start hook allows (half its timeout, at most 1 s). */
export const ParkingTimeUpError = defineError<{ vmid: number; disk: string; timeoutMs: number }>(
  'CBT_PARKING_TIME_UP',
  (d) => `no time left of ${d.timeoutMs} ms to put VM ${d.vmid} ${d.disk}'s parked bitmaps back; its next backup is a full-compare`,
);
