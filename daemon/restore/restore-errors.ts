/**
 * Error codes of restore targets: why `pve-cbt restore --to PATH` refused PATH. Each carries the
 * target and the values that made the decision (vmid, disk, pid), and a hint for people.
 * CBT_RESTORE_TARGET_EXISTS and CBT_RESTORE_TARGET_DIR_MISSING are usage errors (exit code 2).
 */
import { defineError } from '../../shared/errors/cbt-error';

export interface TargetHolder {
  readonly pid: number;
  readonly command: string;
}

/** A process has the target open (a running QEMU holds its images open); --force does not help. */
export const RestoreTargetInUseError = defineError<{ target: string; pid: number; command: string; holders: TargetHolder[]; hint: string }>(
  'CBT_RESTORE_TARGET_IN_USE',
  (d) => `refusing to restore to ${d.target}: process ${d.pid} (${d.command}) has it open`,
);

/** The target is a disk of a VM whose QEMU runs; --force does not help. */
export const RestoreTargetVmRunningError = defineError<{ target: string; vmid: number; disk: string; volid: string; pid: number; hint: string }>(
  'CBT_RESTORE_TARGET_VM_RUNNING',
  (d) => `refusing to restore to ${d.target}: it is ${d.disk} (${d.volid}) of VM ${d.vmid}, which is running (QEMU pid ${d.pid})`,
);

/** The target is a volume of a stopped VM's current config; allowed with --force. */
export const RestoreTargetIsVmVolumeError = defineError<{ target: string; vmid: number; disk: string; volid: string; hint: string }>(
  'CBT_RESTORE_TARGET_IS_VM_VOLUME',
  (d) => `refusing to restore to ${d.target}: it is ${d.disk} (${d.volid}) of VM ${d.vmid}`,
);

/** A VM volume could not be resolved, so the target may be that volume; allowed with --force. */
export const RestoreTargetUncheckedError = defineError<{ target: string; vmid: number; disk: string; volid: string; reason: string; hint: string }>(
  'CBT_RESTORE_TARGET_UNCHECKED',
  (d) => `refusing to restore to ${d.target}: cannot tell whether it is ${d.disk} (${d.volid}) of VM ${d.vmid}: ${d.reason}`,
);

/** An existing file or block device; replaced only with --force. */
export const RestoreTargetExistsError = defineError<{ target: string; kind: 'file' | 'block device'; hint: string }>(
  'CBT_RESTORE_TARGET_EXISTS',
  (d) => `refusing to restore to ${d.target}: the ${d.kind} exists`,
);

export const RestoreTargetDirMissingError = defineError<{ target: string; dir: string; hint: string }>(
  'CBT_RESTORE_TARGET_DIR_MISSING',
  (d) => `cannot restore to ${d.target}: directory ${d.dir} does not exist`,
);

/** A directory, FIFO, socket or character device: never a restore target. */
export const RestoreTargetUnsupportedError = defineError<{ target: string; kind: string; hint: string }>(
  'CBT_RESTORE_TARGET_UNSUPPORTED',
  (d) => `cannot restore to ${d.target}: it is a ${d.kind}`,
);
