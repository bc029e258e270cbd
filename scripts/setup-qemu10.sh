#!/usr/bin/env bash
# Unpacks QEMU 10.0 (the major Proxmox VE 9 ships) from Debian bookworm-backports into a private prefix
# beside the system's QEMU 7.2, so the QEMU-backed tests run against both. Nothing is installed with
# dpkg and nothing under /etc changes: the .debs are only downloaded (apt-get download, through a
# private sources list that names the machine's own Debian mirror) and extracted with dpkg -x.
#
#   bash scripts/setup-qemu10.sh [PREFIX]        (default /opt/pve-cbt-qemu10)
#   PATH=PREFIX/bin:$PATH qemu-system-x86_64 --version
#
# PREFIX/bin holds wrappers for qemu-system-x86_64, qemu-img, qemu-nbd, qemu-io and
# qemu-storage-daemon that point the loader and QEMU's module and firmware search at the prefix.
# Idempotent: an existing prefix that answers as QEMU 10 is kept.
set -euo pipefail
prefix=${1:-${PVE_CBT_QEMU10:-/opt/pve-cbt-qemu10}}
is_ready() {
  [ -x "$prefix/bin/qemu-system-x86_64" ] &&
    "$prefix/bin/qemu-system-x86_64" --version 2>/dev/null | head -1 | grep -q 'version 10\.'
}
if is_ready; then exit 0; fi

apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
chmod 0755 "$apt_dir"   # apt drops to _apt for downloads: let it reach its lists and targets
mkdir -p "$apt_dir/lists/partial" "$apt_dir/debs"
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $1}')
if [ -z "$mirror" ]; then
  mirror=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if($i ~ /^[a-z]+:\/\//){print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
  echo "setup-qemu10: no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
  exit 1
fi
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main" > "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$apt_dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
echo "setup-qemu10: downloading QEMU 10 from bookworm-backports into $prefix"
apt-get "${apt_opts[@]}" update -qq
(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download -qq \
  qemu-system-x86 qemu-system-common qemu-system-data qemu-utils qemu-block-extra seabios >/dev/null)
rm -rf "$prefix.new"
mkdir -p "$prefix.new/bin"
for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$prefix.new"; done
for bin in qemu-system-x86_64 qemu-img qemu-nbd qemu-io qemu-storage-daemon; do
  firmware=
  [ "$bin" = qemu-system-x86_64 ] && firmware='-L "$p/usr/share/qemu" -L "$p/usr/share/seabios"'
  cat > "$prefix.new/bin/$bin" <<WRAPPER
#!/bin/sh
# QEMU 10 from bookworm-backports, unpacked by pve-cbt's scripts/setup-qemu10.sh
p=$prefix
export LD_LIBRARY_PATH="\$p/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export QEMU_MODULE_DIR="\$p/usr/lib/x86_64-linux-gnu/qemu"
exec "\$p/usr/bin/$bin" $firmware "\$@"
WRAPPER
  chmod 0755 "$prefix.new/bin/$bin"
done
rm -rf "$prefix"
mv "$prefix.new" "$prefix"
if ! is_ready; then
  echo "setup-qemu10: $prefix/bin/qemu-system-x86_64 does not answer as QEMU 10" >&2
  exit 1
fi
reply=$(printf '{"execute":"qmp_capabilities"}\n{"execute":"query-version"}\n{"execute":"quit"}\n' |
  timeout 30 "$prefix/bin/qemu-system-x86_64" -machine q35,accel=tcg -nodefaults -display none -S -qmp stdio)
echo "$reply" | grep -q '"major": 10' || { echo "setup-qemu10: QEMU 10 did not answer query-version over QMP" >&2; exit 1; }
echo "setup-qemu10: $("$prefix/bin/qemu-system-x86_64" --version | head -1) ready in $prefix"
