/**
 * `qm snapshot VMID NAME [--vmstate]` and `qm delsnapshot VMID NAME` as qemu-server runs them on
 * qcow2 volumes of a dir storage (PVE/QemuConfig.pm, PVE/QemuServer.pm `qemu_volume_snapshot`):
 *
 *   refused unless every disk can take an internal snapshot (qcow2; raw/vmdk on dir storage:
 *   "snapshot feature is not available"), and when the name is taken;
 *   config: `lock: snapshot` while it runs, then a `[NAME]` section (snaptime) and `parent: NAME`;
 *   running, no vmstate: QMP `blockdev-snapshot-internal-sync {device: drive-KEY, name}` per disk;
 *   running, --vmstate: Proxmox's own `savevm-start` writes the state to a volume of its own and then
 *     snapshots each disk; upstream QEMU has no savevm-start, so the simulator runs QEMU's
 *     `snapshot-save` job (QEMU >= 6.0) with the state stored in the first disk's internal snapshot
 *     and every disk snapshotted at the same instant (the guest is paused meanwhile, as with PVE);
 *   stopped: `qemu-img snapshot -c NAME PATH` per disk;
 *   delete, running: `blockdev-snapshot-delete-internal-sync {device, name}` per disk (this drops a
 *     vmstate stored in the snapshot too); stopped: `qemu-img snapshot -d NAME PATH`.
 * No hook fires for either. pve-cbt's persistent bitmaps stay in the images: QEMU 7.2 and 10.0 take
 * and delete internal snapshots with them present (only applying one, `qemu-img snapshot -a`,
 * is refused), and creating or deleting a snapshot writes no guest data, so the bitmap stays exact.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { queryDisks } from '../qmp/query-disks';
import { confAddSnapshot, confDeleteSnapshot, confGet, confSet, snapshotNames } from './conf-edit';
import type { SimVm } from './pve-node';
import { waitConcludedJob } from './qm-block-jobs';
import { SimQmError } from './qm-errors';

const execFileP = promisify(execFile);

export interface SnapshotOptions {
  readonly vmstate?: boolean;
  /** Called once `lock: snapshot` is in the config, before QEMU is asked (as qemu-server's prepare step). */
  readonly whileLocked?: () => Promise<void>;
}

export async function qmSnapshot(vm: SimVm, name: string, opts: SnapshotOptions = {}): Promise<void> {
  const command = `snapshot ${vm.vmid} ${name}${opts.vmstate ? ' --vmstate' : ''}`;
  const text = fs.readFileSync(vm.confPath, 'utf8');
  checkSnapshotName(vm, command, name);
  if (snapshotNames(text).includes(name)) throw SimQmError({ vmid: vm.vmid, command, reason: `snapshot name '${name}' already used` });
  const unable = vm.disks.filter((d) => d.format !== 'qcow2');
  if (unable.length > 0) throw SimQmError({ vmid: vm.vmid, command, reason: `snapshot feature is not available (${unable.map((d) => `${d.key}: ${d.format}`).join(', ')})` });
  const running = vm.running();
  if (opts.vmstate && !running) throw SimQmError({ vmid: vm.vmid, command, reason: 'vmstate needs a running VM' });
  await withConfLock(vm, command, 'snapshot', async () => {
    if (opts.whileLocked) await opts.whileLocked();
    if (running && opts.vmstate) {
      const nodes = (await vm.qmp((q) => queryDisks(q))).filter((d) => vm.disks.some((x) => x.key === d.drive));
      const jobId = `snapshot-save-${name}`;
      await vm.qmp((q) => q.execute('snapshot-save', { 'job-id': jobId, tag: name, vmstate: nodes[0].nodeName, devices: nodes.map((n) => n.nodeName) }));
      await waitConcludedJob(vm, command, jobId);
    } else if (running) {
      for (const d of vm.disks) {
        await vm.qmp((q) => q.execute('blockdev-snapshot-internal-sync', { device: `drive-${d.key}`, name }));
      }
    } else {
      for (const d of vm.disks) await qemuImgSnapshot(vm, command, '-c', name, d.path);
    }
  });
  const extra: Record<string, string> = { snaptime: String(Math.floor(Date.now() / 1000)) };
  if (opts.vmstate) extra.runningmachine = 'pc-i440fx-7.2';
  fs.writeFileSync(vm.confPath, confAddSnapshot(fs.readFileSync(vm.confPath, 'utf8'), name, extra));
}

export async function qmDelsnapshot(vm: SimVm, name: string): Promise<void> {
  const command = `delsnapshot ${vm.vmid} ${name}`;
  if (!snapshotNames(fs.readFileSync(vm.confPath, 'utf8')).includes(name)) {
    throw SimQmError({ vmid: vm.vmid, command, reason: `snapshot '${name}' does not exist` });
  }
  await withConfLock(vm, command, 'snapshot-delete', async () => {
    for (const d of vm.disks) {
      if (vm.running()) await vm.qmp((q) => q.execute('blockdev-snapshot-delete-internal-sync', { device: `drive-${d.key}`, name }));
      else await qemuImgSnapshot(vm, command, '-d', name, d.path);
    }
  });
  fs.writeFileSync(vm.confPath, confDeleteSnapshot(fs.readFileSync(vm.confPath, 'utf8'), name));
}

/** qemu-server's snapshot names: a letter first, then letters, digits, `-` and `_` (max 40). */
function checkSnapshotName(vm: SimVm, command: string, name: string): void {
  if (!/^[a-z][a-z0-9_-]{1,39}$/i.test(name) || name === 'current' || name === 'vzdump') {
    throw SimQmError({ vmid: vm.vmid, command, reason: `invalid snapshot name '${name}'` });
  }
}

/** `lock: NAME` in the config while `fn` runs, as qemu-server marks a snapshot in progress. */
async function withConfLock(vm: SimVm, command: string, lock: string, fn: () => Promise<void>): Promise<void> {
  const held = confGet(fs.readFileSync(vm.confPath, 'utf8'), 'lock');
  if (held !== undefined) throw SimQmError({ vmid: vm.vmid, command, reason: `VM is locked (${held})` });
  fs.writeFileSync(vm.confPath, confSet(fs.readFileSync(vm.confPath, 'utf8'), { lock }));
  try {
    await fn();
  } finally {
    fs.writeFileSync(vm.confPath, confSet(fs.readFileSync(vm.confPath, 'utf8'), { lock: undefined }));
  }
}

async function qemuImgSnapshot(vm: SimVm, command: string, op: '-c' | '-d', name: string, file: string): Promise<void> {
  try {
    await execFileP('qemu-img', ['snapshot', op, name, file]);
  } catch (err) {
    throw SimQmError({ vmid: vm.vmid, command, reason: (err as { stderr?: string; message: string }).stderr?.trim() || (err as Error).message });
  }
}
