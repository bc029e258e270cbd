#!/usr/bin/env bash
# Installs pve-cbt on a Proxmox VE host (or into a test root with --root DIR), idempotently.
#
#   sudo ./install.sh                 install or update from this checkout (built: npm run build)
#   sudo ./install.sh --uninstall     remove exactly what install.sh installed
#   ./install.sh --root /tmp/r        the same into a simulated root (tests); no systemctl there
#
# What goes where (paths inside ROOT):
#   /usr/lib/pve-cbt/            a COPY of the built app: dist/, package.json, README.md and the
#                                production node_modules. A copy, not a link, so the checkout can be
#                                removed or rebuilt without touching the running service.
#   /usr/local/bin/pve-cbt       sh wrapper: the node found now (absolute path) + the app, located
#                                relative to the wrapper so the same file works inside ROOT.
#   /etc/pve-cbt/config.json     a default config, only if there is none (never overwritten).
#   /etc/systemd/system/pve-cbtd.service
#   hooks                        `pve-cbt hooks install --root ROOT` (hook scripts, vzdump.conf).
#   /var/lib/pve-cbt/install-manifest   what this script created, one `TYPE PATH [SHA256]` a line:
#       dir PATH      a directory it created (removed on uninstall only if empty)
#       tree PATH     a directory it owns entirely (removed with its content)
#       file PATH     a file it wrote
#       config PATH SHA   the config it wrote; removed on uninstall only if still unchanged
#       hooks -       hooks were installed through the CLI
#       systemd UNIT  the unit was enabled and started (only when ROOT is / under systemd)
# A second install rewrites the same files and keeps the first install's entries, so the result
# is identical. Backups, catalog and logs under /var/lib/pve-cbt and /var/log/pve-cbt are data,
# never removed by --uninstall.
set -euo pipefail

ROOT=/
FROM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE=""
UNINSTALL=0
UNIT=pve-cbtd.service

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo "options: --root DIR  --from APPDIR (default: this checkout)  --node PATH  --uninstall"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --from) FROM="${2:?--from needs a directory}"; shift 2 ;;
    --node) NODE="${2:?--node needs a path}"; shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

say() { echo "install.sh: $*"; }
warn() { echo "install.sh: WARNING: $*" >&2; }
die() { echo "install.sh: $*" >&2; exit 1; }

[ -d "$ROOT" ] || die "root $ROOT does not exist"
[ -d "$FROM" ] || die "app directory $FROM does not exist"
ROOT="$(cd "$ROOT" && pwd)"
FROM="$(cd "$FROM" && pwd)"
R="${ROOT%/}"   # prefix for paths: '' for /
if [ "$ROOT" = / ] && [ "$(id -u)" -ne 0 ]; then die "installing into / needs root (sudo $0)"; fi

MANIFEST_DIR=/var/lib/pve-cbt
MANIFEST="$MANIFEST_DIR/install-manifest"
APP=/usr/lib/pve-cbt
WRAPPER=/usr/local/bin/pve-cbt
CONFIG=/etc/pve-cbt/config.json
UNIT_PATH=/etc/systemd/system/$UNIT

systemd_here() {
  [ "$ROOT" = / ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemctl >/dev/null
}

# ---------------------------------------------------------------- manifest
declare -a ENTRIES=()
have_entry() { # TYPE PATH
  local e
  for e in "${ENTRIES[@]+"${ENTRIES[@]}"}"; do
    case "$e" in "$1 $2"|"$1 $2 "*) return 0 ;; esac
  done
  return 1
}
record() { # TYPE PATH [SHA]
  have_entry "$1" "$2" || ENTRIES+=("$*")
}
load_manifest() {
  ENTRIES=()
  if [ -f "$R$MANIFEST" ]; then
    while IFS= read -r line; do [ -n "$line" ] && ENTRIES+=("$line"); done < "$R$MANIFEST"
  fi
  return 0
}
save_manifest() {
  printf '%s\n' "${ENTRIES[@]}" > "$R$MANIFEST.tmp"
  mv "$R$MANIFEST.tmp" "$R$MANIFEST"
}
# mkdir -p that records each directory it creates, outermost first.
make_dir() { # PATH (inside ROOT)
  local p="$1" parent
  [ -d "$R$p" ] && return 0
  parent="$(dirname "$p")"
  [ "$parent" != "$p" ] && make_dir "$parent"
  mkdir "$R$p"
  record dir "$p"
}

# `pve-cbt hooks` comes from another part of the project; detect it from its generated help
# (an unknown command with --help prints the general help instead, so look at the usage line).
has_hooks_command() { # SUBCOMMAND
  local help
  help="$("$R$WRAPPER" hooks --help 2>/dev/null)" || return 1
  grep -q '^Usage: pve-cbt hooks' <<< "$help" && grep -qw "$1" <<< "$help"
}

# ---------------------------------------------------------------- uninstall
do_uninstall() {
  load_manifest
  if [ ${#ENTRIES[@]} -eq 0 ]; then say "nothing installed by install.sh under $ROOT"; return 0; fi
  local i type path sha
  if have_entry systemd "$UNIT" && systemd_here; then
    systemctl disable --now "$UNIT" || warn "could not stop/disable $UNIT"
  fi
  if have_entry hooks -; then
    if [ -x "$R$WRAPPER" ] && has_hooks_command uninstall; then
      "$R$WRAPPER" hooks uninstall --root "$ROOT" || die "'pve-cbt hooks uninstall' failed; nothing else was removed"
    else
      warn "hooks were installed but 'pve-cbt hooks uninstall' is not available: remove the hook scripts by hand"
    fi
  fi
  for (( i=${#ENTRIES[@]}-1; i>=0; i-- )); do
    read -r type path sha <<< "${ENTRIES[$i]}"
    case "$type" in
      file) rm -f "$R$path" ;;
      tree) rm -rf "${R:?}$path" ;;
      config)
        if [ -f "$R$path" ] && [ "$(sha256sum < "$R$path" | cut -d' ' -f1)" = "$sha" ]; then
          rm -f "$R$path"
        elif [ -f "$R$path" ]; then
          say "keeping $path: it was changed after installation"
        fi ;;
    esac
  done
  rm -f "$R$MANIFEST"
  for (( i=${#ENTRIES[@]}-1; i>=0; i-- )); do
    read -r type path sha <<< "${ENTRIES[$i]}"
    if [ "$type" = dir ] && [ -d "$R$path" ]; then rmdir "$R$path" 2>/dev/null || say "keeping $path: not empty"; fi
  done
  if have_entry systemd "$UNIT" && systemd_here; then systemctl daemon-reload; fi
  say "uninstalled from $ROOT"
}

# ---------------------------------------------------------------- install
find_node() {
  local n="${NODE:-$(command -v node || true)}"
  [ -n "$n" ] || die "node not found: install Node.js 20 (or pass --node PATH)"
  n="$(readlink -f "$n")"
  local major
  major="$("$n" -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || die "$n is Node.js $major; pve-cbt needs 20 or newer"
  echo "$n"
}

# The production dependencies' top-level folders (dev tools like jest and typescript stay out).
production_modules() {
  if command -v npm >/dev/null && [ -f "$FROM/package-lock.json" ]; then
    (cd "$FROM" && npm ls --omit=dev --all --parseable 2>/dev/null || true) |
      sed "s#^$FROM/##" | grep -E '^node_modules/(@[^/]+/)?[^/]+$' || true
  elif [ -d "$FROM/node_modules" ]; then
    echo node_modules
  fi
}

copy_app() {
  local stage="$R$APP.new" m
  rm -rf "$stage"
  mkdir -p "$stage"
  cp -a "$FROM/dist" "$FROM/package.json" "$stage/"
  [ -f "$FROM/README.md" ] && cp -a "$FROM/README.md" "$stage/"
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    mkdir -p "$stage/$(dirname "$m")"
    cp -a "$FROM/$m" "$stage/$m"
  done < <(production_modules)
  rm -rf "${R:?}$APP"
  mv "$stage" "$R$APP"
  record tree "$APP"
}

write_wrapper() {
  local node="$1"
  cat > "$R$WRAPPER.tmp" <<EOF
#!/bin/sh
# pve-cbt command, written by install.sh. Node.js was found at install time; the app is located
# relative to this file (../../lib/pve-cbt), which also holds inside a test root.
here="\$(dirname "\$(readlink -f "\$0")")"
exec $node "\$here/../../lib/pve-cbt/dist/daemon/cli/main.js" "\$@"
EOF
  chmod 0755 "$R$WRAPPER.tmp"
  mv "$R$WRAPPER.tmp" "$R$WRAPPER"
  record file "$WRAPPER"
}

write_default_config() {
  if [ -e "$R$CONFIG" ]; then
    have_entry config "$CONFIG" || say "keeping existing $CONFIG"
    return 0
  fi
  cat > "$R$CONFIG" <<'EOF'
{
  "repository": "/var/lib/pve-cbt/repository",
  "logLevel": "info",
  "concurrency": 1,
  "jobs": []
}
EOF
  chmod 0644 "$R$CONFIG"
  record config "$CONFIG" "$(sha256sum < "$R$CONFIG" | cut -d' ' -f1)"
  say "wrote default $CONFIG (add jobs there)"
}

install_hooks() {
  if ! has_hooks_command install; then
    warn "this build has no 'pve-cbt hooks install' command: VM hook scripts were NOT installed, so"
    warn "pve-cbt will not learn about VM starts/stops. Install them with 'pve-cbt hooks install' once available."
    return 0
  fi
  "$R$WRAPPER" hooks install --root "$ROOT" || die "'pve-cbt hooks install --root $ROOT' failed"
  record hooks -
}

do_install() {
  [ -f "$FROM/dist/daemon/cli/main.js" ] || die "$FROM is not built (no dist/daemon/cli/main.js): run 'bash scripts/setup.sh' first"
  local node
  node="$(find_node)"
  load_manifest
  make_dir "$MANIFEST_DIR"
  make_dir "$(dirname "$APP")"
  copy_app
  make_dir "$(dirname "$WRAPPER")"
  write_wrapper "$node"
  make_dir "$(dirname "$CONFIG")"
  write_default_config
  make_dir "$(dirname "$UNIT_PATH")"
  install -m 0644 "$FROM/systemd/$UNIT" "$R$UNIT_PATH"
  record file "$UNIT_PATH"
  save_manifest
  install_hooks
  if systemd_here; then
    systemctl daemon-reload
    systemctl enable "$UNIT"
    systemctl restart "$UNIT"
    record systemd "$UNIT"
    say "started $UNIT (journalctl -u ${UNIT%.service} -f)"
  elif [ "$ROOT" = / ]; then
    warn "systemd is not PID 1 here: $UNIT installed but not started"
  fi
  save_manifest
  say "installed into $ROOT ($("$R$WRAPPER" --version 2>/dev/null || echo '?'))"
}

if [ "$UNINSTALL" -eq 1 ]; then do_uninstall; else do_install; fi
