/**
 * The config a restored VM gets, computed from the one its backup kept (manifest `config.conf`),
 * as qemu-server's restore rewrites it line by line (restore_update_config_line):
 *
 * - only the current section is used: snapshot sections and `parent:` go (snapshots are not
 *   restored), so does `lock:`;
 * - a restored disk keeps its options and gets the new volid and `size=`;
 * - a disk the backup lacks (`backup=0`, pass-through) is dropped and reported, never left naming
 *   the old VM's volume, and leaves the boot order; cd-roms and `none` stay as they are;
 * - a restored disk without a line in the kept config gets one (a volume is never left unnamed);
 * - `unusedN` volumes of the old VM are dropped (they are not in the backup);
 * - `vmgenid` is always regenerated unless it is `0` (the guest must see a new generation);
 * - with `unique`, every `netN` MAC (`virtio=MAC` or `macaddr=MAC`) and the `smbios1` uuid are new,
 *   MACs with Proxmox's default prefix BC:24:11.
 *
 * Replacing one disk of an existing VM (`replaceDisk`) edits only that line of the current section
 * (snapshot sections stay: they may still need the old volume) and keeps the old volume as the
 * lowest free `unusedN`, as `qm disk move` without delete does.
 *
 * Pure: the randomness comes in as a function, so the rules are table-tested with literal configs.
 */
import { configVolumes } from '../pve/node-volumes';
import { parsePropertyString } from '../pve/vm-config';
import { pveSize } from '../pve/vm-config';

export const DISK_KEY = /^(ide\d+|sata\d+|scsi\d+|virtio\d+|efidisk0|tpmstate0)$/;
export const MAC_PREFIX = 'BC:24:11';
const NET_MODELS = ['e1000', 'e1000-82540em', 'e1000-82544gc', 'e1000-82545em', 'e1000e', 'i82551', 'i82557b', 'i82559er', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio', 'vmxnet3'];

export interface NewVolume {
  readonly volid: string;
  readonly sizeBytes: number;
}

export interface DroppedLine {
  readonly key: string;
  readonly value: string;
  readonly reason: 'not in the backup' | 'unused volume' | 'snapshot parent' | 'lock';
}

export type RandomBytes = (n: number) => Buffer;

/** A version 4 uuid from 16 random bytes. */
export function uuidFrom(random: RandomBytes): string {
  const b = Buffer.from(random(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function randomMac(random: RandomBytes, prefix = MAC_PREFIX): string {
  const tail = [...random(3)].map((x) => x.toString(16).padStart(2, '0').toUpperCase());
  return [prefix, ...tail].join(':');
}

/** Splits `KEY: VALUE`; undefined for other lines. */
function splitLine(line: string): { key: string; value: string } | undefined {
  const m = /^([a-z][a-z0-9_-]*):\s*(.*)$/i.exec(line.trim());
  return m ? { key: m[1], value: m[2] } : undefined;
}

/** `VOLID,opt=..,size=..` with the file and size replaced, the other options in their order. */
export function withVolume(value: string, v: NewVolume): string {
  const parts = value.split(',').filter((p) => p.trim() !== '');
  let sawFile = false;
  let sawSize = false;
  const out = parts.map((p) => {
    const eq = p.indexOf('=');
    if (eq < 0 || p.startsWith('file=')) {
      sawFile = true;
      return v.volid;
    }
    if (p.startsWith('size=')) {
      sawSize = true;
      return `size=${pveSize(v.sizeBytes)}`;
    }
    return p;
  });
  if (!sawFile) out.unshift(v.volid);
  if (!sawSize) out.push(`size=${pveSize(v.sizeBytes)}`);
  return out.join(',');
}

function isCdromOrNone(value: string): boolean {
  const o = parsePropertyString(value, 'file');
  return o.media === 'cdrom' || o.file === 'none' || o.file === undefined;
}

function newMac(value: string, random: RandomBytes): string {
  let done = false;
  const parts = value.split(',').map((p) => {
    const eq = p.indexOf('=');
    const k = eq < 0 ? '' : p.slice(0, eq);
    if (k === 'macaddr' || NET_MODELS.includes(k)) {
      done = true;
      return `${k}=${randomMac(random)}`;
    }
    return p;
  });
  // `model=virtio` without a MAC: qemu-server would have generated one; give it one now.
  if (!done) parts.push(`macaddr=${randomMac(random)}`);
  return parts.join(',');
}

function newSmbiosUuid(value: string, random: RandomBytes): string {
  const parts = value.split(',').filter((p) => p !== '' && !p.startsWith('uuid='));
  return [`uuid=${uuidFrom(random)}`, ...parts].join(',');
}

export interface RestoredConfigInput {
  /** The config the backup kept (its current section; anything after a `[section]` is ignored). */
  readonly savedConf: string;
  /** Restored disks: config key → new volume. */
  readonly volumes: ReadonlyMap<string, NewVolume>;
  readonly unique: boolean;
  readonly random: RandomBytes;
}

export function restoredConfig(input: RestoredConfigInput): { text: string; dropped: DroppedLine[] } {
  const out: string[] = [];
  const dropped: DroppedLine[] = [];
  const emitted = new Set<string>();
  for (const line of input.savedConf.split('\n')) {
    if (line.trim().startsWith('[')) break;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      out.push(line);
      continue;
    }
    const kv = splitLine(line);
    if (!kv) continue;
    const { key, value } = kv;
    const drop = (reason: DroppedLine['reason']): void => void dropped.push({ key, value, reason });
    if (key === 'parent') drop('snapshot parent');
    else if (key === 'lock') drop('lock');
    else if (/^unused\d+$/.test(key)) drop('unused volume');
    else if (DISK_KEY.test(key)) {
      const v = input.volumes.get(key);
      if (v) {
        out.push(`${key}: ${withVolume(value, v)}`);
        emitted.add(key);
      } else if (isCdromOrNone(value)) out.push(`${key}: ${value}`);
      else drop('not in the backup');
    } else if (key === 'vmgenid' && value !== '0') out.push(`vmgenid: ${uuidFrom(input.random)}`);
    else if (input.unique && key === 'smbios1') out.push(`smbios1: ${newSmbiosUuid(value, input.random)}`);
    else if (input.unique && /^net\d+$/.test(key)) out.push(`${key}: ${newMac(value, input.random)}`);
    else out.push(`${key}: ${value}`);
  }
  // A restored volume the kept config has no line for must still be named, or it would be orphaned.
  for (const [key, v] of input.volumes) if (!emitted.has(key)) out.push(`${key}: ${withVolume('', v)}`);
  const gone = new Set(dropped.filter((d) => d.reason === 'not in the backup').map((d) => d.key));
  const text = out.map((l) => (l.startsWith('boot:') && gone.size ? withoutBootDevices(l, gone) : l)).join('\n');
  return { text: `${text}\n`, dropped };
}

/** `boot: order=a;b;c` without the devices that are gone (other boot options kept). */
function withoutBootDevices(line: string, gone: ReadonlySet<string>): string {
  return line.replace(/(order=)([^,]*)/, (_m, prefix: string, list: string) => prefix + list.split(';').filter((d) => !gone.has(d)).join(';'));
}

export interface ReplaceDiskInput {
  /** The existing VMID.conf, all sections. */
  readonly existingConf: string;
  readonly vmid: number;
  readonly key: string;
  /** The disk's line in the backup's config, used when the VM has no such disk now. */
  readonly backupValue: string | undefined;
  readonly volume: NewVolume;
}

/** One disk of an existing config swapped for a new volume; the old one becomes `unusedN`. */
export function replaceDisk(input: ReplaceDiskInput): { text: string; oldVolid: string | undefined; unusedKey: string | undefined } {
  const lines = input.existingConf.split('\n');
  let end = lines.findIndex((l) => l.trim().startsWith('['));
  if (end < 0) end = lines.length;
  const head = lines.slice(0, end);
  const tail = lines.slice(end);
  const at = head.findIndex((l) => splitLine(l)?.key === input.key);
  const current = at < 0 ? undefined : splitLine(head[at])?.value;
  const base = current !== undefined && !isCdromOrNone(current) ? current : (input.backupValue ?? '');
  const newLine = `${input.key}: ${withVolume(base, input.volume)}`;
  let oldVolid: string | undefined;
  if (current !== undefined && !isCdromOrNone(current)) oldVolid = parsePropertyString(current, 'file').file;
  if (at < 0) head.splice(lastLineEnd(head), 0, newLine);
  else head[at] = newLine;
  let unusedKey: string | undefined;
  // A pass-through device is no volume to keep; an old volume still named elsewhere stays named there.
  const stillNamed = oldVolid !== undefined && configVolumes(input.vmid, head.join('\n')).some((v) => v.volid === oldVolid);
  if (oldVolid !== undefined && !oldVolid.startsWith('/') && !stillNamed) {
    const used = new Set(head.map((l) => /^unused(\d+):/.exec(l.trim())?.[1]).filter((n) => n !== undefined).map(Number));
    let n = 0;
    while (used.has(n)) n++;
    unusedKey = `unused${n}`;
    head.splice(lastLineEnd(head), 0, `${unusedKey}: ${oldVolid}`);
  }
  return { text: [...head, ...tail].join('\n'), oldVolid, unusedKey };
}

/** Where a new line goes in a section: after its last non-blank line. */
function lastLineEnd(lines: readonly string[]): number {
  let i = lines.length;
  while (i > 0 && lines[i - 1].trim() === '') i--;
  return i;
}

/** Indices N already used by `vm-VMID-disk-N.*` anywhere in a config (snapshot sections too). */
export function usedDiskIndices(vmid: number, conf: string): Set<number> {
  const re = new RegExp(`\\bvm-${vmid}-disk-(\\d+)\\b`, 'g');
  return new Set([...conf.matchAll(re)].map((m) => Number(m[1])));
}

/** The name PVE's dir plugin would pick: the lowest free `vm-VMID-disk-N.FMT`. */
export function nextDiskName(vmid: number, format: string, used: Set<number>): { name: string; index: number } {
  let n = 0;
  while (used.has(n)) n++;
  return { name: `vm-${vmid}-disk-${n}.${format}`, index: n };
}

/**
 * The volumes a VM owns by name (`STORAGE:…vm-VMID-…`) in a config's current section: disks and
 * `unusedN`. Pass-through devices and other VMs' volumes (linked clones' bases, ISO images) are
 * never the VM's to free.
 */
export function ownedVolumes(vmid: number, conf: string): string[] {
  const owned = (volid: string): boolean => {
    const m = /^[a-z][a-z0-9_.-]*:(.+)$/i.exec(volid);
    return m !== null && (m[1].split('/').pop() ?? '').startsWith(`vm-${vmid}-`);
  };
  return [...new Set(configVolumes(vmid, conf).map((v) => v.volid).filter(owned))];
}
