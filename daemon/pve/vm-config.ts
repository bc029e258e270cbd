/**
 * Parser for qemu-server VM config files (`/etc/pve/qemu-server/VMID.conf`).
 *
 * Format: `KEY: VALUE` lines, `#` lines are the VM description. The current config ends at the
 * first `[name]` line: everything after it is a snapshot (or `[PENDING]`/`[special:...]`) section
 * and does not describe the running disks. Disk values are a volume id (or `file=VOLID`) followed
 * by comma-separated `key=value` options, e.g. `local:100/vm-100-disk-0.qcow2,size=32G`.
 *
 * Only disks a backup must read are returned: cdroms (`media=cdrom`), `backup=0` disks, `none`
 * placeholders and detached `unusedN` volumes are skipped; `efidisk0` and `tpmstate0` are included.
 * Pure: no file system access, so it is table-tested with literal configs.
 */

export type DiskFormat = 'raw' | 'qcow2' | 'vmdk';

export interface VmConfigDisk {
  /** Config key and QEMU qdev id, e.g. `scsi0`, `efidisk0`. */
  readonly key: string;
  /** Proxmox volume id (`local-lvm:vm-100-disk-1`) or an absolute path for pass-through devices. */
  readonly volid: string;
  readonly format: DiskFormat;
  /** Size from the `size=` option in bytes, when present (informational; QEMU/the image is authoritative). */
  readonly sizeBytes: number | undefined;
  readonly options: Readonly<Record<string, string>>;
}

export interface VmConfig {
  readonly vmid: number;
  readonly agentEnabled: boolean;
  readonly hookscript: string | undefined;
  readonly tags: readonly string[];
  readonly disks: readonly VmConfigDisk[];
  /** Every `KEY: VALUE` of the current section, for callers needing more than the above. */
  readonly entries: Readonly<Record<string, string>>;
}

const DISK_KEY = /^(ide\d+|sata\d+|scsi\d+|virtio\d+|efidisk0|tpmstate0)$/;
const SIZE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Parses `32G`, `4M`, `512K`, `1T` or a plain byte count; undefined when unparseable. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/i.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()]);
}

/** Proxmox writes sizes with the largest exact unit: 32G, 512M, 528K (the inverse of parseSize). */
export function pveSize(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [unit, factor] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return String(bytes);
}

/**
 * Splits a property string whose first element may omit its key (`1,fstrim_cloned_disks=1` or
 * `local:100/x.qcow2,size=4G`) into the default-key value and the named options.
 */
export function parsePropertyString(value: string, defaultKey: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) out[defaultKey] = item;
    else out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** Format from an explicit `format=` option, else from the file extension; block storages are raw. */
export function diskFormat(volid: string, options: Record<string, string>): DiskFormat {
  const explicit = options.format;
  if (explicit === 'qcow2' || explicit === 'vmdk' || explicit === 'raw') return explicit;
  if (/\.qcow2$/i.test(volid)) return 'qcow2';
  if (/\.vmdk$/i.test(volid)) return 'vmdk';
  return 'raw';
}

function isAgentEnabled(value: string | undefined): boolean {
  if (value === undefined) return false;
  const enabled = parsePropertyString(value, 'enabled').enabled;
  return enabled === '1' || enabled === 'true' || enabled === 'on' || enabled === 'yes';
}

function parseDisk(key: string, value: string): VmConfigDisk | undefined {
  const options = parsePropertyString(value, 'file');
  const volid = options.file;
  if (volid === undefined || volid === '' || volid === 'none') return undefined;
  if (options.media === 'cdrom') return undefined;
  if (options.backup === '0' || options.backup === 'false' || options.backup === 'no' || options.backup === 'off') return undefined;
  const sizeBytes = options.size === undefined ? undefined : parseSize(options.size);
  return { key, volid, format: diskFormat(volid, options), sizeBytes, options };
}

/** Parses the current section of a VM config; lines that are not `KEY: VALUE` are ignored. */
export function parseVmConfig(vmid: number, text: string): VmConfig {
  const entries: Record<string, string> = {};
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line.startsWith('[')) break;
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-z][a-z0-9_-]*):\s*(.*)$/i.exec(line);
    if (m) entries[m[1]] = m[2];
  }
  const disks: VmConfigDisk[] = [];
  for (const [key, value] of Object.entries(entries)) {
    if (!DISK_KEY.test(key)) continue;
    const disk = parseDisk(key, value);
    if (disk) disks.push(disk);
  }
  disks.sort((a, b) => diskOrder(a.key) - diskOrder(b.key) || a.key.localeCompare(b.key, 'en', { numeric: true }));
  const tags = (entries.tags ?? '').split(/[;,\s]+/).filter((t) => t !== '');
  return { vmid, agentEnabled: isAgentEnabled(entries.agent), hookscript: entries.hookscript, tags, disks, entries };
}

/** Stable order: bus order as qemu-server lists drives, then efidisk and tpmstate. */
function diskOrder(key: string): number {
  const order = ['ide', 'sata', 'scsi', 'virtio', 'efidisk', 'tpmstate'];
  return order.findIndex((p) => key.startsWith(p));
}
