/**
 * `qm disk move VMID KEY STORAGE [--format F] [--delete]` as qemu-server runs it (PVE/API2/Qemu.pm
 * `move_vm_disk`, PVE/QemuServer.pm, PVE/QemuServer/BlockJob.pm), for the simulator's one storage
 * `local`: a new volume `vm-VMID-disk-N.FMT` (the first free N) is allocated, then
 *
 *   running, PVE 7/8 `drive` layout: QMP `drive-mirror {device: drive-KEY, target: PATH, format,
 *     mode: existing, sync: full}`, polled until ready, then `block-job-complete`: QEMU swaps the
 *     drive's image for the new one;
 *   running, PVE 9 `blockdev` layout: `blockdev-add` of the new format node over its file node
 *     (node names hashed from the new volid, Blockdev.pm), then `blockdev-mirror {device: drive-KEY,
 *     target, replaces: the old format node, sync: full}`, ready, `block-job-complete`: the throttle
 *     node `drive-KEY` now sits on the new format node;
 *   stopped: `qemu-img convert -p -n -f SRC -O DST SRC_PATH DST_PATH` into the new volume;
 *
 * then the config line names the new volume (its options kept) and the old volume is deleted
 * (`--delete`) or kept as `unusedN`. qemu-server refuses `--delete` when a snapshot uses the volume.
 * No hook fires. Neither path carries pve-cbt's bitmap: a mirror target and a converted image start
 * without bitmaps, and the old volume keeps what it had (verified on QEMU 7.2 and 10.0).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { queryDisks } from '../qmp/query-disks';
import { confEntries, confSet, nextUnusedKey, snapshotsUseVolume } from './conf-edit';
import type { SimDisk, SimVm } from './pve-node';
import { waitBlockJob } from './qm-block-jobs';
import { SimQmError } from './qm-errors';
import { blockdevNodeName } from './qemu-command';

const execFileP = promisify(execFile);

export type SimDiskFormat = 'qcow2' | 'raw' | 'vmdk';

export interface DiskMoveResult {
  readonly oldVolid: string;
  readonly volid: string;
  readonly path: string;
  /** `unusedN` holding the old volume; absent with `--delete`. */
  readonly unusedKey?: string;
}

export interface DiskMoveOptions {
  readonly format?: SimDiskFormat;
  readonly delete?: boolean;
  /** Running move: called while the mirror job is ready and still mirroring (before block-job-complete). */
  readonly whileMirroring?: () => Promise<void>;
}

export async function qmDiskMove(vm: SimVm, key: string, opts: DiskMoveOptions = {}): Promise<DiskMoveResult> {
  const command = `disk move ${vm.vmid} ${key} local${opts.format ? ` --format ${opts.format}` : ''}${opts.delete ? ' --delete' : ''}`;
  const disk = vm.disks.find((d) => d.key === key);
  if (!disk) throw SimQmError({ vmid: vm.vmid, command, reason: `disk '${key}' does not exist` });
  const text = fs.readFileSync(vm.confPath, 'utf8');
  const line = confEntries(text)[key];
  if (opts.delete && snapshotsUseVolume(text, disk.volid).length > 0) {
    throw SimQmError({ vmid: vm.vmid, command, reason: "you can't move a disk with snapshots and delete the source" });
  }
  const format = opts.format ?? (disk.format as SimDiskFormat);
  const { volid, file } = allocateVolume(vm, text, format);
  await execFileP('qemu-img', ['create', '-q', '-f', format, file, String(disk.sizeBytes)]);
  try {
    if (vm.running()) await mirror(vm, command, disk, { volid, file, format }, opts.whileMirroring);
    else await convert(vm, command, disk, file, format);
  } catch (err) {
    fs.rmSync(file, { force: true });
    throw err;
  }
  const oldVolid = disk.volid;
  const oldPath = disk.path;
  Object.assign(disk, { volid, path: file, format });
  const changes: Record<string, string> = { [key]: [volid, ...line.split(',').slice(1)].join(',') };
  let unusedKey: string | undefined;
  if (opts.delete) {
    fs.rmSync(oldPath, { force: true });
  } else {
    unusedKey = nextUnusedKey(text);
    changes[unusedKey] = oldVolid;
  }
  fs.writeFileSync(vm.confPath, confSet(fs.readFileSync(vm.confPath, 'utf8'), changes));
  return { oldVolid, volid, path: file, ...(unusedKey ? { unusedKey } : {}) };
}

/** The first `vm-VMID-disk-N.FMT` that neither exists on the storage nor is named in the config. */
function allocateVolume(vm: SimVm, text: string, format: string): { volid: string; file: string } {
  const dir = path.dirname(vm.disks[0].path);
  for (let n = 0; ; n++) {
    const name = `vm-${vm.vmid}-disk-${n}`;
    const taken = fs.readdirSync(dir).some((f) => f.startsWith(`${name}.`)) || text.includes(`/${name}.`);
    if (!taken) return { volid: `local:${vm.vmid}/${name}.${format}`, file: path.join(dir, `${name}.${format}`) };
  }
}

async function mirror(vm: SimVm, command: string, disk: SimDisk, to: { volid: string; file: string; format: string }, during?: () => Promise<void>): Promise<void> {
  const jobId = `mirror-drive-${disk.key}`;
  if (vm.layout === 'blockdev') {
    const nodes = await vm.qmp((q) => queryDisks(q));
    const source = nodes.find((n) => n.drive === disk.key);
    if (!source) throw SimQmError({ vmid: vm.vmid, command, reason: `drive-${disk.key} is not attached in QEMU` });
    const direct = await fileNodeDirect(vm, blockdevNodeName('file', disk.key, disk.volid));
    const cache = { direct, 'no-flush': false };
    const target = {
      driver: to.format,
      'node-name': blockdevNodeName('fmt', disk.key, to.volid),
      cache,
      file: { driver: 'file', filename: to.file, 'node-name': blockdevNodeName('file', disk.key, to.volid), cache, aio: direct ? 'io_uring' : 'threads' },
    };
    await vm.qmp((q) => q.execute('blockdev-add', target));
    await vm.qmp((q) => q.execute('blockdev-mirror', { 'job-id': jobId, device: `drive-${disk.key}`, target: target['node-name'], replaces: source.nodeName, sync: 'full' }));
  } else {
    await vm.qmp((q) => q.execute('drive-mirror', { 'job-id': jobId, device: `drive-${disk.key}`, target: to.file, format: to.format, mode: 'existing', sync: 'full' }));
  }
  await waitBlockJob(vm, command, jobId, 'ready');
  if (during) await during();
  await vm.qmp((q) => q.execute('block-job-complete', { device: jobId }));
  await waitBlockJob(vm, command, jobId, 'gone');
  const now = (await vm.qmp((q) => queryDisks(q))).find((n) => n.drive === disk.key);
  if (now?.file !== to.file) throw SimQmError({ vmid: vm.vmid, command, reason: `after the mirror drive-${disk.key} reads ${now?.file}, not ${to.file}` });
}

/** Whether the old file node opened with O_DIRECT (the new one is opened alike). */
async function fileNodeDirect(vm: SimVm, nodeName: string): Promise<boolean> {
  const nodes = await vm.qmp((q) => q.execute<Array<{ 'node-name': string; cache?: { direct?: boolean } }>>('query-named-block-nodes', { flat: true }));
  return nodes.find((n) => n['node-name'] === nodeName)?.cache?.direct === true;
}

async function convert(vm: SimVm, command: string, disk: SimDisk, file: string, format: string): Promise<void> {
  try {
    await execFileP('qemu-img', ['convert', '-p', '-n', '-f', disk.format, '-O', format, disk.path, file]);
  } catch (err) {
    throw SimQmError({ vmid: vm.vmid, command, reason: (err as { stderr?: string; message: string }).stderr?.trim() || (err as Error).message });
  }
}
