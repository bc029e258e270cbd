/** globalTeardown of the "ceph" jest project: stops the cluster if global-setup.js started it in this run. */
const { execFileSync } = require('node:child_process');
const path = require('node:path');

module.exports = async function cephGlobalTeardown() {
  const dir = process.env.PVE_CBT_CEPH_STARTED_BY_RUN;
  if (!dir) return;
  execFileSync('bash', [path.join(__dirname, '../../scripts/ceph-micro.sh'), 'stop', dir], { stdio: 'ignore', timeout: 300_000 });
};
