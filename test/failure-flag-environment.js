/**
 * Test environment of both jest projects: jest's node environment, plus a flag a test file can
 * read in its afterEach hooks: `globalThis.__cbtTestFailed` is true once the running test (or one
 * of its hooks) has failed, and false again when the next test starts. test/sim/jest-cleanup.ts
 * uses it to print the QMP transcript of a failed simulator test, as QEMU's iotests do.
 */
const { TestEnvironment } = require('jest-environment-node');

class FailureFlagEnvironment extends TestEnvironment {
  async handleTestEvent(event) {
    if (event.name === 'test_start') this.global.__cbtTestFailed = false;
    else if (event.name === 'test_fn_failure' || event.name === 'hook_failure') this.global.__cbtTestFailed = true;
  }
}
module.exports = FailureFlagEnvironment;
