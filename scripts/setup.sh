#!/usr/bin/env bash
# Installs what a fresh Debian 12 / Proxmox VE node lacks for pve-cbt, then builds it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for bin in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils qemu-nbd:qemu-utils nbdinfo:libnbd-bin nbdcopy:libnbd-bin nbdkit:nbdkit; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
