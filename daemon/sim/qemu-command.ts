/**
 * Builds the qemu-system-x86_64 command line the way qemu-server does: daemonized, QMP on VMID.qmp,
 * pid file, and the disks in one of its two layouts:
 *
 * - `drive` (PVE 7/8): `-drive if=none,id=drive-KEY,format=F` + `-device ...,drive=drive-KEY,id=KEY`;
 * - `blockdev` (PVE 9, qemu-server Blockdev.pm): a throttle node `drive-KEY` in throttle group
 *   `throttle-drive-KEY`, over the format node `f<hash>` over the file node `e<hash>`, where hash is
 *   the first 30 hex digits of sha256("drive=KEY,volid=VOLID").
 *
 * Differences from real Proxmox, all deliberate: TCG instead of KVM, no `-id` (a Proxmox-only patch),
 * no guest OS, and in the `drive` layout efidisk0/tpmstate0 are plain `-drive if=none` without a
 * device (a pflash/TPM setup adds nothing the tests need, and their query-block entries look alike).
 */
import crypto from 'node:crypto';

export interface QemuDiskArg {
  key: string;
  format: string;
  path: string;
  volid: string;
}

export type DiskLayout = 'drive' | 'blockdev';

export interface QemuLaunch {
  vmid: number;
  name: string;
  qmpPath: string;
  pidPath: string;
  qgaPath?: string;
  disks: QemuDiskArg[];
  paused: boolean;
  /** `-incoming URI -S`: the target of a live migration (qemu-server's StateFile.pm). */
  incoming?: string;
  layout: DiskLayout;
  /** `cache=none,aio=io_uring` where O_DIRECT and io_uring work, else `cache=writeback,aio=threads`. */
  directIo: boolean;
}

export function qemuArgs(l: QemuLaunch): string[] {
  const args = [
    '-machine', 'accel=tcg',
    '-name', `${l.name},debug-threads=on`,
    '-m', '64',
    '-nographic',
    '-nodefaults',
    '-daemonize',
    '-no-shutdown',
    '-pidfile', l.pidPath,
    '-chardev', `socket,id=qmp,path=${l.qmpPath},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    '-device', 'virtio-scsi-pci,id=scsihw0',
  ];
  if (l.incoming) args.push('-incoming', l.incoming, '-S');
  else if (l.paused) args.push('-S');
  if (l.qgaPath) {
    args.push(
      '-chardev', `socket,path=${l.qgaPath},server=on,wait=off,id=qga0`,
      '-device', 'virtio-serial,id=qga0',
      '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    );
  }
  if (l.disks.some((d) => d.key.startsWith('sata'))) args.push('-device', 'ahci,id=ahci0');
  for (const d of l.disks) {
    if (l.layout === 'blockdev') {
      args.push('-object', JSON.stringify({ id: `throttle-drive-${d.key}`, limits: {}, 'qom-type': 'throttle-group' }));
      args.push('-blockdev', JSON.stringify(blockdevTree(d, l.directIo)));
    } else {
      // librbd does its own I/O: no aio mode, its cache for writeback (RBD images are `rbd:` names)
      const cacheOpts = d.path.startsWith('rbd:') ? 'cache=writeback' : l.directIo ? 'cache=none,aio=io_uring' : 'cache=writeback,aio=threads';
      args.push('-drive', `file=${d.path},if=none,id=drive-${d.key},format=${d.format},${cacheOpts}`);
    }
    const device = deviceArg(d.key);
    if (device) args.push('-device', device);
  }
  if (!l.disks.some((d) => d.key === 'ide2')) {
    if (l.layout === 'blockdev') args.push('-device', 'ide-cd,bus=ide.1,unit=0,id=ide2');
    else args.push('-drive', 'if=none,id=drive-ide2,media=cdrom', '-device', 'ide-cd,bus=ide.1,unit=0,drive=drive-ide2,id=ide2');
  }
  return args;
}

/** qemu-server's node names: `f`/`e` + 30 hex digits of sha256("drive=KEY,volid=VOLID"). */
export function blockdevNodeName(type: 'fmt' | 'file', key: string, volid: string): string {
  const hash = crypto.createHash('sha256').update(`drive=${key},volid=${volid}`).digest('hex').slice(0, 30);
  return `${type === 'fmt' ? 'f' : 'e'}${hash}`;
}

export function blockdevTree(d: QemuDiskArg, directIo: boolean): Record<string, unknown> {
  const cache = { direct: directIo, 'no-flush': false };
  const file = {
    driver: 'file',
    filename: d.path,
    'node-name': blockdevNodeName('file', d.key, d.volid),
    cache,
    aio: directIo ? 'io_uring' : 'threads',
    discard: 'ignore',
    'detect-zeroes': 'on',
    'read-only': false,
  };
  const format = { driver: d.format, 'node-name': blockdevNodeName('fmt', d.key, d.volid), file, cache, 'read-only': false };
  return { driver: 'throttle', 'node-name': `drive-${d.key}`, 'throttle-group': `throttle-drive-${d.key}`, file: format };
}

export function deviceArg(key: string): string | undefined {
  const m = /^([a-z]+)(\d+)$/.exec(key);
  if (!m) return undefined;
  const n = Number(m[2]);
  switch (m[1]) {
    case 'scsi':
      return `scsi-hd,bus=scsihw0.0,channel=0,scsi-id=0,lun=${n},drive=drive-${key},id=${key}`;
    case 'virtio':
      return `virtio-blk-pci,drive=drive-${key},id=${key}`;
    case 'sata':
      return `ide-hd,bus=ahci0.${n},drive=drive-${key},id=${key}`;
    case 'ide':
      return `ide-hd,bus=ide.${Math.floor(n / 2)},unit=${n % 2},drive=drive-${key},id=${key}`;
    default:
      return undefined;
  }
}
