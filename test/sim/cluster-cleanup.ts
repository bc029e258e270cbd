/**
 * Jest glue for the cluster simulator: `const sim = usePveCluster()` creates a two-node cluster
 * before all tests of the file and always cleans it up (killing every QEMU of every node) after them.
 */
import { createPveCluster, type PveCluster } from '../../daemon/sim/pve-cluster';

export function usePveCluster(opts?: { nodeNames?: string[] }): { readonly cluster: PveCluster } {
  let cluster: PveCluster | undefined;
  beforeAll(async () => {
    cluster = await createPveCluster(opts);
  });
  afterAll(async () => {
    await cluster?.cleanup();
  });
  return {
    get cluster(): PveCluster {
      if (!cluster) throw new Error('usePveCluster: the cluster exists only inside tests');
      return cluster;
    },
  };
}
