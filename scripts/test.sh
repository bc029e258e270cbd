#!/usr/bin/env bash
# The README's test command: set up (apt packages, npm ci, build), type-check the tests, run them all.
# QEMU-backed tests never skip: a missing qemu-system-x86_64 fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -p tsconfig.test.json
npx jest --ci "$@"
