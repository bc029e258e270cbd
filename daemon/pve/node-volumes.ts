/**
 * Every volume of every VM of this node, from the current section of each `VMID.conf` in
 * qemu-server's config dir, resolved to a path with `pvesm path`. Unlike vm-config.ts's backup
 * view, this includes `backup=0` disks and detached `unusedN` volumes: it answers "would writing
 * this path destroy a VM's disk?". Cdroms and `none` are not VM disks. A volume pvesm cannot
 * resolve is returned with the reason, so callers can refuse to guess. pvesm is slow on a real node
 * (a Perl start per call): a caller checking twice passes a `cache` of the look-ups by volid.
 */
import fs from 'node:fs';
import { pvesmPath } from './pvesm';
import { parsePropertyString, parseVmConfig } from './vm-config';
import { vmConfigFile } from './vm-disks';

const VOLUME_KEY = /^((ide|sata|scsi|virtio|unused)\d+|efidisk0|tpmstate0)$/;

export interface NodeVolume {
  readonly vmid: number;
  readonly disk: string;
  readonly volid: string;
}

export type ResolvedVolume = NodeVolume & ({ readonly path: string } | { readonly path: undefined; readonly reason: string });

/** The volumes of one config text (current section only). Pure. */
export function configVolumes(vmid: number, text: string): NodeVolume[] {
  const out: NodeVolume[] = [];
  for (const [key, value] of Object.entries(parseVmConfig(vmid, text).entries)) {
    if (!VOLUME_KEY.test(key)) continue;
    const opts = parsePropertyString(value, 'file');
    const volid = opts.file;
    if (!volid || volid === 'none' || opts.media === 'cdrom') continue;
    out.push({ vmid, disk: key, volid });
  }
  return out;
}

export type VolumePathCache = Map<string, { path: string } | { path: undefined; reason: string }>;

export async function nodeVolumes(
  opts: { qemuServerConfigDir: string; pvesmPath: string; pvesmTimeoutMs?: number },
  cache: VolumePathCache = new Map(),
): Promise<ResolvedVolume[]> {
  let names: string[];
  try {
    names = fs.readdirSync(opts.qemuServerConfigDir);
  } catch {
    return [];
  }
  const vmids = names.map((n) => /^(\d+)\.conf$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
  const out: ResolvedVolume[] = [];
  for (const vmid of vmids) {
    let text: string;
    try {
      text = fs.readFileSync(vmConfigFile(opts.qemuServerConfigDir, vmid), 'utf8');
    } catch {
      continue; // removed while we scan
    }
    for (const v of configVolumes(vmid, text)) {
      let resolved = cache.get(v.volid);
      if (!resolved) {
        try {
          resolved = { path: await pvesmPath(opts.pvesmPath, v.volid, { timeoutMs: opts.pvesmTimeoutMs }) };
        } catch (err) {
          resolved = { path: undefined, reason: err instanceof Error ? err.message : String(err) };
        }
        cache.set(v.volid, resolved);
      }
      out.push({ ...v, ...resolved });
    }
  }
  return out;
}
