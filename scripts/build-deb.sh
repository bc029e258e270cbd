#!/usr/bin/env bash
# Builds pve-cbt as a Debian package with dpkg-deb, from this checkout (built by scripts/setup.sh):
#
#   bash scripts/build-deb.sh [OUTDIR]      -> OUTDIR/pve-cbt_VERSION_amd64.deb (default ./deb)
#   apt install ./deb/pve-cbt_0.1.0_amd64.deb
#
# Contents: the built app and its production node_modules under /usr/lib/pve-cbt (the native
# better-sqlite3 addon is built for this machine's Node.js ABI, hence Architecture amd64 and a
# Depends on the same Node.js major), /usr/bin/pve-cbt, the systemd unit in /lib/systemd/system, and
# the default /etc/pve-cbt/config.json as a conffile (an admin's edits survive upgrades). The
# maintainer scripts (packaging/debian/) install and attach the hooks on install, detach and remove
# them on remove, keep backups, catalog and logs on remove and drop them on purge.
# Every file is root-owned with explicit modes, whoever owns the checkout and whatever the umask.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-deb}
[ -f dist/daemon/cli/main.js ] || { echo "build-deb: not built: run bash scripts/setup.sh first" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "build-deb: dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }

version=$(node -p 'require("./package.json").version')
node_major=$(node -p 'process.versions.node.split(".")[0]')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
umask 022
app="$stage/usr/lib/pve-cbt"
mkdir -p "$app" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/pve-cbt" "$stage/DEBIAN"

# The app: dist, package.json, README and only the production dependencies (npm's own list).
cp -r dist package.json package-lock.json README.md "$app/"
rm -rf "$app/dist/bench"
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s#^$PWD/##" | grep -E '^node_modules/(@[^/]+/)?[^/]+$' |
  while IFS= read -r m; do mkdir -p "$app/$(dirname "$m")"; cp -r "$m" "$app/$m"; done
# The Node.js ABI the native addon was built for; the daemon refuses another (service/node-abi.ts).
node -e 'process.stdout.write(JSON.stringify({ modules: process.versions.modules, node: process.versions.node }) + "\n")' > "$app/node-abi.json"

cat > "$stage/usr/bin/pve-cbt" <<'WRAPPER'
#!/bin/sh
# pve-cbt command (Debian package): the app lives in ../lib/pve-cbt relative to this file, which
# also holds when the package is unpacked below another root (dpkg --root).
here=$(dirname "$(readlink -f "$0")")
exec node "$here/../lib/pve-cbt/dist/daemon/cli/main.js" "$@"
WRAPPER
sed 's#^ExecStart=/usr/local/bin/pve-cbt #ExecStart=/usr/bin/pve-cbt #; s#^\(\# runs scheduled and requested backups\.\) Installed by install.sh;#\1 Installed by the pve-cbt package;#' \
  systemd/pve-cbtd.service > "$stage/lib/systemd/system/pve-cbtd.service"
cp packaging/debian/config.json "$stage/etc/pve-cbt/config.json"
for script in postinst prerm postrm; do cp "packaging/debian/$script" "$stage/DEBIAN/$script"; done
echo /etc/pve-cbt/config.json > "$stage/DEBIAN/conffiles"
size_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: pve-cbt
Version: $version
Architecture: amd64
Maintainer: pve-cbt developers <root@localhost>
Installed-Size: $size_kib
Depends: nodejs (>= $node_major), nodejs (<< $((node_major + 1))), qemu-utils, libc6
Recommends: libnbd-bin
Section: admin
Priority: optional
Description: changed-block-tracking backups for Proxmox VE
 Hook scripts tell the pve-cbtd daemon when VMs start, stop, restart or crash; the daemon keeps
 the validity of each disk's QEMU dirty bitmap in SQLite and backs disks up into a deduplicating
 repository: full, incremental from the bitmap, or full-compare when no bitmap can be trusted.
CONTROL

# Explicit modes: directories and executables 0755, everything else 0644, the maintainer scripts 0755.
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
find "$app/node_modules" -type f \( -name '*.node' -o -path '*/.bin/*' \) -exec chmod 0755 {} + 2>/dev/null || true
chmod 0755 "$stage/usr/bin/pve-cbt" "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/pve-cbt_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "build-deb: $deb ($(du -h "$deb" | cut -f1))"
