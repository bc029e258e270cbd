/**
 * Error codes for reading Proxmox VE state: VM config files and `pvesm path` look-ups.
 */
import { defineError } from '../../shared/errors/cbt-error';
import type { ImagePathRefusal } from './image-path';

export const PveConfigMissingError = defineError<{ vmid: number; file: string }>(
  'CBT_PVE_CONFIG_MISSING',
  (d) => `VM ${d.vmid} has no config file ${d.file}`,
);

export const PvesmFailedError = defineError<{ pvesm: string; volid: string; reason: string }>(
  'CBT_PVE_PVESM_FAILED',
  (d) => `${d.pvesm} path ${d.volid} failed: ${d.reason}`,
);

/**
 * `pvesm path` (or the VM config) named an image in a form QEMU must not be given: a relative path,
 * an option-like word, a `json:`/`nbd:` pseudo-filename (see image-path.ts). `vmid` is null when
 * the caller did not say which VM the volume belongs to.
 */
export const PvePathRefusedError = defineError<{ vmid: number | null; volid: string; path: string; refusal: ImagePathRefusal; problem: string }>(
  'CBT_PVE_PATH_REFUSED',
  (d) => `${d.vmid === null ? '' : `VM ${d.vmid}: `}volume ${d.volid} resolves to ${JSON.stringify(d.path)}, which is refused: ${d.problem}`,
);

/**
 * `pvesm alloc` or `pvesm free` failed (exit status, timeout, or output without a volume id).
 * `exists` is true when the storage said the name is taken (PVE's dir plugin: "... already exists").
 */
export const PvesmCommandFailedError = defineError<{ pvesm: string; args: string[]; reason: string; exists: boolean }>(
  'CBT_PVE_PVESM_COMMAND_FAILED',
  (d) => `${d.pvesm} ${d.args.join(' ')} failed: ${d.reason}`,
);

/** Proxmox's per-VM lock (pve-lock.ts) stayed held by someone else for the whole bounded wait. */
export const PveLockTimeoutError = defineError<{ vmid: number; file: string; timeoutMs: number }>(
  'CBT_PVE_LOCK_TIMEOUT',
  (d) => `VM ${d.vmid} is locked by Proxmox VE (${d.file}) and stayed locked for ${d.timeoutMs} ms; pve-cbt did not touch its images`,
);

/** flock(1) could not be run or could not open the lock file. */
export const PveLockFailedError = defineError<{ vmid: number; file: string; reason: string }>(
  'CBT_PVE_LOCK_FAILED',
  (d) => `could not take Proxmox VE's lock ${d.file} for VM ${d.vmid}: ${d.reason}`,
);
