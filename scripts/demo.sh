#!/usr/bin/env bash
# The README's "run it" command: set up (apt packages, npm ci, build), then run `pve-cbt demo`,
# which shows pve-cbt on two simulated VMs with real QEMU and the real daemon on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/daemon/cli/main.js demo "$@"
