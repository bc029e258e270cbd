/**
 * The check `pve-cbt restore` runs on its target before writing and again just before the result
 * replaces it: facts from the node (target-facts.ts), the decision (target-decision.ts).
 */
import { decideRestoreTarget } from './target-decision';
import { gatherTargetFacts, type NodePaths } from './target-facts';

export async function assertRestoreTargetSafe(target: string, node: NodePaths, opts: { force: boolean }): Promise<void> {
  const refusal = decideRestoreTarget(await gatherTargetFacts(target, node), opts);
  if (refusal) throw refusal;
}
