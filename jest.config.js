/**
 * Tests mirror the source tree under test/; QEMU-backed tests run serially per worker and need long
 * timeouts. Two projects in one run (one summary, one closing line):
 * - "qemu-7.2": every test, against the system's QEMU (Debian 12: 7.2);
 * - "qemu-10": the QEMU-backed suites again, against QEMU 10.0 (Proxmox VE 9's major) unpacked by
 *   scripts/setup-qemu10.sh and put first on PATH by test/qemu10-environment.js. Never skipped: without it
 *   that project fails;
 * - "ceph": the real-Ceph suites (test/ceph/), against one cluster started once per run by
 *   test/ceph/global-setup.js with scripts/ceph-micro.sh (stopped at the end if this run started it).
 *   Without Ceph the project fails; it never skips. The other two projects do not run these files.
 */
const shared = {
  testEnvironment: '<rootDir>/test/failure-flag-environment.js',
  rootDir: __dirname,
  roots: ['<rootDir>/test'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  testTimeout: 120000,
};
/** The suites that start QEMU, qemu-nbd or qemu-img (simulator, engine, NBD against QEMU, e2e, PVE operations). */
const cephSuites = ['<rootDir>/test/ceph/**/*.test.ts'];
const qemuSuites = [
  '<rootDir>/test/sim/**/*.test.ts',
  '<rootDir>/test/daemon/backup/**/*.test.ts',
  '<rootDir>/test/daemon/nbd/qemu-*.test.ts',
  '<rootDir>/test/daemon/qmp/**/*.test.ts',
  '<rootDir>/test/daemon/restore/**/*.test.ts',
  '<rootDir>/test/e2e/**/*.test.ts',
  '<rootDir>/test/hooks/hooks-e2e.test.ts',
  '<rootDir>/test/daemon/parking/**/*.test.ts',
  '<rootDir>/test/pve-ops/**/*.test.ts',
];
module.exports = {
  testTimeout: 120000,
  maxWorkers: 2,
  bail: false,
  verbose: true,
  reporters: ['default', '<rootDir>/test/plain-summary-reporter.js'],
  projects: [
    { ...shared, displayName: 'qemu-7.2', testMatch: ['**/*.test.ts'], testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/ceph/'] },
    { ...shared, displayName: 'qemu-10', testMatch: qemuSuites, testEnvironment: '<rootDir>/test/qemu10-environment.js' },
    {
      ...shared,
      displayName: 'ceph',
      testMatch: cephSuites,
      globalSetup: '<rootDir>/test/ceph/global-setup.js',
      globalTeardown: '<rootDir>/test/ceph/global-teardown.js',
    },
  ],
};
