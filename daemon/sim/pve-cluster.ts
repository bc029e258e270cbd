/**
 * A simulated Proxmox VE cluster: nodes made by createPveNode (pve-node.ts), each with its own
 * root, run dir, snippets, vzdump.conf and pvesm, sharing what a cluster shares:
 *
 *   ROOT/pmxcfs/nodes/NODE/qemu-server/VMID.conf   /etc/pve (pmxcfs); each node's
 *                                                  ROOT/etc/pve/qemu-server links to its own folder
 *                                                  and ROOT/etc/pve/nodes to the whole tree
 *   ROOT/shared-images/VMID/...                    the image directory, as a storage marked
 *                                                  `shared` (NFS) would be; every node's
 *                                                  var/lib/vz/images links to it (volids keep `local:`)
 *
 * `migrate` is `qm migrate VMID TARGET --online` (live-migration.ts). A VM lives on one node at a
 * time: `cluster.node(name).vm(vmid)` finds it where it runs now.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migrateLive } from './live-migration';
import { createPveNode, nodeInternals, type PveNode, type SimVm } from './pve-node';
import { SimSpecError, SimStateError } from './sim-errors';

export interface PveCluster {
  root: string;
  pmxcfsDir: string;
  sharedImagesDir: string;
  nodes: PveNode[];
  node(name: string): PveNode;
  /** The node a VM is on now. */
  nodeOf(vmid: number): PveNode;
  /** Live migration to `target` (a node name); returns the VM as it runs there. */
  migrate(vmid: number, target: string): Promise<SimVm>;
  cleanup(): Promise<void>;
}

export async function createPveCluster(opts: { nodeNames?: string[]; baseDir?: string; env?: Record<string, string> } = {}): Promise<PveCluster> {
  const names = opts.nodeNames ?? ['pve1', 'pve2'];
  if (names.length < 2 || new Set(names).size !== names.length || names.some((n) => !/^[a-z][a-z0-9-]*$/.test(n))) {
    throw SimSpecError({ reason: `cluster node names ${names.join(', ')} must be at least two distinct host names` });
  }
  const root = fs.mkdtempSync(path.join(opts.baseDir ?? os.tmpdir(), 'cbt-cluster-'));
  const pmxcfsDir = path.join(root, 'pmxcfs');
  const sharedImagesDir = path.join(root, 'shared-images');
  const nodes: PveNode[] = [];
  try {
    for (const nodeName of names) {
      nodes.push(await createPveNode({ baseDir: root, ...(opts.env ? { env: opts.env } : {}), cluster: { nodeName, pmxcfsDir, sharedImagesDir } }));
    }
  } catch (err) {
    for (const n of nodes) await n.cleanup();
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }
  const cluster: PveCluster = {
    root,
    pmxcfsDir,
    sharedImagesDir,
    nodes,
    node(name) {
      const n = nodes.find((x) => x.nodeName === name);
      if (!n) throw SimSpecError({ reason: `no node ${name} in the cluster (${names.join(', ')})` });
      return n;
    },
    nodeOf(vmid) {
      const n = nodes.find((x) => nodeInternals(x).vms.has(vmid));
      if (!n) throw SimStateError({ vmid, op: 'look up', reason: 'no such VM in the cluster' });
      return n;
    },
    async migrate(vmid, target) {
      return migrateLive(cluster.nodeOf(vmid), cluster.node(target), vmid);
    },
    async cleanup() {
      // Every node's QEMUs first: the reference twins and images live in the first node's root and the shared folder.
      await Promise.all(nodes.map((n) => Promise.all([...nodeInternals(n).vms.values()].map((vm) => vm.kill()))));
      for (const n of nodes) await n.cleanup();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  return cluster;
}
