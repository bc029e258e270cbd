/**
 * The VM config a backup keeps: the current section of `/etc/pve/qemu-server/VMID.conf` at backup
 * time (everything before the first `[section]` line: snapshot, `[PENDING]` and `[special:...]`
 * sections describe no disk the backup read) and `/etc/pve/firewall/VMID.fw` when present.
 *
 * The firewall dir is found beside the qemu-server dir (`/etc/pve/qemu-server` → `/etc/pve/firewall`),
 * so a simulated node's root-relative paths work the same. Read once per backup, at its start, with
 * the disk list parsed from the same text (no second read that could disagree).
 */
import fs from 'node:fs';
import path from 'node:path';
import { PveConfigMissingError } from './pve-errors';
import { vmConfigFile } from './vm-disks';
import type { SavedVmConfig } from '../repository/manifest';

export type { SavedVmConfig } from '../repository/manifest';

/** The text before the first `[name]` line, trailing blank lines dropped. Pure. */
export function currentSection(text: string): string {
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim().startsWith('[')) break;
    lines.push(line);
  }
  while (lines.length > 0 && lines[lines.length - 1].trim() === '') lines.pop();
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

export function firewallFile(qemuServerConfigDir: string, vmid: number): string {
  return path.join(path.dirname(path.resolve(qemuServerConfigDir)), 'firewall', `${vmid}.fw`);
}

export function readSavedVmConfig(qemuServerConfigDir: string, vmid: number): SavedVmConfig {
  const file = vmConfigFile(qemuServerConfigDir, vmid);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw PveConfigMissingError({ vmid, file }, err);
  }
  let firewall: string | null = null;
  try {
    firewall = fs.readFileSync(firewallFile(qemuServerConfigDir, vmid), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { conf: currentSection(text), firewall };
}
