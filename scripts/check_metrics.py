"""Reads every /metrics endpoint of a running local cluster with the Prometheus project's own
Python parser (prometheus_client), as a second opinion next to the Rust HELP/TYPE check.

Starts the built spacefabric-controller (lan profile), one spacefabric-node and a forwarder
(earth-moon profile) on 127.0.0.1, waits (bounded) until each serves /metrics, then checks
that the parser reads every endpoint and that every family it finds has HELP and TYPE lines.
Exits non-zero, naming the endpoint and the family, on any failure. Run by
scripts/check-metrics.sh.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug")
WAIT_S = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def check(name, text):
    helps = {l.split()[2] for l in text.splitlines() if l.startswith("# HELP ")}
    types = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
    families = list(text_string_to_metric_families(text))
    problems = []
    for f in families:
        # The parser drops a counter's _total suffix from the family name.
        names = {f.name, f.name + "_total"}
        if not names & helps:
            problems.append(f"{name}: family {f.name} has no HELP line")
        if not names & types:
            problems.append(f"{name}: family {f.name} has no TYPE line")
    if not families:
        problems.append(f"{name}: no metric families")
    samples = sum(len(f.samples) for f in families)
    print(f"{name}: {len(families)} families, {samples} samples, every family with HELP and TYPE"
          if not problems else f"{name}: {len(problems)} problems")
    return problems


def main():
    ports = {k: free_port() for k in ("grpc", "controller", "node", "node_fabric", "forwarder", "fwd")}
    profiles = os.path.join(ROOT, "netem-profiles", "profiles")
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(tmp, "cluster.log"), "w")
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"}
        try:
            procs.append(subprocess.Popen([
                os.path.join(BIN, "spacefabric-controller"), "serve",
                "--listen", f"127.0.0.1:{ports['grpc']}",
                "--metrics-listen", f"127.0.0.1:{ports['controller']}",
                "--profile", os.path.join(profiles, "lan.toml"),
                "--state-dir", os.path.join(tmp, "state"), "--join-token", "metrics-check",
            ], stdout=log, stderr=log, env=env))
            procs.append(subprocess.Popen([
                os.path.join(BIN, "spacefabric-node"),
                "--controller", f"http://127.0.0.1:{ports['grpc']}", "--join-token", "metrics-check",
                "--node-name", "metrics-check-0", "--listen", f"127.0.0.1:{ports['node_fabric']}",
                "--metrics-listen", f"127.0.0.1:{ports['node']}",
            ], stdout=log, stderr=log, env=env))
            procs.append(subprocess.Popen([
                os.path.join(BIN, "spacefabric-node"), "forwarder",
                "--profile", os.path.join(profiles, "earth-moon.toml"),
                "--listen", f"127.0.0.1:{ports['fwd']}",
                "--metrics-listen", f"127.0.0.1:{ports['forwarder']}",
            ], stdout=log, stderr=log, env=env))
            problems = []
            for name in ("controller", "node", "forwarder"):
                problems += check(name, scrape(ports[name]))
        finally:
            for p in procs:
                p.kill()
                p.wait()
            log.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)
            with open(os.path.join(tmp, "cluster.log")) as f:
                print(f.read()[-4000:], file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
