/**
 * Detaching, re-attaching and removing disks, and `qm destroy`, as qemu-server does them
 * (PVE/API2/Qemu.pm `update_vm_api`, `vmconfig_delete_or_detach_drive`, PVE/QemuServer.pm
 * `vm_deviceunplug`/`vm_deviceplug`, `destroy_vm`). None of them fires a hook.
 *
 *   qmDiskDetach   `qm set VMID --delete KEY` (or `qm disk unlink VMID --idlist KEY`): the volume
 *                  becomes `unusedN`; on a running VM the disk is hot-unplugged first: `device_del`
 *                  (waited for until QEMU no longer lists it), then `drive_del` (`-drive` layout) or
 *                  `blockdev-del` of `drive-KEY` and `object-del` of its throttle group (`-blockdev`);
 *   qmDiskAttach   `qm set VMID --KEY VOLID` with an `unusedN` volume: the line moves back; on a running
 *                  VM the disk is hot-plugged: `drive_add` (HMP) or `object-add` + `blockdev-add`, then
 *                  `device_add`;
 *   qmDiskRemove   `qm set VMID --delete unusedN` (or `qm disk unlink --force`): the volume is deleted;
 *   qmDestroy      `qm destroy VMID` of a stopped VM: every volume the config names is deleted (a
 *                  missing one only warns), then the config; the VM no longer exists on the node.
 * The simulator keeps a detached disk's reference twin with it, so a re-attached disk is checked too.
 */
import fs from 'node:fs';
import { hmp } from '../qmp/hmp';
import { queryDisks } from '../qmp/query-disks';
import { confEntries, confSet, nextUnusedKey } from './conf-edit';
import { pveSize } from './pve-conf';
import type { SimDisk, SimVm } from './pve-node';
import { SimQmError } from './qm-errors';
import { blockdevTree, deviceArg } from './qemu-command';

const UNPLUG_WAIT_MS = 10_000;

/** Disks detached by qmDiskDetach, by VM and volid, until re-attached or removed. */
const detached = new WeakMap<SimVm, Map<string, SimDisk>>();

function detachedOf(vm: SimVm): Map<string, SimDisk> {
  let m = detached.get(vm);
  if (!m) detached.set(vm, (m = new Map()));
  return m;
}

export async function qmDiskDetach(vm: SimVm, key: string): Promise<{ unusedKey: string; volid: string }> {
  const command = `set ${vm.vmid} --delete ${key}`;
  const i = vm.disks.findIndex((d) => d.key === key);
  if (i < 0) throw SimQmError({ vmid: vm.vmid, command, reason: `disk '${key}' does not exist` });
  const disk = vm.disks[i];
  if (vm.running()) await unplug(vm, command, disk);
  vm.disks.splice(i, 1);
  detachedOf(vm).set(disk.volid, disk);
  const text = fs.readFileSync(vm.confPath, 'utf8');
  const unusedKey = nextUnusedKey(text);
  fs.writeFileSync(vm.confPath, confSet(text, { [key]: undefined, [unusedKey]: disk.volid, boot: bootWithout(confEntries(text).boot, key) }));
  return { unusedKey, volid: disk.volid };
}

export async function qmDiskAttach(vm: SimVm, key: string, volid: string): Promise<void> {
  const command = `set ${vm.vmid} --${key} ${volid}`;
  const text = fs.readFileSync(vm.confPath, 'utf8');
  const entries = confEntries(text);
  if (entries[key] !== undefined) throw SimQmError({ vmid: vm.vmid, command, reason: `${key} is in use` });
  const unusedKey = Object.keys(entries).find((k) => /^unused\d+$/.test(k) && entries[k] === volid);
  const disk = detachedOf(vm).get(volid);
  if (!unusedKey || !disk) throw SimQmError({ vmid: vm.vmid, command, reason: `${volid} is not an unused volume of this VM` });
  const attached: SimDisk = { ...disk, key };
  if (vm.running()) await plug(vm, command, attached);
  detachedOf(vm).delete(volid);
  vm.disks.push(attached);
  fs.writeFileSync(vm.confPath, confSet(text, { [unusedKey]: undefined, [key]: `${volid},size=${pveSize(disk.sizeBytes)}` }));
}

/** Deletes an `unusedN` volume and its config line. */
export async function qmDiskRemove(vm: SimVm, unusedKey: string): Promise<void> {
  const command = `set ${vm.vmid} --delete ${unusedKey}`;
  const text = fs.readFileSync(vm.confPath, 'utf8');
  const volid = /^unused\d+$/.test(unusedKey) ? confEntries(text)[unusedKey] : undefined;
  if (volid === undefined) throw SimQmError({ vmid: vm.vmid, command, reason: `${unusedKey} is not an unused volume` });
  const disk = detachedOf(vm).get(volid);
  if (disk) fs.rmSync(disk.path, { force: true });
  detachedOf(vm).delete(volid);
  fs.writeFileSync(vm.confPath, confSet(text, { [unusedKey]: undefined }));
}

export async function qmDestroy(vm: SimVm): Promise<void> {
  const command = `destroy ${vm.vmid}`;
  if (vm.running()) throw SimQmError({ vmid: vm.vmid, command, reason: 'VM is running - destroy failed' });
  for (const d of [...vm.disks, ...detachedOf(vm).values()]) fs.rmSync(d.path, { force: true });
  vm.disks.splice(0, vm.disks.length);
  detached.delete(vm);
  fs.rmSync(vm.confPath);
}

function bootWithout(boot: string | undefined, key: string): string | undefined {
  if (boot === undefined) return undefined;
  const m = /^order=(.*)$/.exec(boot);
  if (!m) return boot;
  return `order=${m[1].split(';').filter((k) => k !== key).join(';')}`;
}

async function unplug(vm: SimVm, command: string, disk: SimDisk): Promise<void> {
  await vm.qmp((q) => q.execute('device_del', { id: disk.key }));
  const deadline = Date.now() + UNPLUG_WAIT_MS;
  while ((await vm.qmp((q) => queryDisks(q))).some((d) => d.drive === disk.key)) {
    if (Date.now() > deadline) throw SimQmError({ vmid: vm.vmid, command, reason: `${disk.key} still attached ${UNPLUG_WAIT_MS} ms after device_del` });
    await new Promise((r) => setTimeout(r, 50));
  }
  if (vm.layout === 'blockdev') {
    await vm.qmp((q) => q.execute('blockdev-del', { 'node-name': `drive-${disk.key}` }));
    await vm.qmp((q) => q.execute('object-del', { id: `throttle-drive-${disk.key}` }));
  } else {
    // -drive backends go with their device; qemu-server still sends drive_del and ignores "not found".
    await vm.qmp((q) => hmp(q, `drive_del drive-${disk.key}`));
  }
}

async function plug(vm: SimVm, command: string, disk: SimDisk): Promise<void> {
  const direct = await anyFileNodeDirect(vm);
  if (vm.layout === 'blockdev') {
    await vm.qmp((q) => q.execute('object-add', { 'qom-type': 'throttle-group', id: `throttle-drive-${disk.key}`, limits: {} }));
    await vm.qmp((q) => q.execute('blockdev-add', blockdevTree(disk, direct)));
  } else {
    const cache = direct ? 'cache=none,aio=io_uring' : 'cache=writeback,aio=threads';
    const out = await vm.qmp((q) => hmp(q, `drive_add auto "file=${disk.path},if=none,id=drive-${disk.key},format=${disk.format},${cache}"`));
    if (!/OK/.test(out)) throw SimQmError({ vmid: vm.vmid, command, reason: `drive_add: ${out.trim()}` });
  }
  const device = deviceArg(disk.key);
  if (!device) throw SimQmError({ vmid: vm.vmid, command, reason: `${disk.key} cannot be hot-plugged` });
  const out = await vm.qmp((q) => hmp(q, `device_add ${device}`));
  if (out.trim() !== '') throw SimQmError({ vmid: vm.vmid, command, reason: `device_add: ${out.trim()}` });
}

/** Whether the VM's disks were opened with O_DIRECT (a hot-plugged disk is opened alike). */
async function anyFileNodeDirect(vm: SimVm): Promise<boolean> {
  const nodes = await vm.qmp((q) => q.execute<Array<{ drv: string; cache?: { direct?: boolean } }>>('query-named-block-nodes', { flat: true }));
  return nodes.some((n) => n.drv === 'file' && n.cache?.direct === true);
}
