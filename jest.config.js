/** Tests mirror the source tree under test/; QEMU-backed tests run serially per worker and need long timeouts. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  testTimeout: 120000,
  maxWorkers: 2,
  bail: false,
  verbose: true,
  reporters: ['default', '<rootDir>/test/plain-summary-reporter.js'],
};
