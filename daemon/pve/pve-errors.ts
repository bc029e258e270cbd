/**
 * Error codes for reading Proxmox VE state: VM config files and `pvesm path` look-ups.
 */
import { defineError } from '../../shared/errors/cbt-error';

export const PveConfigMissingError = defineError<{ vmid: number; file: string }>(
  'CBT_PVE_CONFIG_MISSING',
  (d) => `VM ${d.vmid} has no config file ${d.file}`,
);

export const PvesmFailedError = defineError<{ pvesm: string; volid: string; reason: string }>(
  'CBT_PVE_PVESM_FAILED',
  (d) => `${d.pvesm} path ${d.volid} failed: ${d.reason}`,
);
