/**
 * Builds the qemu-system-x86_64 command line the way qemu-server does for PVE 7/8 (`-drive` layout):
 * daemonized, QMP on VMID.qmp, pid file, `-drive if=none,id=drive-KEY` + `-device ...,drive=drive-KEY,id=KEY`.
 * Differences from real Proxmox, all deliberate: TCG instead of KVM, no `-id` (a Proxmox-only patch),
 * no guest OS, and efidisk0/tpmstate0 are plain `-drive if=none` without a device (a pflash/TPM
 * setup adds nothing the tests need, and their query-block entries look the same).
 */

export interface QemuDiskArg {
  key: string;
  format: string;
  path: string;
}

export interface QemuLaunch {
  vmid: number;
  name: string;
  qmpPath: string;
  pidPath: string;
  qgaPath?: string;
  disks: QemuDiskArg[];
  paused: boolean;
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
  if (l.paused) args.push('-S');
  if (l.qgaPath) {
    args.push(
      '-chardev', `socket,path=${l.qgaPath},server=on,wait=off,id=qga0`,
      '-device', 'virtio-serial,id=qga0',
      '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    );
  }
  if (l.disks.some((d) => d.key.startsWith('sata'))) args.push('-device', 'ahci,id=ahci0');
  const cacheOpts = l.directIo ? 'cache=none,aio=io_uring' : 'cache=writeback,aio=threads';
  for (const d of l.disks) {
    args.push('-drive', `file=${d.path},if=none,id=drive-${d.key},format=${d.format},${cacheOpts}`);
    const device = deviceArg(d.key);
    if (device) args.push('-device', device);
  }
  if (!l.disks.some((d) => d.key === 'ide2')) {
    args.push('-drive', 'if=none,id=drive-ide2,media=cdrom', '-device', 'ide-cd,bus=ide.1,unit=0,drive=drive-ide2,id=ide2');
  }
  return args;
}

function deviceArg(key: string): string | undefined {
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
