/**
 * Which VMs a configured job covers. A job names VMIDs, `all`, a pool or a tag, as vzdump jobs do.
 * VMs are the `VMID.conf` files of this node's qemu-server config folder; pools come from
 * `/etc/pve/user.cfg` (`pool:NAME:COMMENT:VM1,VM2,...:STORAGES:`), found beside that folder's parent.
 * Only VMs whose config exists on this node are returned (a migrated VM is backed up where it runs).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { VmSelector } from '../config/config-schema';
import { PveConfigMissingError } from '../pve/pve-errors';
import { readVmConfig } from '../pve/vm-disks';

export function listNodeVmids(configDir: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(configDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .map((n) => /^(\d+)\.conf$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** Members of a pool from user.cfg text; pure. */
export function poolMembers(userCfg: string, pool: string): number[] {
  for (const line of userCfg.split('\n')) {
    const f = line.trim().split(':');
    if (f[0] === 'pool' && f[1] === pool) {
      return (f[3] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => /^\d+$/.test(s))
        .map(Number);
    }
  }
  return [];
}

export function userCfgPath(configDir: string): string {
  // /etc/pve/qemu-server → /etc/pve/user.cfg (qemu-server is a link into nodes/NODE/).
  return path.join(path.dirname(path.resolve(configDir)), 'user.cfg');
}

function isVmList(selector: VmSelector): selector is readonly number[] {
  return Array.isArray(selector);
}

export function selectVms(selector: VmSelector, configDir: string): number[] {
  const onNode = listNodeVmids(configDir);
  if (selector === 'all') return onNode;
  if (isVmList(selector)) return onNode.filter((id) => selector.includes(id));
  if ('pool' in selector) {
    let text = '';
    try {
      text = fs.readFileSync(userCfgPath(configDir), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const members = poolMembers(text, selector.pool);
    return onNode.filter((id) => members.includes(id));
  }
  return onNode.filter((id) => tagsOf(configDir, id).includes(selector.tag));
}

/** A VM destroyed between listing and reading has no tags (it is not selected, and no error). */
function tagsOf(configDir: string, vmid: number): readonly string[] {
  try {
    return readVmConfig(configDir, vmid).tags;
  } catch (err) {
    if (PveConfigMissingError.is(err)) return [];
    throw err;
  }
}
