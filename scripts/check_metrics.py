"""Reads every /metrics endpoint of a running local cluster with the Prometheus project's own
Python parser (prometheus_client), as a second opinion next to the Rust HELP/TYPE check.

Starts the built spacefabric-controller (lan profile), one spacefabric-node and a forwarder
(earth-moon profile) on 127.0.0.1, waits (bounded) until each serves /metrics, then checks
that the parser reads every endpoint and that every family it finds has HELP and TYPE lines.
Then lints every family by the rules `promtool check metrics` applies (the Prometheus project's
promlint, client_golang prometheus/testutil/promlint: help text, base units, counter and
gauge suffixes, histogram/summary reserved names and labels, type in the name, reserved
characters, camelCase, abbreviated units, duplicate series), written out here so that the
check needs no Go toolchain; its messages are promlint's own. `--self-test` runs the
linter on a sample that breaks every rule and checks each is reported. Exits non-zero, naming
the endpoint, the family and the rule, on any failure. Run by scripts/check-metrics.sh.

Where the real `promtool` is at hand (on PATH, or named by SPACEFABRIC_PROMTOOL), every
endpoint is also piped through `promtool check metrics` and must pass it (exit 0, no
problem printed); without it that step says it was skipped.
"""

import os
import re
import shutil
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


def free_ports(names):
    """One distinct free port per name: every socket stays bound until all are chosen, so two
    names cannot get the same port (which would make one process fail to bind)."""
    socks = []
    try:
        for _ in names:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return {n: s.getsockname()[1] for n, s in zip(names, socks)}
    finally:
        for s in socks:
            s.close()


class ScrapeError(Exception):
    """An endpoint that never served /metrics: which one, and why."""


def scrape(name, port, proc):
    """`proc`'s /metrics on `port`, waiting (bounded) for it to serve; fails at once if the
    process has exited."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            code = proc.poll()
            if code is not None:
                raise ScrapeError(f"{name}: exited with status {code} before serving /metrics on port {port}") from e
            if time.monotonic() > deadline:
                raise ScrapeError(f"{name}: no /metrics on port {port} after {WAIT_S} s: {e}") from e
            time.sleep(0.2)


def promtool_binary():
    """The real promtool, if one is at hand: SPACEFABRIC_PROMTOOL, else `promtool` on PATH."""
    named = os.environ.get("SPACEFABRIC_PROMTOOL")
    if named:
        if not os.access(named, os.X_OK):
            raise SystemExit(f"SPACEFABRIC_PROMTOOL={named!r}: not an executable file")
        return named
    return shutil.which("promtool")


def promtool_check(promtool, name, text):
    """`promtool check metrics` on one endpoint's text: its problems, or none."""
    run = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60)
    out = (run.stdout + run.stderr).decode(errors="replace").strip()
    if run.returncode != 0 or out:
        return [f"{name}: promtool check metrics (exit {run.returncode}): {out}"]
    return []


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


# promlint's rules, as `promtool check metrics` reports them.
BASE_UNITS = {
    "amperes": "amperes", "bytes": "bytes", "celsius": "celsius", "grams": "grams",
    "joules": "joules", "kelvin": "kelvin", "meters": "meters", "metres": "metres",
    "seconds": "seconds", "volts": "volts",
    "minutes": "seconds", "hours": "seconds", "days": "seconds", "weeks": "seconds",
    "kelvins": "kelvin", "fahrenheit": "celsius", "rankine": "celsius",
    "inches": "meters", "yards": "meters", "miles": "meters", "bits": "bytes",
    "calories": "joules", "pounds": "grams", "ounces": "grams",
}
UNIT_PREFIXES = ["pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo",
                 "kibi", "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi"]
UNIT_ABBREVIATIONS = ["s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m",
                      "h", "d"]
TYPE_NAMES = ["counter", "gauge", "summary", "histogram", "gauge_histogram"]
CAMEL = re.compile(r"[a-z][A-Z]")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"')


def metric_unit(name):
    for part in name.split("_"):
        if part in BASE_UNITS:
            return part, BASE_UNITS[part]
        for prefix in UNIT_PREFIXES:
            if part.startswith(prefix) and part[len(prefix):] in BASE_UNITS:
                return part, BASE_UNITS[part[len(prefix):]]
    return None


def families_of(text):
    """Family name -> (type, help text or None, [label names of each sample], [series]) from
    the exposition text, grouped the way promtool groups it (by TYPE/HELP name; a sample
    belongs to the family whose name it extends with _bucket/_sum/_count/_total/... )."""
    fams = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            fams.setdefault(parts[2], ["untyped", None, [], []])[1] = parts[3] if len(parts) > 3 else ""
        elif line.startswith("# TYPE "):
            parts = line.split()
            fams.setdefault(parts[2], ["untyped", None, [], []])[0] = parts[3]
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if not m:
                continue
            sample, labels = m.group(1), m.group(2) or ""
            owner = sample
            for suffix in ("_bucket", "_sum", "_count", "_created", "_total", ""):
                base = sample[: len(sample) - len(suffix)] if suffix else sample
                if sample.endswith(suffix) and base in fams:
                    owner = base
                    break
            fam = fams.setdefault(owner, ["untyped", None, [], []])
            fam[2].append(LABEL.findall(labels))
            fam[3].append(sample + labels)
    return fams


def promlint(text):
    problems = []
    for name, (typ, help_text, label_sets, series) in sorted(families_of(text).items()):
        def problem(why):
            problems.append(f"{name}: {why}")
        labels = {l for ls in label_sets for l in ls}
        if not help_text:
            problem("no help text")
        unit = metric_unit(name)
        if unit and unit[0] != unit[1]:
            problem(f'use base unit "{unit[1]}" instead of "{unit[0]}"')
        total = name.endswith("_total")
        if typ == "counter" and not total:
            problem('counter metrics should have "_total" suffix')
        elif typ not in ("counter", "untyped") and total:
            problem('non-counter metrics should not have "_total" suffix')
        if typ not in ("gauge", "untyped") and name.endswith("_timestamp_seconds"):
            problem('non-gauge metrics should not have "_timestamp_seconds" suffix')
        if typ != "untyped":
            if typ != "histogram" and name.endswith("_bucket"):
                problem('non-histogram metrics should not have "_bucket" suffix')
            for suffix in ("_count", "_sum"):
                if typ not in ("histogram", "summary") and name.endswith(suffix):
                    problem(f'non-histogram and non-summary metrics should not have "{suffix}" suffix')
            if typ != "histogram" and "le" in labels:
                problem('non-histogram metrics should not have "le" label')
            if typ != "summary" and "quantile" in labels:
                problem('non-summary metrics should not have "quantile" label')
        lower = name.lower()
        for t in TYPE_NAMES:
            if f"_{t}_" in lower or lower.endswith(f"_{t}"):
                problem(f"metric name should not include type '{t}'")
        if ":" in name:
            problem("metric names should not contain ':'")
        if CAMEL.search(name):
            problem("metric names should be written in 'snake_case' not 'camelCase'")
        if any(CAMEL.search(l) for l in labels):
            problem("label names should be written in 'snake_case' not 'camelCase'")
        if any(f"_{a}_" in lower or lower.endswith(f"_{a}") for a in UNIT_ABBREVIATIONS):
            problem("metric names should not contain abbreviated units")
        seen = set()
        for s in series:
            if s in seen:
                problem(f"metric not unique: {s}")
            seen.add(s)
    return problems


BAD_SAMPLE = """# TYPE bad_requests counter
bad_requests 1
# HELP delay_milliseconds d
# TYPE delay_milliseconds gauge
delay_milliseconds 1
# HELP queue_total q
# TYPE queue_total gauge
queue_total 1
# HELP latency_gauge l
# TYPE latency_gauge gauge
latency_gauge{le="1"} 1
# HELP rec:rate r
# TYPE rec:rate gauge
rec:rate 1
# HELP sentBytes s
# TYPE sentBytes gauge
sentBytes{peerRank="1"} 1
sentBytes{peerRank="1"} 2
# HELP wait_ms w
# TYPE wait_ms gauge
wait_ms 1
"""


def self_test():
    found = "\n".join(promlint(BAD_SAMPLE))
    wanted = ["no help text", 'should have "_total" suffix', 'use base unit "seconds"',
              'should not have "_total" suffix', "should not include type 'gauge'",
              'should not have "le" label', "should not contain ':'",
              "metric names should be written in 'snake_case'",
              "label names should be written in 'snake_case'", "abbreviated units",
              "metric not unique"]
    missing = [w for w in wanted if w not in found]
    good = "# HELP ok_bytes_total b\n# TYPE ok_bytes_total counter\nok_bytes_total{peer=\"1\"} 3\n"
    clean = promlint(good)
    if missing or clean:
        print(f"promlint self-test FAILED: missing {missing}, false alarms {clean}", file=sys.stderr)
        return 1
    print(f"promlint self-test: {len(wanted)} rules caught on the bad sample, none on the good one")
    return 0


def main():
    ports = free_ports(("grpc", "controller", "node", "node_fabric", "forwarder", "fwd"))
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
            promtool = promtool_binary()
            for name, proc in zip(("controller", "node", "forwarder"), procs):
                try:
                    text = scrape(name, ports[name], proc)
                except ScrapeError as e:
                    problems.append(str(e))
                    continue
                problems += check(name, text)
                lint = promlint(text)
                problems += [f"{name}: promlint: {p}" for p in lint]
                if not lint:
                    print(f"{name}: promlint (promtool check metrics' rules) clean")
                if promtool:
                    found = promtool_check(promtool, name, text)
                    problems += found
                    if not found:
                        print(f"{name}: `{promtool} check metrics` clean")
            if not promtool:
                print("promtool not on PATH (nor SPACEFABRIC_PROMTOOL): its own check skipped")
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
    if "--self-test" in sys.argv[1:]:
        sys.exit(self_test())
    sys.exit(self_test() or main())
