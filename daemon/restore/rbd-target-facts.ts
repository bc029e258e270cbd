/**
 * The facts of target-decision.ts for an RBD image target (`rbd:` name): whether the image exists
 * (`rbd info`), who has it open (`rbd status`: every librbd client that opens an image, QEMU
 * included, registers a watch on it; a watcher has no local pid, so the holder is named by its
 * client id and address with pid 0), and which volumes of the node's VM configs are this image
 * (their `pvesm path` names the same pool, namespace and image). Ceph calls are bounded
 * (ceph-command.ts); a cluster that does not answer fails the check instead of hanging it.
 */
import { rbdJson } from '../proc/ceph-command';
import { CephCommandFailedError } from '../proc/ceph-errors';
import { nodeVolumes, type VolumePathCache } from '../pve/node-volumes';
import { readQemuProcess } from '../pve/qemu-process';
import { atSnapshot, parseRbdName, rbdImageSpec, sameRbdImage, type RbdImage } from '../pve/rbd-volume';
import type { TargetHolder } from './restore-errors';
import type { TargetFacts, TargetVolume, UnresolvedVolume } from './target-decision';
import type { NodePaths } from './target-facts';

interface RbdStatus {
  watchers?: { address: string; client: number | string; cookie?: number }[];
}

async function exists(img: RbdImage): Promise<boolean> {
  try {
    await rbdJson(img, ['info', rbdImageSpec(img)]);
    return true;
  } catch (err) {
    if (CephCommandFailedError.is(err) && /No such file|\(2\)/.test(String(err.details.stderr))) return false;
    throw err;
  }
}

export async function gatherRbdTargetFacts(target: string, img: RbdImage, node: NodePaths, cache?: VolumePathCache): Promise<TargetFacts> {
  const present = await exists(img);
  const holders: TargetHolder[] = [];
  if (present) {
    const status = await rbdJson<RbdStatus>(img, ['status', rbdImageSpec(atSnapshot(img, undefined))]);
    for (const w of status?.watchers ?? []) holders.push({ pid: 0, command: `librbd client.${w.client} at ${w.address}` });
  }
  const volumes: TargetVolume[] = [];
  const unresolved: UnresolvedVolume[] = [];
  for (const v of await nodeVolumes(node, cache)) {
    if (v.path === undefined) {
      unresolved.push({ vmid: v.vmid, disk: v.disk, volid: v.volid, reason: v.reason });
      continue;
    }
    const other = parseRbdName(v.path);
    if (!other || !sameRbdImage(other, img)) continue;
    volumes.push({ vmid: v.vmid, disk: v.disk, volid: v.volid, qemuPid: readQemuProcess(node.qemuServerRunDir, v.vmid)?.pid });
  }
  const pool = `rbd:${img.pool}${img.namespace ? `/${img.namespace}` : ''}`;
  return { target, kind: present ? 'block device' : 'missing', dir: pool, dirExists: true, holders, volumes, unresolved };
}
