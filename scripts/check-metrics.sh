#!/usr/bin/env bash
# Reads the controller's, a node's and the forwarder's /metrics with the Prometheus project's
# Python parser (prometheus_client), requires HELP and TYPE on every family it finds, and lints
# every family by the rules of `promtool check metrics` (promlint's, written out in
# check_metrics.py, so the check needs no Go toolchain) and, where the real promtool is at hand
# (on PATH or SPACEFABRIC_PROMTOOL=/path/to/promtool), pipes every endpoint through
# `promtool check metrics` too. Needs the debug binaries (`cargo build`), python3 and, once,
# PyPI (prometheus-client is installed into target/metrics-check-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PC_VERSION=0.26.0
venv=target/metrics-check-venv
if [ ! -x "$venv/bin/python" ] || [ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('prometheus-client'))" 2>/dev/null)" != "$PC_VERSION" ]; then
  echo "== installing prometheus-client $PC_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==$PC_VERSION"
fi
for bin in spacefabric-controller spacefabric-node; do
  if [ ! -x "target/debug/$bin" ]; then
    echo "error: target/debug/$bin is missing; run \`cargo build\` first" >&2
    exit 1
  fi
done
"$venv/bin/python" scripts/check_metrics.py
