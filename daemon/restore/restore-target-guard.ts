/**
 * The check `pve-cbt restore` runs on its target before writing and again just before the result
 * replaces it: facts from the node (target-facts.ts), the decision (target-decision.ts). One guard
 * per restore: the second check re-reads configs, pid files and /proc, but asks pvesm only about
 * volumes it has not resolved yet.
 */
import type { VolumePathCache } from '../pve/node-volumes';
import { decideRestoreTarget } from './target-decision';
import { gatherTargetFacts, type NodePaths } from './target-facts';

export function restoreTargetGuard(target: string, node: NodePaths, opts: { force: boolean }): () => Promise<void> {
  const cache: VolumePathCache = new Map();
  return async () => {
    const refusal = decideRestoreTarget(await gatherTargetFacts(target, node, cache), opts);
    if (refusal) throw refusal;
  };
}
