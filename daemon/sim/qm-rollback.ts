/**
 * `qm snapshot` of a stopped VM and `qm rollback`, as qemu-server and pve-storage run them on qcow2
 * disks of a directory storage (pve-qemu-facts.md, "Snapshots, locks, migration"):
 *
 *   offlineSnapshot   under the VM lock: `qemu-img snapshot -c SNAP IMAGE` per qcow2 disk
 *                     (pve-storage Plugin.pm volume_snapshot for a stopped VM)
 *   vmstateSnapshot   a running VM's snapshot with its RAM: HMP `savevm SNAP` (upstream QEMU keeps the
 *                     vmstate inside the qcow2 internal snapshot; Proxmox writes it to a separate
 *                     vmstate volume with its own `savevm-start` QMP command, which upstream lacks)
 *   qmRollback        PVE::AbstractConfig::snapshot_rollback: (1) under the lock, a running VM is
 *                     stopped (vm_stop: pre-stop, quit) and the config gets `lock: rollback`; the lock
 *                     is released and qmeventd's `qm cleanup` runs post-stop under it; (2) without the
 *                     flock, `/usr/bin/qemu-img snapshot -a SNAP IMAGE` per qcow2 disk (Plugin.pm
 *                     volume_snapshot_rollback); (3) under the lock again, the config lock is removed
 *                     and, when the snapshot has a vmstate, the VM is started from it (pre-start,
 *                     QEMU with `-loadvm SNAP` where Proxmox passes its statefile, post-start).
 *                     On a real node `qm cleanup` and step (2) race once step (1) releases the lock;
 *                     the simulator runs post-stop first (qm cleanup is already waiting on the lock).
 *
 * The raw reference twins follow: a snapshot copies them aside, a rollback copies them back, so
 * restores after a rollback are still compared with bytes the tool never produced.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { hmp } from '../qmp/hmp';
import type { SimDisk, SimVm } from './pve-node';
import { SimIoError, SimStateError } from './sim-errors';
import { SimVmImpl } from './sim-vm';

const execFileP = promisify(execFile);

function impl(vm: SimVm): SimVmImpl {
  if (!(vm instanceof SimVmImpl)) throw SimStateError({ vmid: vm.vmid, op: 'snapshot', reason: 'not a simulator VM' });
  return vm;
}

function snapReference(disk: SimDisk, snap: string): string {
  return path.join(path.dirname(disk.reference), `${disk.key}@${snap}.raw`);
}

async function saveReferences(vm: SimVm, snap: string): Promise<void> {
  for (const d of vm.disks) await execFileP('cp', ['--sparse=always', d.reference, snapReference(d, snap)]);
}

async function qemuImg(vm: SimVm, disk: SimDisk, args: string[]): Promise<void> {
  try {
    await execFileP('qemu-img', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw SimIoError({ vmid: vm.vmid, disk: disk.key, op: `qemu-img ${args.join(' ')}`, output: (e.stderr ?? e.message).trim() });
  }
}

function setConfLock(vm: SimVm, lock: string | undefined): void {
  const lines = fs.readFileSync(vm.confPath, 'utf8').split('\n').filter((l) => !/^lock:/.test(l));
  const at = lines.findIndex((l) => /^\[/.test(l));
  if (lock !== undefined) lines.splice(at < 0 ? Math.max(0, lines.length - 1) : at, 0, `lock: ${lock}`);
  fs.writeFileSync(vm.confPath, lines.join('\n'));
}

/** `qm snapshot VMID SNAP` of a stopped VM: an internal snapshot of every qcow2 disk. */
export async function offlineSnapshot(vm: SimVm, snap: string): Promise<void> {
  const v = impl(vm);
  await v.pveLocked(async () => {
    if (v.running()) throw SimStateError({ vmid: vm.vmid, op: 'offline snapshot', reason: 'VM is running' });
    for (const d of vm.disks.filter((x) => x.format === 'qcow2')) await qemuImg(vm, d, ['snapshot', '-c', snap, d.path]);
    await saveReferences(vm, snap);
  });
}

/** A running VM's snapshot including its RAM (HMP savevm); every disk must be qcow2. */
export async function vmstateSnapshot(vm: SimVm, snap: string): Promise<void> {
  const v = impl(vm);
  if (!v.running()) throw SimStateError({ vmid: vm.vmid, op: 'vmstate snapshot', reason: 'VM is not running' });
  if (vm.disks.some((d) => d.format !== 'qcow2')) throw SimStateError({ vmid: vm.vmid, op: 'vmstate snapshot', reason: 'every disk must be qcow2' });
  await v.pveLocked(async () => {
    const out = await v.qmp((q) => hmp(q, `savevm ${snap}`));
    if (out.trim() !== '') throw SimIoError({ vmid: vm.vmid, disk: vm.disks[0].key, op: `savevm ${snap}`, output: out });
    await saveReferences(vm, snap);
  });
}

/** Whether the snapshot holds a vmstate (internal snapshot with a VM state size). */
async function hasVmstate(disk: SimDisk, snap: string): Promise<boolean> {
  const { stdout } = await execFileP('qemu-img', ['info', '--output=json', '-U', disk.path]);
  const info = JSON.parse(stdout) as { snapshots?: { name: string; 'vm-state-size': number }[] };
  return (info.snapshots ?? []).some((s) => s.name === snap && s['vm-state-size'] > 0);
}

export interface RollbackResult {
  /** The VM was running and got stopped by the rollback. */
  stopped: boolean;
  /** The snapshot had a vmstate and the VM was started from it. */
  resumed: boolean;
}

/** `qm rollback VMID SNAP`; throws CBT_SIM_IO with qemu-img's message when a disk refuses. */
export async function qmRollback(vm: SimVm, snap: string): Promise<RollbackResult> {
  const v = impl(vm);
  const qcow2 = vm.disks.filter((d) => d.format === 'qcow2');
  if (qcow2.length === 0) throw SimStateError({ vmid: vm.vmid, op: 'rollback', reason: 'no qcow2 disk to roll back' });
  let stopped = false;
  await v.pveLocked(async () => {
    stopped = v.running();
    await v.stopInsideLock();
    setConfLock(vm, 'rollback');
  });
  if (stopped) await v.qmCleanup();
  for (const d of qcow2) await qemuImg(vm, d, ['snapshot', '-a', snap, d.path]);
  for (const d of vm.disks) {
    const saved = snapReference(d, snap);
    if (fs.existsSync(saved)) fs.copyFileSync(saved, d.reference);
  }
  const resume = await hasVmstate(qcow2[0], snap);
  await v.pveLocked(async () => {
    setConfLock(vm, undefined);
    if (resume) await v.startInsideLock({ loadvm: snap });
  });
  return { stopped, resumed: resume };
}
