/**
 * Which VMs one `pve-cbt backup` request backs up: the VMIDs named, `--all` (every VM of this node)
 * or `--pool NAME` (the pool's members from /etc/pve/user.cfg that are on this node), resolved by
 * the daemon from its own view of the node (select-vms.ts, as scheduled jobs are). A selection that
 * finds no VM is CBT_BACKUP_SELECTION_EMPTY with the reason (unknown pool, no member here, no VM):
 * a backup of nothing must not look like success.
 */
import fs from 'node:fs';
import { BackupSelectionEmptyError, BackupSelectionInvalidError } from './service-errors';
import { listNodeVmids, poolMembers, selectVms, userCfgPath } from './select-vms';

export interface BackupSelection {
  vmids?: number[];
  all?: boolean;
  pool?: string;
}

/** Whether user.cfg text declares the pool (a pool may exist with no member); pure. */
export function poolDeclared(userCfg: string, pool: string): boolean {
  return userCfg.split('\n').some((line) => {
    const f = line.trim().split(':');
    return f[0] === 'pool' && f[1] === pool;
  });
}

function readUserCfg(configDir: string): string {
  try {
    return fs.readFileSync(userCfgPath(configDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

export function resolveBackupSelection(sel: BackupSelection, configDir: string): number[] {
  const given = (['vmids', 'all', 'pool'] as const).filter((k) => sel[k] !== undefined);
  if (given.length !== 1) throw BackupSelectionInvalidError({ given: [...given] });
  if (sel.vmids) return sel.vmids;
  if (sel.all) {
    const vmids = listNodeVmids(configDir);
    if (vmids.length === 0) {
      throw BackupSelectionEmptyError({ selection: '--all', reason: `no VM config in ${configDir}`, hint: 'qemuServerConfigDir in the config must be the node\'s qemu-server folder' });
    }
    return vmids;
  }
  const pool = sel.pool ?? '';
  const text = readUserCfg(configDir);
  if (!poolDeclared(text, pool)) {
    throw BackupSelectionEmptyError({ selection: `--pool ${pool}`, reason: `no pool '${pool}' in ${userCfgPath(configDir)}`, hint: "'pveum pool list' shows the pools" });
  }
  const vmids = selectVms({ pool }, configDir);
  if (vmids.length === 0) {
    const members = poolMembers(text, pool);
    const reason = members.length ? `its members (${members.join(', ')}) are not on this node` : 'the pool has no VM';
    throw BackupSelectionEmptyError({ selection: `--pool ${pool}`, reason, hint: "'pveum pool list' shows the pools and their members" });
  }
  return vmids;
}
