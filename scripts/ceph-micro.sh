#!/usr/bin/env bash
# A real single-host Ceph (Debian 12's ceph 16.2) for pve-cbt's tests and benches: one mon, one mgr,
# one memstore OSD, one radosgw (beast) and an `rbd` pool, all under DIR and on 127.0.0.1 only.
#
#   scripts/ceph-micro.sh start DIR    idempotent: a cluster already running in DIR is reused as is;
#                                      one stopped with `stop` restarts with its data; one whose
#                                      OSD was killed (no clean stop) is wiped and built anew
#   scripts/ceph-micro.sh env DIR      prints `export` lines: CEPH_CONF S3_ENDPOINT S3_ACCESS_KEY
#                                      S3_SECRET_KEY RBD_POOL PVE_CBT_CEPH_DIR
#   scripts/ceph-micro.sh status DIR   one line per daemon; exit 0 only when all four run
#   scripts/ceph-micro.sh stop DIR     SIGTERM (once) to every process whose command line names
#                                      DIR/ceph.conf (found in /proc, not by pid file), SIGKILL after 30 s
#
# What a test cluster needs on Ceph 16 (found with ../shared/ceph/micro-ceph.sh, whose layout this
# follows): `auth ... = none` (cephx refused restarted daemons for minutes); `ms mon client mode =
# crc` for radosgw (it defaults to secure, which never negotiates with auth none, and hangs);
# `osd fast shutdown = false` (else memstore never writes its data out and a restart has no PGs);
# beast with `endpoint=127.0.0.1:PORT` only (`port=` also binds 0.0.0.0). Every wait is bounded
# (PVE_CBT_CEPH_TIMEOUT, 120 s) and every ceph call has a timeout: Ceph clients wait forever for
# a cluster that is down. memstore keeps its data in memory: only a clean `stop` writes it out
# (marked by DIR/.osd-clean), so a cluster whose processes died otherwise (a killed session) has
# no PGs left on restart and would wait forever for pool rbd; `start` wipes it and bootstraps a new
# one instead. Daemons fork themselves and write DIR/run/NAME.pid; stop signals only
# processes whose /proc/PID/cmdline has DIR/ceph.conf as an argument, and all of them.
#
# Ports (read at the first start, kept in DIR/params): PVE_CBT_CEPH_MON_PORT (3310, msgr2),
# PVE_CBT_CEPH_MON_PORT_V1 (6799), PVE_CBT_CEPH_RGW_PORT (7490): not Ceph's defaults, so a test run
# does not collide with another cluster on the same machine. OSD and mgr take ports in 6800-7300.
set -euo pipefail

PROG=${0##*/}
die() { echo "$PROG: ERROR: $*" >&2; exit 1; }
log() { echo "$PROG: [+${SECONDS}s] $*" >&2; }
[ $# -eq 2 ] || { echo "usage: $PROG {start|stop|status|env} DIR" >&2; exit 2; }
CMD=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/ceph.conf RUN=$DIR/run LOGD=$DIR/log PARAMS=$DIR/params
TIMEOUT=${PVE_CBT_CEPH_TIMEOUT:-120}
DAEMONS=(mon.a mgr.x osd.0 client.rgw.r)
KILLED=

if [ -f "$PARAMS" ]; then
  # shellcheck disable=SC1090
  . "$PARAMS"
else
  MON_PORT_V2=${PVE_CBT_CEPH_MON_PORT:-3310}
  MON_PORT_V1=${PVE_CBT_CEPH_MON_PORT_V1:-6799}
  RGW_PORT=${PVE_CBT_CEPH_RGW_PORT:-7490}
fi

c() { timeout 60 ceph -c "$CONF" --connect-timeout 15 "$@"; }

wait_for() { # DESCRIPTION COMMAND...: retried each second for at most $TIMEOUT s
  local what=$1; shift
  wait_for_quietly "$@" || die "timed out after ${TIMEOUT}s waiting for $what (logs: $LOGD)"
}

wait_for_quietly() { # COMMAND...: like wait_for, but returns 1 on timeout instead of dying
  local end=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 1; done
}

live_pid() { # NAME -> pid of the recorded daemon if it is alive and ours
  local f=$RUN/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
  echo "$pid"
}

all_running() { local n; for n in "${DAEMONS[@]}"; do live_pid "$n" >/dev/null || return 1; done; }

start_daemon() { # NAME BINARY ARGS...
  local name=$1 end=$((SECONDS + TIMEOUT)); shift
  live_pid "$name" >/dev/null && return 0
  rm -f "$RUN/$name.pid"
  log "starting $name"
  # 9>&-: the daemon must not inherit (and hold) the start lock
  until timeout "$TIMEOUT" "$@" -c "$CONF" >>"$LOGD/$name.stdout" 2>&1 </dev/null 9>&-; do
    sleep 1; live_pid "$name" >/dev/null && break
    [ $SECONDS -lt $end ] || die "$name did not start within ${TIMEOUT}s, see $LOGD/$name.log"
    sleep 2
  done
  wait_for "$name to run" live_pid "$name"
}

dir_pids() { # [BINARY]: every process (but this script) with DIR/ceph.conf as an argument, from /proc
  local f pid arg args mine
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    [ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] && continue
    args=() mine=
    # read -d '': one argument per NUL; no process spawned, so nothing new carries $CONF in argv
    while IFS= read -r -d '' arg; do args+=("$arg"); [ "$arg" = "$CONF" ] && mine=1; done 2>/dev/null <"$f" || true # (a process gone meanwhile: skipped, silently)
    [ -n "$mine" ] || continue
    [ $# -eq 0 ] || [ "${args[0]##*/}" = "$1" ] || continue
    echo "$pid"
  done
}

signal_until_gone() { # DESCRIPTION [BINARY...]: SIGTERM once to every process of DIR (running BINARY), SIGKILL after 30 s
  # once: a second SIGTERM cuts a shutting-down OSD short, before memstore has written its data out
  local what=$1 end pids pid todo; local -A termed=(); shift
  end=$((SECONDS + 30))
  while :; do
    if [ $# -eq 0 ]; then pids=$(dir_pids); else pids=$(for b in "$@"; do dir_pids "$b"; done); fi
    [ -n "$pids" ] || return 0
    if [ $SECONDS -ge $end ]; then
      log "$what still running after 30 s (pids $(echo $pids)): SIGKILL"
      KILLED=1
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      end=$((SECONDS + 30))
    else
      todo=
      for pid in $pids; do [ -n "${termed[$pid]:-}" ] || { termed[$pid]=1; todo+=" $pid"; }; done
      # shellcheck disable=SC2086
      [ -z "$todo" ] || kill -TERM $todo 2>/dev/null || true
    fi
    sleep 0.5
  done
}

# A daemon is found by its command line, not only by its pid file: after `ceph mgr fail` the mgr
# respawns (execs itself and forks again), so the recorded pid can name a process already gone while
# its successor runs under a new pid. Every process of DIR running that binary is stopped.
stop_daemon() { # NAME BINARY
  local name=$1 bin=$2 pid
  pid=$(live_pid "$name") || pid=
  log "stopping $name${pid:+ (pid $pid)}"
  signal_until_gone "$name" "$bin"
  rm -f "$RUN/$name.pid"
}

write_conf() {
  cat >"$CONF.tmp" <<EOF
# generated by pve-cbt scripts/ceph-micro.sh: single-host test cluster on 127.0.0.1
[global]
fsid = $1
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
mon warn on insecure global id reclaim allowed = false
keyring = $DIR/ceph.client.admin.keyring
run dir = $RUN
crash dir = $DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
log file = $LOGD/\$name.log
pid file = $RUN/\$name.pid
admin socket = $RUN/\$name.asok

[mon]
mon data = $DIR/mon
mon cluster log file = $LOGD/cluster.log
keyring = $DIR/mon/keyring

[mgr]
mgr data = $DIR/mgr
keyring = $DIR/mgr/keyring

[osd]
osd data = $DIR/osd
keyring = $DIR/osd/keyring
osd objectstore = memstore
memstore device bytes = ${PVE_CBT_CEPH_MEMSTORE_BYTES:-4294967296}
# memstore writes its contents out only on a full shutdown
osd fast shutdown = false
osd class load list = *
osd class default list = *

[client.rgw.r]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
# radosgw's default (secure) never negotiates with auth none
ms mon client mode = crc
rgw data = $DIR/rgw
keyring = $DIR/rgw/keyring
EOF
  mv "$CONF.tmp" "$CONF"
}

bootstrap() {
  local fsid
  fsid=$(uuidgen)
  mkdir -p "$RUN" "$LOGD" "$DIR/crash" "$DIR/mgr" "$DIR/osd" "$DIR/rgw"
  printf 'MON_PORT_V2=%s\nMON_PORT_V1=%s\nRGW_PORT=%s\n' "$MON_PORT_V2" "$MON_PORT_V1" "$RGW_PORT" >"$PARAMS"
  write_conf "$fsid"
  rm -rf "$DIR/mon" && mkdir -p "$DIR/mon"
  ceph-authtool --create-keyring "$DIR/mon.keyring.tmp" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  chmod 600 "$DIR/ceph.client.admin.keyring"
  ceph-authtool "$DIR/mon.keyring.tmp" --import-keyring "$DIR/ceph.client.admin.keyring" >/dev/null
  monmaptool --create --clobber --fsid "$fsid" --enable-all-features \
    --addv a "[v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring.tmp" \
    >>"$LOGD/mon.a.stdout" 2>&1 || die "ceph-mon --mkfs failed, see $LOGD/mon.a.stdout"
  rm -f "$DIR/mon.keyring.tmp"
  touch "$DIR/.mon-done"
}

bootstrap_osd() {
  local uuid secret id
  uuid=$(uuidgen)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$secret\"}" | c osd new "$uuid" -i -) || die "ceph osd new failed"
  [ "$id" = 0 ] || die "expected osd id 0, got '$id'"
  rm -rf "$DIR/osd" && mkdir -p "$DIR/osd"
  ceph-authtool --create-keyring "$DIR/osd/keyring" --name osd.0 --add-key "$secret" >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$LOGD/osd.0.stdout" 2>&1 ||
    die "ceph-osd --mkfs failed, see $LOGD/osd.0.log"
  touch "$DIR/.osd-done"
}

osd_up() { c osd stat -f json 2>/dev/null | grep -q '"num_up_osds": *1'; }
mgr_available() { c mgr stat -f json 2>/dev/null | grep -q '"available": *true'; }
rbd_pool_ok() { timeout 20 rados -c "$CONF" -p rbd ls >/dev/null 2>&1; }
rgw_http() { curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$RGW_PORT/"; }

wipe_dir() { # every process of DIR stopped, everything in DIR but the lock and the ports removed
  signal_until_gone "processes of $DIR"
  find "$DIR" -mindepth 1 -maxdepth 1 ! -name .lock ! -name params -exec rm -rf {} +
}

do_start() {
  local t0=$SECONDS fresh=
  command -v ceph-mon >/dev/null || die "ceph-mon is not installed (scripts/setup.sh installs Ceph)"
  exec 9>"$DIR/.lock"
  flock -w "$TIMEOUT" 9 || die "another $PROG holds $DIR/.lock"
  if [ -f "$DIR/s3.env" ] && all_running && timeout 20 rados -c "$CONF" -p rbd ls >/dev/null 2>&1; then
    log "cluster in $DIR already runs; reused"
    return 0
  fi
  if [ -f "$DIR/.mon-done" ] && [ ! -f "$DIR/.osd-clean" ] && ! live_pid osd.0 >/dev/null; then
    log "osd.0's memstore did not survive (the cluster was not stopped with \`stop\`): wiping $DIR for a new cluster"
    wipe_dir
  fi
  [ -f "$DIR/.mon-done" ] || { log "new cluster in $DIR"; bootstrap; fresh=1; }
  mkdir -p "$RUN" "$LOGD"
  start_daemon mon.a ceph-mon -i a
  wait_for "the monitor" c mon stat
  [ -s "$DIR/mgr/keyring" ] || c auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o "$DIR/mgr/keyring" >/dev/null
  start_daemon mgr.x ceph-mgr -i x
  [ -f "$DIR/.osd-done" ] || bootstrap_osd
  start_daemon osd.0 ceph-osd -i 0
  # from here the OSD's data lives in memory only, until a clean stop writes it out again
  rm -f "$DIR/.osd-clean"
  wait_for "osd.0 to be up" osd_up
  if [ ! -f "$DIR/.rbd-done" ]; then
    c osd pool create rbd 8 8 >/dev/null
    timeout "$TIMEOUT" rbd -c "$CONF" pool init rbd || die "rbd pool init failed or timed out"
    touch "$DIR/.rbd-done"
  fi
  if [ -z "$fresh" ] && ! TIMEOUT=60 wait_for_quietly rbd_pool_ok; then
    # a reused OSD came back without its PGs after all: a new cluster rather than a wait forever
    # (the re-run bootstraps, so it is fresh and does not come here again)
    log "pool rbd did not come back on the reused cluster: wiping $DIR for a new cluster"
    wipe_dir
    exec 9>&-
    exec bash "$0" start "$DIR"
  fi
  wait_for "pool rbd" rbd_pool_ok
  [ -s "$DIR/rgw/keyring" ] || c auth get-or-create client.rgw.r mon 'allow rw' osd 'allow rwx' -o "$DIR/rgw/keyring" >/dev/null
  start_daemon client.rgw.r radosgw -n client.rgw.r
  wait_for "radosgw on 127.0.0.1:$RGW_PORT" rgw_http
  if [ ! -f "$DIR/s3.env" ]; then
    local ak sk
    ak=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
    sk=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    if ! timeout 60 radosgw-admin -c "$CONF" user info --uid=pve-cbt >/dev/null 2>&1; then
      timeout 60 radosgw-admin -c "$CONF" user create --uid=pve-cbt --display-name="pve-cbt tests" \
        --access-key="$ak" --secret-key="$sk" >/dev/null || die "radosgw-admin user create failed"
    fi
    printf 'S3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\n' "$ak" "$sk" >"$DIR/s3.env.tmp"
    chmod 600 "$DIR/s3.env.tmp" && mv "$DIR/s3.env.tmp" "$DIR/s3.env"
  fi
  wait_for "an active mgr" mgr_available
  log "cluster ready in $((SECONDS - t0))s"
}

do_stop() {
  exec 9>"$DIR/.lock"
  flock -w "$TIMEOUT" 9 || die "another $PROG holds $DIR/.lock"
  stop_daemon client.rgw.r radosgw
  local osd_pids
  osd_pids=$(dir_pids ceph-osd) KILLED=
  stop_daemon osd.0 ceph-osd
  # a memstore OSD that ended on SIGTERM has written its data out; one that needed SIGKILL has not;
  # one that was not running at all (killed before) leaves the mark as it was
  if [ -n "$osd_pids" ]; then
    if [ -z "$KILLED" ]; then touch "$DIR/.osd-clean"; else rm -f "$DIR/.osd-clean"; fi
  fi
  # the mon forgets the mgr now, so a restarted mon has no stale active mgr; the mgr respawns on it
  live_pid mon.a >/dev/null && { c mgr fail x >/dev/null 2>&1 || true; }
  stop_daemon mgr.x ceph-mgr
  stop_daemon mon.a ceph-mon
  # anything else still naming DIR/ceph.conf (a client left by a killed test, a second respawn)
  signal_until_gone "other processes of $DIR"
  log "stopped"
}

do_status() {
  local n pid rc=0
  for n in "${DAEMONS[@]}"; do
    if pid=$(live_pid "$n"); then echo "$n running pid=$pid"; else echo "$n stopped"; rc=1; fi
  done
  return $rc
}

do_env() {
  [ -f "$DIR/s3.env" ] || die "no cluster in $DIR (run: $PROG start $DIR)"
  # shellcheck disable=SC1091
  . "$DIR/s3.env"
  cat <<EOF
export PVE_CBT_CEPH_DIR=$DIR
export CEPH_CONF=$CONF
export S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export S3_ACCESS_KEY=$S3_ACCESS_KEY
export S3_SECRET_KEY=$S3_SECRET_KEY
export RBD_POOL=rbd
EOF
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) do_env ;;
  *) echo "usage: $PROG {start|stop|status|env} DIR" >&2; exit 2 ;;
esac
