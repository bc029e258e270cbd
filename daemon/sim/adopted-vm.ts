/**
 * A VM the simulator did not create: its `VMID.conf` was written by someone else (a restore), and
 * the node learns it from that file alone, as qemu-server would start it: the disks of the current
 * section (volumes on storage `local`, cd-roms and `none` skipped), the name, the agent flag, and the
 * disk layout from `machine:` (a PVE 9 machine version >= 10 selects `blockdev`). Each disk gets its
 * raw reference twin from its present contents, so later guest writes are tracked as for any VM.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseVmConfig } from '../pve/vm-config';
import type { SimDisk } from './pve-node';
import type { DiskLayout } from './qemu-command';
import { SimSpecError } from './sim-errors';
import type { SimVmInit } from './sim-vm';

const execFileP = promisify(execFile);

/** The layout qemu-server picks for a config's `machine:` (none: the newest machine, drive layout here). */
export function layoutOfMachine(machine: string | undefined): DiskLayout {
  const m = /-(\d+)\.\d+/.exec(machine ?? '');
  return m && Number(m[1]) >= 10 ? 'blockdev' : 'drive';
}

export async function adoptedVmInit(paths: { root: string; configDir: string; storageDir: string }, vmid: number): Promise<SimVmInit> {
  const confPath = path.join(paths.configDir, `${vmid}.conf`);
  if (!fs.existsSync(confPath)) throw SimSpecError({ reason: `VM ${vmid} has no config ${confPath}` });
  const config = parseVmConfig(vmid, fs.readFileSync(confPath, 'utf8'));
  const refDir = path.join(paths.root, 'reference', String(vmid));
  fs.mkdirSync(refDir, { recursive: true });
  const disks: SimDisk[] = [];
  for (const d of config.disks) {
    const m = /^local:(\d+\/[^/]+)$/.exec(d.volid);
    if (!m) throw SimSpecError({ reason: `disk ${d.key} of VM ${vmid}: ${d.volid} is not a volume of storage local` });
    const diskPath = path.join(paths.storageDir, 'images', m[1]);
    const reference = path.join(refDir, `${d.key}.raw`);
    fs.rmSync(reference, { force: true });
    await execFileP('qemu-img', ['convert', '-f', d.format, '-O', 'raw', diskPath, reference]);
    const sizeBytes = fs.statSync(reference).size;
    disks.push({ key: d.key, format: d.format, volid: d.volid, path: diskPath, sizeBytes, reference });
  }
  return { vmid, name: config.entries.name ?? `vm${vmid}`, agent: config.agentEnabled, layout: layoutOfMachine(config.entries.machine), confPath, disks };
}
