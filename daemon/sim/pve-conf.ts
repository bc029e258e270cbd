/**
 * Writes and edits `/etc/pve/qemu-server/VMID.conf` in qemu-server's syntax: `key: value` lines,
 * keys sorted, then one `[snapname]` section per snapshot. The simulated config deliberately carries
 * what a careless parser trips over: a cd-rom drive (`ide2: none,media=cdrom`), a detached
 * `unused0` volume, and a snapshot section naming a disk the current config no longer has.
 */
import fs from 'node:fs';
import { pveSize } from '../pve/vm-config';

export { pveSize };

export interface ConfDisk {
  key: string;
  volid: string;
  sizeBytes: number;
  backup: boolean;
}

export interface ConfSpec {
  vmid: number;
  name: string;
  disks: ConfDisk[];
  agent: boolean;
  hookscript?: string;
  /** `blockdev` pins a PVE 9 machine version (>= 10 selects qemu-server's -blockdev layout). */
  layout?: 'drive' | 'blockdev';
}

export const SNAPSHOT_NAME = 'before-upgrade';

export function renderConf(spec: ConfSpec): string {
  const diskLine = (d: ConfDisk): string => `${d.volid},size=${pveSize(d.sizeBytes)}${d.backup ? '' : ',backup=0'}`;
  const common: Record<string, string> = {
    boot: `order=${[...spec.disks.map((d) => d.key), 'ide2'].join(';')}`,
    cores: '1',
    memory: '64',
    name: spec.name,
    ostype: 'l26',
    scsihw: 'virtio-scsi-pci',
    sockets: '1',
  };
  if (!spec.disks.some((d) => d.key === 'ide2')) common.ide2 = 'none,media=cdrom';
  for (const d of spec.disks) common[d.key] = diskLine(d);

  const current: Record<string, string> = {
    ...common,
    meta: 'creation-qemu=7.2.0,ctime=1700000000',
    parent: SNAPSHOT_NAME,
    smbios1: `uuid=00000000-0000-4000-8000-${String(spec.vmid).padStart(12, '0')}`,
    unused0: `local:${spec.vmid}/vm-${spec.vmid}-disk-99.raw`,
    vmgenid: `00000000-0000-4000-9000-${String(spec.vmid).padStart(12, '0')}`,
  };
  if (spec.agent) current.agent = '1';
  if (spec.layout === 'blockdev') current.machine = 'pc-i440fx-10.0+pve0';
  if (spec.hookscript) current.hookscript = spec.hookscript;

  const snapshot: Record<string, string> = {
    ...common,
    scsi30: `local:${spec.vmid}/vm-${spec.vmid}-disk-98.qcow2,size=8M`,
    snaptime: '1700000000',
  };
  return `${section(current)}\n[${SNAPSHOT_NAME}]\n${section(snapshot)}`;
}

/** Sets or removes `hookscript:` in the current section only (snapshot sections keep theirs). */
export function setConfHookscript(confPath: string, volid: string | undefined): void {
  const text = fs.readFileSync(confPath, 'utf8');
  const cut = text.search(/^\[/m);
  const head = cut < 0 ? text : text.slice(0, cut);
  const tail = cut < 0 ? '' : text.slice(cut);
  const lines = head.split('\n').filter((l) => l !== '' && !l.startsWith('hookscript:'));
  if (volid !== undefined) lines.push(`hookscript: ${volid}`);
  lines.sort();
  fs.writeFileSync(confPath, `${lines.join('\n')}\n${tail === '' ? '' : `\n${tail}`}`);
}

/** The `hookscript:` volid of the current section, read afresh before each phase like qemu-server does. */
export function readConfHookscript(confPath: string): string | undefined {
  // No config on this node (migrated away): qemu-server runs no hook.
  if (!fs.existsSync(confPath)) return undefined;
  const text = fs.readFileSync(confPath, 'utf8');
  for (const line of text.split('\n')) {
    if (line.startsWith('[')) break;
    const m = /^hookscript:\s*(\S+)/.exec(line);
    if (m) return m[1];
  }
  return undefined;
}

function section(entries: Record<string, string>): string {
  return Object.keys(entries)
    .sort()
    .map((k) => `${k}: ${entries[k]}\n`)
    .join('');
}
