/**
 * globalSetup of the "ceph" jest project: starts the test cluster once per jest run with the
 * project's own script (scripts/ceph-micro.sh) in ${PVE_CBT_CEPH_DIR:-/tmp/pve-cbt-ceph}, reusing a
 * cluster already running there, and puts its coordinates into process.env, which the test
 * workers inherit: PVE_CBT_CEPH_DIR, CEPH_CONF, S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, RBD_POOL.
 * Without Ceph the start fails and so does the project: its tests never skip.
 * global-teardown.js stops the cluster only when this run started it.
 */
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const SCRIPT = path.join(__dirname, '../../scripts/ceph-micro.sh');

function cephDir() {
  return process.env.PVE_CBT_CEPH_DIR || '/tmp/pve-cbt-ceph';
}

function running(dir) {
  try {
    execFileSync('bash', [SCRIPT, 'status', dir], { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

module.exports = async function cephGlobalSetup() {
  const dir = cephDir();
  const wasRunning = running(dir);
  try {
    execFileSync('bash', [SCRIPT, 'start', dir], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
  } catch (err) {
    const stderr = err.stderr ? err.stderr.toString() : '';
    throw new Error(`the ceph test project needs a Ceph cluster: scripts/ceph-micro.sh start ${dir} failed: ${stderr.trim() || err.message}`);
  }
  const env = execFileSync('bash', [SCRIPT, 'env', dir], { encoding: 'utf8', timeout: 30_000 });
  for (const line of env.split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) process.env[m[1]] = m[2];
  }
  process.env.PVE_CBT_CEPH_STARTED_BY_RUN = wasRunning ? '' : dir;
};
