# Sourced by scripts/setup.sh and install.sh: does a Node.js major fit package.json's
# `engines.node`? One reading of the range for both, so they never disagree. The range must be
# space-separated `>=MAJOR` / `<MAJOR` comparators (e.g. ">=20 <21"), which is all pve-cbt uses: the
# native SQLite addon is built per Node ABI, i.e. per major.

# The engines.node string of a package.json (empty when there is none); plain text parsing, since
# setup.sh may run before Node is installed.
engines_node() { # PACKAGE_JSON
  tr -d '\n' < "$1" | sed -n 's/.*"engines"[[:space:]]*:[[:space:]]*{[^}]*"node"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'
}

# 0 when MAJOR fits RANGE, 1 when not, 2 when RANGE has a form this does not read.
major_fits() { # MAJOR RANGE
  local major="$1" c v
  for c in $2; do
    case "$c" in
      '>='*) v="${c#>=}" ;;
      '<'*) v="${c#<}" ;;
      *) return 2 ;;
    esac
    [[ "$v" =~ ^[0-9]+$ ]] || return 2
    case "$c" in
      '>='*) [ "$major" -ge "$v" ] || return 1 ;;
      '<'*) [ "$major" -lt "$v" ] || return 1 ;;
    esac
  done
  return 0
}

# "20" from "v20.19.2", "20.19.2+dfsg-1", "1:20.19.2-1" (a Debian version with an epoch).
major_of() { # VERSION
  local v="${1#v}"
  v="${v#*:}"
  echo "${v%%.*}"
}
