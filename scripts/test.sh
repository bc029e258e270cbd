#!/usr/bin/env bash
# The README's test command: set up (apt packages, npm ci, build, QEMU 10 beside the system's 7.2),
# type-check the tests, run them all: every test against QEMU 7.2, the QEMU-backed suites again against
# QEMU 10.0 (jest projects "qemu-7.2" and "qemu-10", one summary). QEMU-backed tests never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-qemu10.sh
npx tsc -p tsconfig.test.json
npx jest --ci "$@"
