#!/usr/bin/env bash
# Installs what a fresh Proxmox VE node (Debian 13 / PVE 9; Debian 12 / PVE 8) lacks for pve-cbt,
# then builds it.
#
# - Node.js and npm: pve-cbt needs the Node.js majors in package.json `engines.node` (the native
#   SQLite addon is built for one ABI). When node is missing it installs `nodejs npm` from the
#   distribution if the version apt offers fits (Debian 13 ships 20); otherwise it refuses and says
#   how to get a fitting Node.js (Debian 12 ships 18). A node already there must fit too.
# - g++, make, python3: better-sqlite3 builds from source where no prebuilt binary can be fetched.
# - QEMU's tools and libnbd's, for backups and the tests; fuse3 (fusermount3) for nbdfuse, which
#   exposes a served backup as a file to loop-mount (and its test).
# - Ceph (mon, mgr, osd, radosgw, the rbd/ceph CLIs) and QEMU's rbd block driver, for the real-Ceph
#   test project (scripts/ceph-micro.sh starts a single-host cluster); only what is missing.
#
# SETUP_DRY_RUN=1 prints the apt-get commands instead of running them (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=node-range.sh
source scripts/node-range.sh

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }
apt_get() {
  if [ "${SETUP_DRY_RUN:-}" = 1 ]; then say "would run: apt-get $*"; return 0; fi
  DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

range="$(engines_node package.json)"
[ -n "$range" ] || die "package.json has no engines.node"
fits() { # VERSION -> 0 fits, 1 does not; dies on a range it cannot read
  local r=0
  major_fits "$(major_of "$1")" "$range" || r=$?
  [ "$r" -ne 2 ] || die "cannot read engines.node '$range' (only '>=MAJOR <MAJOR' comparators are understood)"
  return "$r"
}
WAY_OUT="install a Node.js that fits ('$range'): upgrade to Proxmox VE 9 (Debian 13 ships Node.js 20), or add NodeSource's repository for that major (https://github.com/nodesource/distributions, e.g. node_20.x) and 'apt-get install nodejs', then run this again"

updated=0
apt_update() { [ "$updated" -eq 1 ] || { apt_get update -qq; updated=1; }; }

if ! command -v node >/dev/null 2>&1; then
  apt_update
  candidate="$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p' | head -1)"
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    die "Node.js is not installed and apt offers no nodejs package; $WAY_OUT"
  fi
  if ! fits "$candidate"; then
    die "Node.js is not installed and the distribution's nodejs is $candidate, which does not fit '$range'; $WAY_OUT"
  fi
  say "installing nodejs $candidate and npm from the distribution"
  apt_get install -y -qq --no-install-recommends nodejs npm
elif ! fits "$(node --version)"; then
  die "node $(node --version) ($(command -v node)) does not fit '$range'; $WAY_OUT"
fi

need=()
command -v npm >/dev/null 2>&1 || need+=(npm)
for bin in g++:g++ make:make python3:python3 qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils qemu-nbd:qemu-utils nbdinfo:libnbd-bin nbdcopy:libnbd-bin nbdkit:nbdkit fusermount3:fuse3 \
  ceph-mon:ceph-mon ceph-mgr:ceph-mgr ceph-osd:ceph-osd radosgw:radosgw rbd:ceph-common uuidgen:uuid-runtime curl:curl; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
# the rbd driver is a loadable module of the distribution's QEMU, not a program
[ -e /usr/lib/x86_64-linux-gnu/qemu/block-rbd.so ] || need+=(qemu-block-extra)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt_update
  # shellcheck disable=SC2046
  apt_get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi
[ "${SETUP_DRY_RUN:-}" = 1 ] && exit 0

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
