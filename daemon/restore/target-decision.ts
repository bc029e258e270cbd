/**
 * Is a restore target safe to write, given the facts gathered about it (target-facts.ts)?
 *
 * Rules, in this order (the first that applies decides):
 *   1. a directory, FIFO, socket or character device is never a target;
 *   2. the target's directory must exist;
 *   3. a disk of a VM whose QEMU runs is never written, not even with --force;
 *   4. a file or device that any process has open is never written, not even with --force
 *      (a running QEMU holds its images open, also when the target is a symlink to one);
 *   5. a volume of a stopped VM's current config is written only with --force;
 *   6. when a VM volume could not be resolved (`pvesm path` failed), only with --force;
 *   7. an existing file or block device is replaced only with --force.
 * Pure: no I/O, table-tested with literal facts. Returns the refusal, or undefined when safe.
 */
import type { CbtError } from '../../shared/errors/cbt-error';
import {
  RestoreTargetDirMissingError,
  RestoreTargetExistsError,
  RestoreTargetInUseError,
  RestoreTargetIsVmVolumeError,
  RestoreTargetUncheckedError,
  RestoreTargetUnsupportedError,
  RestoreTargetVmRunningError,
  type TargetHolder,
} from './restore-errors';

export type TargetKind = 'missing' | 'file' | 'block device' | 'directory' | 'fifo' | 'socket' | 'character device';

/** A volume of a VM's current config that is the target (same file, device or path). */
export interface TargetVolume {
  readonly vmid: number;
  readonly disk: string;
  readonly volid: string;
  /** The VM's QEMU pid when it runs. */
  readonly qemuPid: number | undefined;
}

export interface UnresolvedVolume {
  readonly vmid: number;
  readonly disk: string;
  readonly volid: string;
  readonly reason: string;
}

export interface TargetFacts {
  /** Absolute target path as given (not resolved: the message names what the user typed). */
  readonly target: string;
  readonly kind: TargetKind;
  /** The directory the restore writes its temporary file in, and whether it exists. */
  readonly dir: string;
  readonly dirExists: boolean;
  readonly holders: readonly TargetHolder[];
  readonly volumes: readonly TargetVolume[];
  readonly unresolved: readonly UnresolvedVolume[];
}

const FORCE_HINT = 'pass --force to replace it';

export function decideRestoreTarget(f: TargetFacts, opts: { force: boolean }): CbtError | undefined {
  const target = f.target;
  if (f.kind !== 'missing' && f.kind !== 'file' && f.kind !== 'block device') {
    return RestoreTargetUnsupportedError({ target, kind: f.kind, hint: 'give the path of a file or block device to write' });
  }
  if (!f.dirExists) return RestoreTargetDirMissingError({ target, dir: f.dir, hint: 'create the directory first, or choose another path' });
  const running = f.volumes.find((v) => v.qemuPid !== undefined);
  if (running) {
    return RestoreTargetVmRunningError({
      target,
      vmid: running.vmid,
      disk: running.disk,
      volid: running.volid,
      pid: running.qemuPid as number,
      hint: `stop VM ${running.vmid} first, or restore to another path`,
    });
  }
  if (f.holders.length) {
    const first = f.holders[0];
    return RestoreTargetInUseError({ target, pid: first.pid, command: first.command, holders: [...f.holders], hint: 'stop the processes using it, or restore to another path' });
  }
  if (opts.force) return undefined;
  const volume = f.volumes[0];
  if (volume) {
    return RestoreTargetIsVmVolumeError({ target, vmid: volume.vmid, disk: volume.disk, volid: volume.volid, hint: `pass --force to overwrite VM ${volume.vmid}'s disk` });
  }
  const unresolved = f.unresolved[0];
  if (unresolved) {
    return RestoreTargetUncheckedError({ target, ...unresolved, hint: 'fix the storage, or pass --force if the target is surely not that volume' });
  }
  if (f.kind !== 'missing') return RestoreTargetExistsError({ target, kind: f.kind, hint: FORCE_HINT });
  return undefined;
}
