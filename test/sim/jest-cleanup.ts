/**
 * Jest glue for the node simulator: `const sim = usePveNode()` creates a node before all tests of the
 * file and always cleans it up (killing every QEMU) after them, also when tests fail. A test that
 * failed gets the QMP transcript of the node's VMs printed after it (the last lines each VM's
 * QMP socket carried from this process: the test's and the engine's commands, replies and events;
 * the flag comes from test/failure-flag-environment.js).
 */
import { recordQmpTranscripts } from '../../daemon/qmp/qmp-transcript';
import { createPveNode, type PveNode } from '../../daemon/sim/pve-node';

export function usePveNode(opts?: Parameters<typeof createPveNode>[0]): { readonly node: PveNode } {
  let node: PveNode | undefined;
  beforeAll(async () => {
    recordQmpTranscripts();
    node = await createPveNode(opts);
  });
  afterEach(() => {
    const g = globalThis as { __cbtTestFailed?: boolean };
    if (g.__cbtTestFailed && node) console.error(`${expect.getState().currentTestName ?? 'test'} failed.\n${node.qmpTranscripts()}`);
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
