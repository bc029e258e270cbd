/**
 * How `pve-cbt show` prints the VM config a backup keeps (manifest `config`): inside the normal
 * view as an indented block, or raw with `--vm-config` / `--firewall` (both: the conf, then the
 * firewall file after a `#`-comment separator line naming it). Pure.
 */
import type { Manifest } from '../repository/manifest';
import { RestoreVmNoConfigError } from '../restore/restore-vm-errors';

const OLD_BACKUP_HINT = 'the backup was made before pve-cbt kept VM configs';

export function firewallSeparator(vmid: number): string {
  return `#### firewall: /etc/pve/firewall/${vmid}.fw ####\n`;
}

/** The block appended to `show`'s text. */
export function savedConfigBlock(m: Manifest): string {
  if (!m.config) return 'config: not kept (backup made before pve-cbt kept VM configs)';
  const indent = (t: string): string => t.replace(/\n$/, '').split('\n').map((l) => `  ${l}`).join('\n');
  const lines = [`config (${m.vmid}.conf at backup time):`, indent(m.config.conf)];
  lines.push(m.config.firewall === null ? 'firewall: none' : `firewall (${m.vmid}.fw):\n${indent(m.config.firewall)}`);
  return lines.join('\n');
}

/** `show --vm-config` / `--firewall`: the files as they were, for a person to read or pipe. */
export function rawSavedConfig(m: Manifest, want: { conf: boolean; firewall: boolean }): string {
  if (!m.config) throw RestoreVmNoConfigError({ backupId: m.id, file: 'conf', hint: OLD_BACKUP_HINT });
  const { conf, firewall } = m.config;
  if (want.firewall && firewall === null) throw RestoreVmNoConfigError({ backupId: m.id, file: 'firewall', hint: `VM ${m.vmid} had no firewall file at backup time` });
  const withNl = (t: string): string => (t.endsWith('\n') || t === '' ? t : `${t}\n`);
  if (!want.firewall) return withNl(conf);
  if (!want.conf) return withNl(firewall as string);
  return `${withNl(conf)}${firewallSeparator(m.vmid)}${withNl(firewall as string)}`;
}
