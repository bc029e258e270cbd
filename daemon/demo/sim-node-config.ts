/**
 * The config of a pve-cbt instance serving a simulated Proxmox node (daemon/sim): every path points
 * into the node's directory or a private work directory, all else is the embedded default. Used by
 * `pve-cbt demo` and by the end-to-end tests, so both run exactly the product's defaults.
 */
import path from 'node:path';
import type { PveNode } from '../sim/pve-node';

export function simNodeConfig(node: PveNode, work: string): Record<string, unknown> {
  return {
    qemuServerConfigDir: node.configDir,
    qemuServerRunDir: node.runDir,
    qemuServerLockDir: node.lockDir,
    pvesmPath: node.pvesmPath,
    repository: path.join(work, 'repository'),
    stateDir: path.join(work, 'state'),
    socketPath: path.join(work, 'run', 'pve-cbt.sock'),
    logDir: path.join(work, 'log'),
  };
}
