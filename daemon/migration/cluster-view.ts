/**
 * Where this node stands in its Proxmox VE cluster, read from the file system the way Proxmox lays
 * it out: `/etc/pve` is pmxcfs, shared by every node, with each VM's config in
 * `nodes/NODE/qemu-server/VMID.conf`, and `/etc/pve/qemu-server` is a link to this node's folder.
 * So the real path of the configured `qemuServerConfigDir` names this node and the cluster's
 * config tree; a folder that is not below `nodes/NODE/` (a bare test setup) means no cluster and
 * no migration handling. A VM belongs to the node whose folder holds its config (a migration moves
 * the file there by rename).
 */
import fs from 'node:fs';
import path from 'node:path';

export interface ClusterView {
  /** This node's name (its folder under nodes/). */
  readonly nodeName: string;
  /** pmxcfs's `nodes` folder. */
  readonly nodesDir: string;
}

export function clusterViewOf(qemuServerConfigDir: string): ClusterView | undefined {
  let real: string;
  try {
    real = fs.realpathSync(qemuServerConfigDir);
  } catch {
    return undefined;
  }
  if (path.basename(real) !== 'qemu-server') return undefined;
  const nodeDir = path.dirname(real);
  const nodesDir = path.dirname(nodeDir);
  if (path.basename(nodesDir) !== 'nodes') return undefined;
  return { nodeName: path.basename(nodeDir), nodesDir };
}

function confPath(view: ClusterView, node: string, vmid: number): string {
  return path.join(view.nodesDir, node, 'qemu-server', `${vmid}.conf`);
}

export function isOnThisNode(view: ClusterView, vmid: number): boolean {
  return fs.existsSync(confPath(view, view.nodeName, vmid));
}

/** The other node whose folder holds the VM's config now, or undefined (still here, destroyed, or in no folder). */
export function otherNodeOf(view: ClusterView, vmid: number): string | undefined {
  if (isOnThisNode(view, vmid)) return undefined;
  let nodes: string[];
  try {
    nodes = fs.readdirSync(view.nodesDir);
  } catch {
    return undefined;
  }
  return nodes.sort().find((n) => n !== view.nodeName && fs.existsSync(confPath(view, n, vmid)));
}
