#!/usr/bin/env bash
# A local spacefabric cluster: one controller and N nodes as background processes on 127.0.0.1.
#
#   scripts/cluster.sh up --nodes 8 --profile earth-moon   build (release, once), start, wait
#                         [--time-dilation K]              every clock K times slower (default 1)
#                         [--forwarders N | --no-forwarder] N forwarder processes share the trunks (default 1)
#   scripts/cluster.sh status                              nodes, sites, jobs
#   scripts/cluster.sh logs [controller|NODE|forwarder[/I]] [-f]  a process's log (NODE: index or name)
#   scripts/cluster.sh bench ARGS...                       spacefabric-bench [allreduce] ARGS --controller URL --join-token T
#   scripts/cluster.sh bench train ARGS...                 the train comparison as controller jobs (one per strategy)
#   scripts/cluster.sh ping [--iterations N]               control-plane round trips per node
#   scripts/cluster.sh kill NODE                           SIGKILL a node (a failure drill)
#   scripts/cluster.sh add --site S                        start one more node (a replacement)
#   scripts/cluster.sh kill forwarder[/I]; add --forwarder[/I]  a forwarder outage drill, and its restart
#   scripts/cluster.sh down                                stop exactly what `up` started
#
# Everything lives under .cluster/ at the repository root: pid files, logs, the controller's
# state dir (members, plan, jobs, cluster CA), the join token. Ports (override with env):
#   SPACEFABRIC_CLUSTER_CONTROLLER_PORT (7400/tcp gRPC), SPACEFABRIC_CLUSTER_METRICS_PORT
#   (9400/tcp), SPACEFABRIC_CLUSTER_NODE_PORT (7500+i/udp QUIC), SPACEFABRIC_CLUSTER_NODE_METRICS_PORT
#   (9500+i/tcp). SPACEFABRIC_CLUSTER_WAIT (seconds to wait for registration, default 120).
#   SPACEFABRIC_CLUSTER_UDP_PAYLOAD (fabric datagram size on loopback, default 16384).
#   SPACEFABRIC_CLUSTER_BUILD (release, the default, or debug: which binaries run).
#
# --time-dilation K (DieCast's time dilation; env SPACEFABRIC_TIME_DILATION): the controller and
# every node run their emulated clock K times slower than the wall clock, so this host can
# emulate links K times faster than it could keep up with; every reported time is emulated
# time. Kept in .cluster/time_dilation for `add`; benches take K from the controller.
#   SPACEFABRIC_CLUSTER_FORWARDER_PORT (7390+I/udp), SPACEFABRIC_CLUSTER_FORWARDER_METRICS_PORT
#   (9390+I/tcp): forwarder I of N (`--shard I/N`) applies its share of the profile's shared
#   cross-site trunks for all nodes (netem_profiles::TrunkCarriers: each trunk on exactly one
#   forwarder); started when the profile has more than one site, unless --no-forwarder. Forwarder
#   I's pid and log are .cluster/forwarder-I.pid and .cluster/logs/forwarder-I.log; with one
#   forwarder, `forwarder` means forwarder/0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.cluster"
# SPACEFABRIC_CLUSTER_BUILD=debug runs debug binaries (no release build; slower processes,
# for a busy machine that has them built already). Default release.
BUILD="${SPACEFABRIC_CLUSTER_BUILD:-release}"
[[ "$BUILD" == release || "$BUILD" == debug ]] || { echo "cluster.sh: SPACEFABRIC_CLUSTER_BUILD=$BUILD: release or debug" >&2; exit 2; }
BIN="$ROOT/target/$BUILD"
CONTROLLER_PORT="${SPACEFABRIC_CLUSTER_CONTROLLER_PORT:-7400}"
METRICS_PORT="${SPACEFABRIC_CLUSTER_METRICS_PORT:-9400}"
NODE_PORT="${SPACEFABRIC_CLUSTER_NODE_PORT:-7500}"
NODE_METRICS_PORT="${SPACEFABRIC_CLUSTER_NODE_METRICS_PORT:-9500}"
WAIT_SECONDS="${SPACEFABRIC_CLUSTER_WAIT:-120}"
URL="http://127.0.0.1:$CONTROLLER_PORT"
FORWARDER_PORT="${SPACEFABRIC_CLUSTER_FORWARDER_PORT:-7390}"
FORWARDER_METRICS_PORT="${SPACEFABRIC_CLUSTER_FORWARDER_METRICS_PORT:-9390}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

# pid_alive FILE: the pid in FILE runs one of our binaries (not a recycled pid).
pid_alive() {
  local file="$1" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *spacefabric-* ]]
}

tcp_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_exec FILE: waits (up to 10 s) until the pid in FILE has exec'd one of our binaries; `$!`
# is the forked shell until then, so checking it at once can misreport a start as an exit.
wait_exec() {
  local file="$1" pid i
  pid="$(cat "$file")"
  for ((i = 0; i < 100; i++)); do
    pid_alive "$file" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

udp_busy() {
  local hex
  hex="$(printf '%04X' "$1")"
  grep -qE "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/udp /proc/net/udp6 2>/dev/null
}

token() { cat "$DIR/token"; }

time_dilation() { cat "$DIR/time_dilation" 2>/dev/null || echo 1; }

resolve_profile() {
  local p="$1"
  if [[ -f "$p" ]]; then
    (cd "$(dirname "$p")" && echo "$(pwd)/$(basename "$p")")
  elif [[ -f "$ROOT/netem-profiles/profiles/$p.toml" ]]; then
    echo "$ROOT/netem-profiles/profiles/$p.toml"
  else
    die "--profile $p: neither a file nor a shipped profile (see netem-profiles/profiles/)"
  fi
}

# start_node I SITE: node-I on ports NODE_PORT+I / NODE_METRICS_PORT+I, its train commits
# under .cluster/node-I/.
start_node() {
  local i="$1" site="$2"
  SPACEFABRIC_JOIN_TOKEN="$(token)" nohup "$BIN/spacefabric-node" \
    --controller "$URL" --name "node-$i" --site "$site" \
    --listen "127.0.0.1:$((NODE_PORT + i))" --advertise "127.0.0.1:$((NODE_PORT + i))" \
    --metrics-listen "127.0.0.1:$((NODE_METRICS_PORT + i))" \
    --state-dir "$DIR/node-$i" --udp-payload "${SPACEFABRIC_CLUSTER_UDP_PAYLOAD:-16384}" \
    --time-dilation "$(time_dilation)" \
    > "$DIR/logs/node-$i.log" 2>&1 &
  echo $! > "$DIR/node-$i.pid"
  wait_exec "$DIR/node-$i.pid" || die "node-$i did not start; see $DIR/logs/node-$i.log"
}

# forwarder_count: how many forwarders `up` started (0: none).
forwarder_count() {
  cat "$DIR/forwarders" 2>/dev/null || echo 0
}

# forwarder_index NAME: the I of `forwarder`, `forwarder/I` or `forwarder-I` (dies naming the
# choices when NAME is ambiguous or out of range).
forwarder_index() {
  local name="$1" n i
  n="$(forwarder_count)"
  (( n > 0 )) || die "this cluster runs no forwarder (--no-forwarder, or a one-site profile)"
  case "$name" in
    forwarder)
      (( n == 1 )) || die "which forwarder? this cluster runs $n: forwarder/0 .. forwarder/$((n - 1))"
      i=0 ;;
    forwarder/*|forwarder-*) i="${name#forwarder?}" ;;
    *) die "not a forwarder: '$name'" ;;
  esac
  [[ "$i" =~ ^[0-9]+$ ]] && (( i < n )) || die "no forwarder '$name': this cluster runs forwarder/0 .. forwarder/$((n - 1))"
  echo "$i"
}

# start_forwarder I: forwarder I of N on FORWARDER_PORT+I/udp (`--shard I/N`); it asks the
# controller for the scenario epoch, so the controller must be up.
start_forwarder() {
  local i="$1" n port log pidf
  n="$(forwarder_count)"
  port=$((FORWARDER_PORT + i))
  log="$DIR/logs/forwarder-$i.log"
  pidf="$DIR/forwarder-$i.pid"
  SPACEFABRIC_JOIN_TOKEN="$(token)" nohup "$BIN/spacefabric-node" forwarder \
    --profile "$(cat "$DIR/profile")" --controller "$URL" --shard "$i/$n" \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$((FORWARDER_METRICS_PORT + i))" \
    >> "$log" 2>&1 &
  echo $! > "$pidf"
  wait_exec "$pidf" || die "forwarder/$i did not start; see $log"
  local t0=$SECONDS
  until udp_busy "$port"; do
    pid_alive "$pidf" || die "forwarder/$i exited; see $log:
$(tail -n 5 "$log")"
    (( SECONDS - t0 < 30 )) || die "forwarder/$i did not open port $port/udp within 30 s"
    sleep 0.2
  done
}

cmd_up() {
  local nodes="" profile="" dilation="${SPACEFABRIC_TIME_DILATION:-1}" forwarder=1 forwarders=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --nodes) nodes="${2:-}"; shift 2 ;;
      --profile) profile="${2:-}"; shift 2 ;;
      --time-dilation) dilation="${2:-}"; shift 2 ;;
      --no-forwarder) forwarder=""; shift ;;
      --forwarders) forwarders="${2:-}"; shift 2 ;;
      -h|--help) usage 0 ;;
      *) die "up: unknown argument '$1' (use --nodes N --profile P [--time-dilation K] [--forwarders N | --no-forwarder])" ;;
    esac
  done
  [[ "$forwarders" =~ ^[1-9][0-9]{0,2}$ ]] || die "up: --forwarders $forwarders: a number of forwarder processes from 1 to 999 (or --no-forwarder)"
  # Forwarder I uses FORWARDER_PORT+I/udp and FORWARDER_METRICS_PORT+I/tcp: neither range may
  # reach the nodes' or the controller's ports.
  local last_fwd=$((FORWARDER_PORT + forwarders - 1)) last_fwd_metrics=$((FORWARDER_METRICS_PORT + forwarders - 1))
  for p in "$CONTROLLER_PORT" "$METRICS_PORT" "$NODE_PORT" "$NODE_METRICS_PORT"; do
    (( (p < FORWARDER_PORT || p > last_fwd) && (p < FORWARDER_METRICS_PORT || p > last_fwd_metrics) )) ||
      die "up: --forwarders $forwarders: forwarder ports $FORWARDER_PORT..$last_fwd/udp, $FORWARDER_METRICS_PORT..$last_fwd_metrics/tcp would include port $p"
  done
  [[ "$dilation" =~ ^[1-9][0-9]{0,6}$ ]] || die "up: --time-dilation $dilation: an integer K from 1 to 1000000"
  [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "up: --nodes N (a positive number) is required"
  (( ${#nodes} <= 5 )) || die "up: --nodes $nodes does not fit: one UDP and one TCP port per node (max 65535)"
  # Node i uses NODE_PORT+i/udp and NODE_METRICS_PORT+i/tcp: both ranges must fit below 65536
  # and the TCP range must not reach the controller's ports.
  local last_quic=$((NODE_PORT + nodes - 1)) last_metrics=$((NODE_METRICS_PORT + nodes - 1))
  (( last_quic <= 65535 && last_metrics <= 65535 )) ||
    die "up: --nodes $nodes does not fit: node ports would reach $last_quic/udp and $last_metrics/tcp (max 65535)"
  for p in "$CONTROLLER_PORT" "$METRICS_PORT"; do
    (( p < NODE_METRICS_PORT || p > last_metrics )) ||
      die "up: --nodes $nodes: node metrics ports $NODE_METRICS_PORT..$last_metrics/tcp would include the controller's port $p"
  done
  [[ -n "$profile" ]] || die "up: --profile P (a shipped profile name or a file) is required"
  if pid_alive "$DIR/controller.pid"; then
    die "a cluster is already running (controller pid $(cat "$DIR/controller.pid")); see 'scripts/cluster.sh status', or 'scripts/cluster.sh down' first"
  fi
  local profile_file
  profile_file="$(resolve_profile "$profile")"
  mapfile -t sites < <(sed -n 's/^\[sites\.\([^]]*\)\].*/\1/p' "$profile_file")
  [[ ${#sites[@]} -gt 0 ]] || die "$profile_file: no [sites.NAME] tables found"
  # One site: no cross-site trunk to share.
  [[ ${#sites[@]} -gt 1 ]] || forwarder=""

  # Every port must be free before anything starts.
  local busy=()
  tcp_busy "$CONTROLLER_PORT" && busy+=("$CONTROLLER_PORT/tcp (controller gRPC)")
  tcp_busy "$METRICS_PORT" && busy+=("$METRICS_PORT/tcp (controller metrics)")
  if [[ -n "$forwarder" ]]; then
    for ((i = 0; i < forwarders; i++)); do
      udp_busy $((FORWARDER_PORT + i)) && busy+=("$((FORWARDER_PORT + i))/udp (forwarder/$i)")
      tcp_busy $((FORWARDER_METRICS_PORT + i)) && busy+=("$((FORWARDER_METRICS_PORT + i))/tcp (forwarder/$i metrics)")
    done
  fi
  for ((i = 0; i < nodes; i++)); do
    udp_busy $((NODE_PORT + i)) && busy+=("$((NODE_PORT + i))/udp (node-$i QUIC)")
    tcp_busy $((NODE_METRICS_PORT + i)) && busy+=("$((NODE_METRICS_PORT + i))/tcp (node-$i metrics)")
  done
  if [[ ${#busy[@]} -gt 0 ]]; then
    die "port(s) already in use: ${busy[*]}; stop what holds them or set SPACEFABRIC_CLUSTER_*_PORT"
  fi

  echo "building ($BUILD): spacefabric-controller spacefabric-node spacefabric-bench"
  local release=()
  [[ "$BUILD" == release ]] && release=(--release)
  (cd "$ROOT" && cargo build "${release[@]}" --locked -p spacefabric-controller -p spacefabric-node -p spacefabric-bench)
  "$BIN/spacefabric-controller" profile check "$profile_file" >/dev/null

  # A fresh cluster: a new state dir (the state dir is what a restarted controller resumes from).
  rm -rf "$DIR/state" "$DIR/logs" "$DIR"/node-*/
  mkdir -p "$DIR/state" "$DIR/logs"
  rm -f "$DIR"/*.pid "$DIR/forwarders"
  if [[ ! -s "$DIR/token" ]]; then
    (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/token")
  fi
  printf '%s\n' "$profile_file" > "$DIR/profile"
  printf '%s\n' "$nodes" > "$DIR/nodes"
  printf '%s\n' "$dilation" > "$DIR/time_dilation"

  local forwarder_flag=() list=""
  if [[ -n "$forwarder" ]]; then
    printf '%s\n' "$forwarders" > "$DIR/forwarders"
    for ((i = 0; i < forwarders; i++)); do
      list+="${list:+,}127.0.0.1:$((FORWARDER_PORT + i))"
    done
    # In shard order: entry I is the forwarder started with --shard I/N.
    forwarder_flag=(--forwarder "$list")
  fi
  SPACEFABRIC_JOIN_TOKEN="$(token)" nohup "$BIN/spacefabric-controller" serve \
    --listen "127.0.0.1:$CONTROLLER_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --profile "$profile_file" --state-dir "$DIR/state" --time-dilation "$dilation" "${forwarder_flag[@]}" \
    > "$DIR/logs/controller.log" 2>&1 &
  echo $! > "$DIR/controller.pid"
  wait_exec "$DIR/controller.pid" || die "the controller did not start; see $DIR/logs/controller.log:
$(tail -n 5 "$DIR/logs/controller.log")"

  # Wait for the controller's port before starting nodes (they would retry anyway).
  local t0=$SECONDS
  until tcp_busy "$CONTROLLER_PORT"; do
    pid_alive "$DIR/controller.pid" || die "the controller exited; see $DIR/logs/controller.log:
$(tail -n 5 "$DIR/logs/controller.log")"
    (( SECONDS - t0 < 30 )) || die "the controller did not open port $CONTROLLER_PORT within 30 s"
    sleep 0.2
  done
  if [[ -n "$forwarder" ]]; then
    for ((i = 0; i < forwarders; i++)); do start_forwarder "$i"; done
  fi

  local site
  for ((i = 0; i < nodes; i++)); do
    # Contiguous blocks of nodes per site, in the profile's site order (4+4 on earth-moon).
    site="${sites[$(( i * ${#sites[@]} / nodes ))]}"
    start_node "$i" "$site"
  done

  echo "waiting for $nodes nodes to register (light delay included)..."
  t0=$SECONDS
  local alive=0
  while :; do
    alive="$(status_text 2>/dev/null | awk 'NF >= 5 && $5 == "alive"' | wc -l)" || alive=0
    (( alive >= nodes )) && break
    pid_alive "$DIR/controller.pid" || die "the controller exited; see $DIR/logs/controller.log"
    for ((i = 0; i < nodes; i++)); do
      pid_alive "$DIR/node-$i.pid" || die "node-$i exited; see $DIR/logs/node-$i.log:
$(tail -n 5 "$DIR/logs/node-$i.log")"
    done
    (( SECONDS - t0 < WAIT_SECONDS )) || die "only $alive of $nodes nodes registered within $WAIT_SECONDS s; see scripts/cluster.sh logs"
    sleep 0.5
  done

  status_text
  cat <<EOF

cluster up: $nodes nodes on profile $(basename "$profile_file" .toml) (${sites[*]}), time dilation K = $dilation
  controller  $URL  (metrics http://127.0.0.1:$METRICS_PORT/metrics)
  nodes       QUIC 127.0.0.1:$NODE_PORT..$((NODE_PORT + nodes - 1))/udp, metrics http://127.0.0.1:$NODE_METRICS_PORT..$((NODE_METRICS_PORT + nodes - 1))/metrics
  forwarders  $([[ -n "$forwarder" ]] && echo "$forwarders: 127.0.0.1:$FORWARDER_PORT..$((FORWARDER_PORT + forwarders - 1))/udp (metrics http://127.0.0.1:$FORWARDER_METRICS_PORT..$((FORWARDER_METRICS_PORT + forwarders - 1))/metrics; which trunks each carries: logs forwarder/I)" || echo "none: each node applies its own copy of each trunk (results may exceed the links)")
  logs        $DIR/logs/   pids $DIR/*.pid   state $DIR/state/   join token $DIR/token
next: scripts/cluster.sh status | logs [NODE] | bench allreduce ... | down
EOF
}

status_text() {
  SPACEFABRIC_JOIN_TOKEN="$(token)" "$BIN/spacefabric-controller" status --controller "$URL"
}

cmd_status() {
  [[ -f "$DIR/token" ]] || die "no cluster here (run scripts/cluster.sh up --nodes N --profile P)"
  pid_alive "$DIR/controller.pid" || die "the controller is not running (last log: $DIR/logs/controller.log)"
  status_text
}

cmd_logs() {
  local who="controller" follow=""
  for arg in "$@"; do
    case "$arg" in
      -f|--follow) follow=1 ;;
      *) who="$arg" ;;
    esac
  done
  [[ "$who" =~ ^[0-9]+$ ]] && who="node-$who"
  [[ "$who" == forwarder* ]] && who="forwarder-$(forwarder_index "$who")"
  local file="$DIR/logs/$who.log"
  [[ -f "$file" ]] || die "no log for '$who' (have: $(ls "$DIR/logs" 2>/dev/null | sed 's/\.log$//' | tr '\n' ' '))"
  if [[ -n "$follow" ]]; then tail -n 50 -f "$file"; else tail -n 100 "$file"; fi
}

# A failure drill: SIGKILL one node (no goodbye: the controller finds out from the missing
# heartbeats and re-plans the survivors).
cmd_kill() {
  [[ $# -eq 1 ]] || die "kill: which node? (an index, node-N, or forwarder[/I])"
  local who="$1"
  [[ "$who" =~ ^[0-9]+$ ]] && who="node-$who"
  # A forwarder outage: the trunks that forwarder carries go down (the others keep running).
  [[ "$who" == forwarder* ]] && who="forwarder-$(forwarder_index "$who")"
  local file="$DIR/$who.pid"
  pid_alive "$file" || die "kill: $who is not running (no live pid in $file)"
  kill -KILL "$(cat "$file")"
  rm -f "$file"
  echo "killed $who (SIGKILL); its log stays in $DIR/logs/$who.log"
}

# One more node (a replacement, or growth) on SITE, with the next free index.
cmd_add() {
  local site=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --site) site="${2:-}"; shift 2 ;;
      --forwarder|--forwarder/*) site="${1#--}"; shift ;;
      *) die "add: unknown argument '$1' (use --site S, or --forwarder[/I])" ;;
    esac
  done
  [[ -n "$site" ]] || die "add: --site S is required"
  pid_alive "$DIR/controller.pid" || die "no running cluster (scripts/cluster.sh up first)"
  if [[ "$site" == forwarder* ]]; then
    local i
    i="$(forwarder_index "$site")"
    pid_alive "$DIR/forwarder-$i.pid" && die "add: forwarder/$i is already running"
    start_forwarder "$i"
    echo "started forwarder/$i (127.0.0.1:$((FORWARDER_PORT + i))/udp, log $DIR/logs/forwarder-$i.log)"
    return 0
  fi
  grep -q "^\[sites\.$site\]" "$(cat "$DIR/profile")" \
    || die "add: site '$site' is not in $(cat "$DIR/profile")"
  local i=0
  while [[ -e "$DIR/logs/node-$i.log" ]]; do i=$((i + 1)); done
  udp_busy $((NODE_PORT + i)) && die "add: port $((NODE_PORT + i))/udp is in use"
  tcp_busy $((NODE_METRICS_PORT + i)) && die "add: port $((NODE_METRICS_PORT + i))/tcp is in use"
  start_node "$i" "$site"
  echo "started node-$i on $site (QUIC 127.0.0.1:$((NODE_PORT + i)), log $DIR/logs/node-$i.log)"
}

cmd_ping() {
  pid_alive "$DIR/controller.pid" || die "no running cluster (scripts/cluster.sh up first)"
  SPACEFABRIC_JOIN_TOKEN="$(token)" "$BIN/spacefabric-controller" ping --controller "$URL" "$@"
}

cmd_bench() {
  pid_alive "$DIR/controller.pid" || die "no running cluster (scripts/cluster.sh up first)"
  # Flags first (`bench --algo ring ...`): the all-reduce sweep. The job waits for every node
  # the cluster was started with (--min-nodes; give it to override).
  if [[ $# -eq 0 || "$1" == -* ]]; then
    set -- allreduce "$@"
  fi
  SPACEFABRIC_JOIN_TOKEN="$(token)" SPACEFABRIC_CONTROLLER="$URL" \
    SPACEFABRIC_MIN_NODES="${SPACEFABRIC_MIN_NODES:-$(cat "$DIR/nodes" 2>/dev/null || echo 0)}" \
    "$BIN/spacefabric-bench" "$@" --controller "$URL" --join-token "$(token)"
}

# stop FILE NAME: TERM the process in FILE (if it is ours), wait up to 10 s, then KILL.
stop() {
  local file="$1" name="$2" pid
  if ! pid_alive "$file"; then
    rm -f "$file"
    return 0
  fi
  pid="$(cat "$file")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  $name (pid $pid) did not stop on TERM: KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "  stopped $name (pid $pid)"
  rm -f "$file"
}

cmd_down() {
  shopt -s nullglob
  local files=("$DIR"/node-*.pid)
  if [[ ${#files[@]} -eq 0 && ! -f "$DIR/controller.pid" ]]; then
    echo "no cluster running (no pid files in $DIR)"
    return 0
  fi
  echo "stopping the cluster started from $DIR"
  # Nodes first, in parallel: they deregister (a light round trip from the Moon) and leave.
  for f in "${files[@]}"; do
    stop "$f" "$(basename "$f" .pid)" &
  done
  wait
  # forwarder.pid: a cluster started before there could be several forwarders.
  for f in "$DIR"/forwarder-*.pid "$DIR"/forwarder.pid; do
    stop "$f" "$(basename "$f" .pid)"
  done
  stop "$DIR/controller.pid" controller
  echo "logs and state kept in $DIR (remove the directory to start afresh)"
}

[[ $# -ge 1 ]] || usage
command="$1"
shift
case "$command" in
  up) cmd_up "$@" ;;
  status) cmd_status ;;
  logs) cmd_logs "$@" ;;
  bench) cmd_bench "$@" ;;
  ping) cmd_ping "$@" ;;
  kill) cmd_kill "$@" ;;
  add) cmd_add "$@" ;;
  down) cmd_down ;;
  -h|--help|help) usage 0 ;;
  *) die "unknown command '$command' (up, status, logs, bench, ping, kill, add, down)" ;;
esac
