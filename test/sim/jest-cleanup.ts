/**
 * Jest glue for the node simulator: `const sim = usePveNode()` creates a node before all tests of the
 * file and always cleans it up (killing every QEMU) after them, also when tests fail.
 */
import { createPveNode, type PveNode } from '../../daemon/sim/pve-node';

export function usePveNode(opts?: { env?: Record<string, string> }): { readonly node: PveNode } {
  let node: PveNode | undefined;
  beforeAll(async () => {
    node = await createPveNode(opts);
  });
  afterAll(async () => {
    await node?.cleanup();
  });
  return {
    get node(): PveNode {
      if (!node) throw new Error('usePveNode: the node exists only inside tests');
      return node;
    },
  };
}
