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
#                                node-abi.json records the Node.js ABI (process.versions.modules)
#                                the native SQLite addon was checked to load with; the daemon refuses
#                                to start under another one (CBT_NODE_ABI_CHANGED), and installing
#                                again rebuilds the addon for the new Node.js.
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
# is identical.
#
# Ownership and modes are set explicitly, whatever the umask and whoever owns the checkout (root
# runs this code at every VM start, so nobody else may be able to change it): everything installed
# is owned by root (by the invoking user only for a --root test tree run without root), code
# directories 0755, files 0644, executables 0755; /etc/pve-cbt and /var/lib/pve-cbt 0700, the
# config and the manifest 0600. The copied tree may hold only directories, regular files and
# symlinks that stay inside it.
# --uninstall trusts the manifest only if it is a regular file owned by root (or that user) and not
# group/world-writable, and acts only on the exact paths this script writes (listed in
# check_entry); any other line refuses the whole uninstall before anything is removed.
# Backups, catalog and logs under /var/lib/pve-cbt and /var/log/pve-cbt are data, never removed by
# --uninstall.
set -euo pipefail
# shellcheck source=scripts/node-range.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/node-range.sh"

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
# Physical paths: no symlink in ROOT may redirect what is written or removed.
ROOT="$(cd "$ROOT" && pwd -P)"
FROM="$(cd "$FROM" && pwd -P)"
R="${ROOT%/}"   # prefix for paths: '' for /
if [ "$ROOT" = / ] && [ "$(id -u)" -ne 0 ]; then die "installing into / needs root (sudo $0)"; fi
# Every file is created private first and then given its mode explicitly.
umask 077
OWNER="$(id -u):$(id -g)"   # root:root for every real install (enforced above)
[ "$(id -u)" -eq 0 ] && OWNER=0:0

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
# Owned by root (or by the invoking user, who is root on a real install), not group/world-writable.
owned_safely() { # PATH (full, already lstat-able)
  local st
  st="$(stat -c '%u %a' -- "$1")" || return 1
  local uid="${st%% *}" mode="${st##* }"
  { [ "$uid" -eq 0 ] || [ "$uid" -eq "$(id -u)" ]; } && [ $(( 8#$mode & 8#022 )) -eq 0 ]
}
# The exact paths install.sh writes; every manifest line must be one of them.
check_entry() { # LINE
  local line="$1" a
  case "$line" in
    "tree $APP"|"file $WRAPPER"|"file $UNIT_PATH"|"hooks -"|"systemd $UNIT") return 0 ;;
  esac
  if [[ "$line" =~ ^config\ (/[^ ]+)\ [0-9a-f]{64}$ ]] && [ "${BASH_REMATCH[1]}" = "$CONFIG" ]; then return 0; fi
  if [[ "$line" =~ ^dir\ (/[^ ]+)$ ]]; then
    # Only the directories make_dir creates: the parents of what is installed, never / itself.
    for a in "$MANIFEST_DIR" "${APP%/*}" "${WRAPPER%/*}" "${CONFIG%/*}" "${UNIT_PATH%/*}"; do
      while [ -n "$a" ]; do
        [ "${BASH_REMATCH[1]}" = "$a" ] && return 0
        a="${a%/*}"
      done
    done
  fi
  return 1
}
# No component of ROOT/PATH below ROOT may be a symlink (the last one is checked too: a symlinked
# tree or file is not what install.sh wrote).
no_symlink_below_root() { # PATH (inside ROOT)
  local p="$1"
  while [ -n "$p" ]; do
    [ -L "$R$p" ] && return 1
    p="${p%/*}"
  done
  return 0
}
load_manifest() {
  ENTRIES=()
  local m="$R$MANIFEST" line a
  [ -e "$m" ] || [ -L "$m" ] || return 0
  [ -f "$m" ] && [ ! -L "$m" ] || die "refusing $MANIFEST: not a regular file; nothing was changed"
  owned_safely "$m" && owned_safely "$R$MANIFEST_DIR" ||
    die "refusing $MANIFEST: it or its directory is not owned by root or is group/world-writable; nothing was changed (check its content, then chown root:root and chmod 0600 it and 0700 its directory)"
  no_symlink_below_root "$MANIFEST" || die "refusing $MANIFEST: a symlink is on its path; nothing was changed"
  while IFS= read -r line || [ -n "$line" ]; do
    [ -n "$line" ] || continue
    check_entry "$line" || die "refusing $MANIFEST: unexpected entry '${line:0:200}' (not a path install.sh writes); nothing was changed"
    read -r _ a _ <<< "$line"
    case "$a" in /*) no_symlink_below_root "$a" || die "refusing $MANIFEST: $a is or lies under a symlink; nothing was changed" ;; esac
    ENTRIES+=("$line")
  done < "$m"
  return 0
}
save_manifest() {
  local tmp
  tmp="$(mktemp "$R$MANIFEST.XXXXXX")"
  printf '%s\n' "${ENTRIES[@]}" > "$tmp"
  chown "$OWNER" "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$R$MANIFEST"
}
# mkdir -p that records each directory it creates, outermost first, root-owned with MODE (0755).
make_dir() { # PATH (inside ROOT) [MODE]
  local p="$1" mode="${2:-0755}" parent
  [ -d "$R$p" ] && return 0
  parent="$(dirname "$p")"
  [ "$parent" != "$p" ] && make_dir "$parent"
  install -d -o "${OWNER%:*}" -g "${OWNER#*:}" -m "$mode" "$R$p"
  record dir "$p"
}
# pve-cbt's own private directory: created or, when it exists, made root-owned 0700 again.
private_dir() { # PATH (inside ROOT)
  make_dir "$1" 0700
  [ ! -L "$R$1" ] || die "$1 is a symlink: refusing to install"
  chown "$OWNER" "$R$1"
  chmod 0700 "$R$1"
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
      file) rm -f -- "$R$path" ;;
      tree) rm -rf -- "$R$path" ;;
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
# The node to run with: it must fit package.json engines.node (the same reading as setup.sh), since
# the native addon is built per Node ABI and only those majors are tested.
find_node() {
  local n="${NODE:-$(command -v node || true)}" range r=0 version
  range="$(engines_node "$FROM/package.json")"
  range="${range:->=20}"
  [ -n "$n" ] || die "node not found: run 'bash scripts/setup.sh' (it installs a Node.js that fits '$range') or pass --node PATH"
  n="$(readlink -f "$n")"
  version="$("$n" -p 'process.versions.node')" || die "$n does not run"
  major_fits "$(major_of "$version")" "$range" || r=$?
  [ "$r" -ne 2 ] || die "cannot read engines.node '$range' in $FROM/package.json"
  [ "$r" -eq 0 ] || die "$n is Node.js $version; pve-cbt needs '$range' (package.json engines). Install a fitting Node.js (Proxmox VE 9 ships 20; otherwise NodeSource's node_20.x) or pass --node PATH"
  echo "$n"
}

# The native SQLite addon must load with NODE; when it does not (built for another Node ABI), it is
# rebuilt in the stage for NODE (npm rebuild, from source when no prebuilt binary can be fetched:
# setup.sh installs g++, make and python3). Then the ABI is recorded in node-abi.json.
check_native_addon() { # STAGE NODE
  local stage="$1" node="$2" addon="$1/node_modules/better-sqlite3"
  if [ -d "$addon" ]; then
    if ! "$node" -e 'new (require(process.argv[1]))(":memory:").close()' "$addon" 2>/dev/null; then
      say "the SQLite addon does not load with Node.js $("$node" --version): rebuilding it for this Node.js"
      (cd "$stage" && PATH="$(dirname "$node"):$PATH" npm rebuild better-sqlite3 --no-audit --no-fund >&2) ||
        die "rebuilding better-sqlite3 for $node failed: run 'bash scripts/setup.sh' (compiler, headers) and try again"
      "$node" -e 'new (require(process.argv[1]))(":memory:").close()' "$addon" ||
        die "the rebuilt SQLite addon does not load with $node"
    fi
  fi
  "$node" -e 'process.stdout.write(JSON.stringify({ modules: process.versions.modules, node: process.versions.node }) + "\n")' > "$stage/node-abi.json"
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

# Copies content (plain cp: no owner carried over; special files are refused), then sets owner and
# modes (0755 for directories and anything executable, 0644 for the rest). The stage is private
# (0700) until it is complete, so nobody can change it between copy and rename.
copy_app() { # NODE
  local stage="$R$APP.new" m bad
  rm -rf -- "$stage"
  install -d -o "${OWNER%:*}" -g "${OWNER#*:}" -m 0700 "$stage"
  cp -R "$FROM/dist" "$FROM/package.json" "$stage/"
  [ -f "$FROM/README.md" ] && cp "$FROM/README.md" "$stage/"
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    mkdir -p "$stage/$(dirname "$m")"
    cp -R "$FROM/$m" "$stage/$m"
  done < <(production_modules)
  check_native_addon "$stage" "$1"
  bad="$(find "$stage" ! -type d ! -type f ! -type l -print -quit)"
  [ -z "$bad" ] || die "refusing to install ${bad#"$stage"/}: not a regular file, directory or symlink"
  while IFS= read -r -d '' m; do
    case "$(readlink -f -- "$m")/" in "$stage"/*) ;; *) die "refusing to install ${m#"$stage"/}: a symlink leading out of the app" ;; esac
  done < <(find "$stage" -type l -print0)
  chown -R -h "$OWNER" "$stage"
  find "$stage" -type d -exec chmod 0755 {} +
  find "$stage" -type f -perm /111 -exec chmod 0755 {} +
  find "$stage" -type f ! -perm /111 -exec chmod 0644 {} +
  rm -rf -- "$R$APP"
  mv "$stage" "$R$APP"
  record tree "$APP"
}

write_wrapper() {
  local node="$1"
  rm -f -- "$R$WRAPPER.tmp"
  cat > "$R$WRAPPER.tmp" <<EOF
#!/bin/sh
# pve-cbt command, written by install.sh. Node.js was found at install time; the app is located
# relative to this file (../../lib/pve-cbt), which also holds inside a test root.
here="\$(dirname "\$(readlink -f "\$0")")"
exec $node "\$here/../../lib/pve-cbt/dist/daemon/cli/main.js" "\$@"
EOF
  chown "$OWNER" "$R$WRAPPER.tmp"
  chmod 0755 "$R$WRAPPER.tmp"
  mv -f "$R$WRAPPER.tmp" "$R$WRAPPER"
  record file "$WRAPPER"
}

write_default_config() {
  if [ -e "$R$CONFIG" ] || [ -L "$R$CONFIG" ]; then
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
  chown "$OWNER" "$R$CONFIG"
  chmod 0600 "$R$CONFIG"
  record config "$CONFIG" "$(sha256sum < "$R$CONFIG" | cut -d' ' -f1)"
  say "wrote default $CONFIG (add jobs there)"
}

install_hooks() {
  if ! has_hooks_command install; then
    warn "this build has no 'pve-cbt hooks install' command: VM hook scripts were NOT installed, so"
    warn "pve-cbt will not learn about VM starts/stops. Install them with 'pve-cbt hooks install' once available."
    return 0
  fi
  # The usual umask for what the CLI creates in Proxmox's own folders (snippets, vzdump.conf); it
  # sets the modes of its own files explicitly.
  (umask 022 && "$R$WRAPPER" hooks install --root "$ROOT") || die "'pve-cbt hooks install --root $ROOT' failed"
  record hooks -
}

do_install() {
  [ -f "$FROM/dist/daemon/cli/main.js" ] || die "$FROM is not built (no dist/daemon/cli/main.js): run 'bash scripts/setup.sh' first"
  local node
  node="$(find_node)"
  load_manifest
  private_dir "$MANIFEST_DIR"
  make_dir "$(dirname "$APP")"
  copy_app "$node"
  make_dir "$(dirname "$WRAPPER")"
  write_wrapper "$node"
  private_dir "$(dirname "$CONFIG")"
  write_default_config
  make_dir "$(dirname "$UNIT_PATH")"
  install -o "${OWNER%:*}" -g "${OWNER#*:}" -m 0644 "$FROM/systemd/$UNIT" "$R$UNIT_PATH"
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
