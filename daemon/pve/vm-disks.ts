/**
 * A VM's backup-relevant disks from its config file, with the image path from `pvesm path`.
 * Used for stopped VMs (no QEMU to ask) and to know which drives of a running VM to back up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PveConfigMissingError } from './pve-errors';
import type { ExecRunner } from '../proc/exec-off-thread';
import { pvesmPath } from './pvesm';
import { parseVmConfig, type VmConfig, type VmConfigDisk } from './vm-config';

export interface VmDisk extends VmConfigDisk {
  readonly path: string;
}

export interface VmDisksOptions {
  readonly qemuServerConfigDir: string;
  readonly pvesmPath: string;
  readonly pvesmTimeoutMs?: number;
  /** How pvesm is run (pvesm.ts). */
  readonly pvesmExec?: ExecRunner;
}

export function vmConfigFile(configDir: string, vmid: number): string {
  return path.join(configDir, `${vmid}.conf`);
}

export function readVmConfig(configDir: string, vmid: number): VmConfig {
  const file = vmConfigFile(configDir, vmid);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw PveConfigMissingError({ vmid, file }, err);
  }
  return parseVmConfig(vmid, text);
}

/** Resolves every disk of the config to a path (sequentially: pvesm is heavy on a real node). */
export async function resolveVmDisks(config: VmConfig, options: VmDisksOptions): Promise<VmDisk[]> {
  const out: VmDisk[] = [];
  for (const disk of config.disks) {
    const p = await pvesmPath(options.pvesmPath, disk.volid, { timeoutMs: options.pvesmTimeoutMs, vmid: config.vmid, ...(options.pvesmExec ? { exec: options.pvesmExec } : {}) });
    out.push({ ...disk, path: p });
  }
  return out;
}

export async function readVmDisks(vmid: number, options: VmDisksOptions): Promise<{ config: VmConfig; disks: VmDisk[] }> {
  const config = readVmConfig(options.qemuServerConfigDir, vmid);
  return { config, disks: await resolveVmDisks(config, options) };
}
