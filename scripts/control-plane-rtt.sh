#!/usr/bin/env bash
# The control plane's own round trip on the lan profile (issue 18: a 44 ms Nagle stall): a
# controller (`serve --profile lan`), two `spacefabric-node` agents, then a `ping` job of N
# heartbeat round trips per node; prints the job's table (RTT p50 and max per node).
#
#   scripts/control-plane-rtt.sh [ITERATIONS]      (default 50)
#
# Binaries from $SPACEFABRIC_BIN_DIR (default target/debug; build them first with
# `cargo build -p spacefabric-controller -p spacefabric-node`). Free loopback ports are picked;
# everything started is stopped at the end (by pid), logs stay in a temporary directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${SPACEFABRIC_BIN_DIR:-$ROOT/target/debug}"
ITERATIONS="${1:-50}"
[[ "$ITERATIONS" =~ ^[0-9]+$ ]] && ((ITERATIONS >= 1 && ITERATIONS <= 10000)) \
  || { echo "control-plane-rtt.sh: ITERATIONS must be 1..10000, got '$ITERATIONS'" >&2; exit 2; }
for b in spacefabric-controller spacefabric-node; do
  [[ -x "$BIN/$b" ]] || { echo "control-plane-rtt.sh: $BIN/$b missing (build it first)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
TMP="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

TOKEN="rtt-$RANDOM$RANDOM"
PORT="$(free_port SOCK_STREAM)"
URL="http://127.0.0.1:$PORT"
"$BIN/spacefabric-controller" serve --listen "127.0.0.1:$PORT" \
  --metrics-listen "127.0.0.1:$(free_port SOCK_STREAM)" \
  --profile "$ROOT/netem-profiles/profiles/lan.toml" --join-token "$TOKEN" \
  >"$TMP/controller.log" 2>&1 &
PIDS+=($!)
for i in 0 1; do
  Q="127.0.0.1:$(free_port SOCK_DGRAM)"
  "$BIN/spacefabric-node" --controller "$URL" --join-token "$TOKEN" --name "rtt-$i" \
    --listen "$Q" --advertise "$Q" --metrics-listen "127.0.0.1:$(free_port SOCK_STREAM)" \
    >"$TMP/node-$i.log" 2>&1 &
  PIDS+=($!)
done
for ((i = 0; i < 600; i++)); do
  alive="$("$BIN/spacefabric-controller" status --controller "$URL" --join-token "$TOKEN" 2>/dev/null | grep -c ' alive ' || true)"
  [[ "$alive" == 2 ]] && break
  sleep 0.1
done
[[ "${alive:-0}" == 2 ]] || { echo "control-plane-rtt.sh: nodes did not register; logs in $TMP" >&2; exit 1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)   binaries: $BIN   logs: $TMP"
"$BIN/spacefabric-controller" ping --controller "$URL" --join-token "$TOKEN" --iterations "$ITERATIONS"
