/** Error code for a VM whose config qemu-server keeps locked for an operation (wait-config-lock.ts). */
import { defineError } from '../../shared/errors/cbt-error';

export const BackupConfigLockedError = defineError<{ vmid: number; lock: string; waitedMs: number }>(
  'CBT_BACKUP_CONFIG_LOCKED',
  (d) =>
    `VM ${d.vmid} config is locked (${d.lock}) by a Proxmox operation (waited ${d.waitedMs} ms); pve-cbt does not start a backup meanwhile` +
    ` (a lock left by a failed operation is cleared with 'qm unlock ${d.vmid}')`,
);
