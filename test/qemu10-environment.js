/**
 * Test environment of the "qemu-10" jest project: puts QEMU 10.0 (unpacked by scripts/setup-qemu10.sh)
 * first on PATH while one test file runs, so every qemu-system-x86_64, qemu-img, qemu-nbd and qemu-io
 * that the tests, the simulator and pve-cbt start is QEMU 10. It changes the worker's real
 * process.env (child_process reads that one, not the test's sandboxed copy) and restores it at
 * teardown, because a worker runs files of both projects. Missing QEMU 10 fails the file; it never skips.
 */
const fs = require('node:fs');
const path = require('node:path');
const FailureFlagEnvironment = require('./failure-flag-environment');

const prefix = process.env.PVE_CBT_QEMU10 || '/opt/pve-cbt-qemu10';
const bin = path.join(prefix, 'bin');

class Qemu10Environment extends FailureFlagEnvironment {
  constructor(config, context) {
    if (!fs.existsSync(path.join(bin, 'qemu-system-x86_64'))) {
      throw new Error(`QEMU 10 is missing at ${bin}: run bash scripts/setup-qemu10.sh (scripts/test.sh does)`);
    }
    const saved = { PATH: process.env.PATH, PVE_CBT_TEST_QEMU: process.env.PVE_CBT_TEST_QEMU };
    process.env.PATH = `${bin}:${saved.PATH}`;
    process.env.PVE_CBT_TEST_QEMU = '10';
    super(config, context); // copies process.env into the sandbox: the test sees the same PATH
    this.saved = saved;
  }

  async teardown() {
    await super.teardown();
    for (const [key, value] of Object.entries(this.saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}
module.exports = Qemu10Environment;
