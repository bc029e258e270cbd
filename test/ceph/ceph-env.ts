/**
 * The test cluster of the "ceph" jest project (test/ceph/global-setup.js put its coordinates into
 * the environment): the simulator's Ceph spec, and an RBD volume for the rbd CLI. Missing variables
 * fail the test (never skip): the project runs only with its globalSetup.
 */
import type { SimCephSpec } from '../../daemon/sim/sim-rbd-storage';

export function cephSpec(): SimCephSpec {
  const conf = process.env.CEPH_CONF;
  const pool = process.env.RBD_POOL;
  if (!conf || !pool) throw new Error('CEPH_CONF and RBD_POOL are unset: run this file in the "ceph" jest project (its globalSetup starts Ceph)');
  return { conf, pool };
}
