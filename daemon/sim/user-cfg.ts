/**
 * The simulated node's /etc/pve/user.cfg, as PVE::AccessControl's write_user_config lays it out:
 * `user:` lines, a blank line, then one line per pool in name order,
 *
 *     pool:NAME:COMMENT:VMID,VMID,...:STORAGE,...:
 *
 * with the VMIDs and storages sorted as strings (Perl `sort keys`), and a blank line after. What
 * `pveum pool add NAME` and `pveum pool modify NAME --vms ...` leave there, so pve-cbt's pool
 * selection (daemon/service/select-vms.ts) reads a file of the real shape. Pool names follow
 * `verify_poolname` (letters, digits, `.`, `-`, `_`); comments are not simulated.
 */
import { SimSpecError } from './sim-errors';

export interface SimPool {
  readonly vmids: readonly number[];
  readonly storages?: readonly string[];
}

const POOL_NAME = /^[A-Za-z0-9.\-_]+$/;

export function renderUserCfg(pools: ReadonlyMap<string, SimPool>): string {
  const lines = ['user:root@pam:1:0:::root@localhost:::', ''];
  for (const name of [...pools.keys()].sort()) {
    if (!POOL_NAME.test(name)) throw SimSpecError({ reason: `pool name '${name}' has characters PVE refuses` });
    const p = pools.get(name)!;
    const vms = p.vmids.map(String).sort().join(',');
    const storages = [...(p.storages ?? [])].sort().join(',');
    lines.push(`pool:${name}::${vms}:${storages}:`);
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
