#!/usr/bin/env python3
"""Loads every HDR histogram log (*.hlog) that `spacefabric-bench allreduce --hdr-dir DIR`
wrote with HdrHistogram's own Python reader (`pip install hdrhistogram`) and checks its
p50/p99 against the run's JSON (`--json FILE`), which the table's times come from.

    python3 scripts/check-hdr-logs.py DIR FILE.json

Prints one line per (file, tag); exits 1 if a log does not load or a percentile differs
by more than HdrHistogram's 3 significant digits (0.1 %), 0 otherwise.
"""
import json
import pathlib
import re
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    logs = sorted(pathlib.Path(sys.argv[1]).glob("*.hlog"))
    sweep = json.loads(pathlib.Path(sys.argv[2]).read_text())
    results = {(r["algorithm"], r["size_bytes"]): r for r in sweep["results"]}
    if not logs:
        print(f"no *.hlog in {sys.argv[1]}", file=sys.stderr)
        return 1
    bad = 0
    for path in logs:
        m = re.match(r"allreduce-.*-([a-z]+)-(\d+)B\.hlog$", path.name)
        if not m:
            print(f"{path}: not an all-reduce log name", file=sys.stderr)
            bad += 1
            continue
        result = results.get((m.group(1), int(m.group(2))))
        reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
        seen = 0
        while True:
            h = reader.get_next_interval_histogram()
            if h is None:
                break
            seen += 1
            tag = h.get_tag()
            placement = "in_place" if tag == "in-place" else "out_of_place"
            line = f"{path.name} {tag}: n={h.get_total_count()}"
            for q in (50, 99):
                got = h.get_value_at_percentile(q)
                line += f" p{q}={got}us"
                if result is not None:
                    want = result[placement][f"p{q}_us"]
                    line += f" (json {want:.0f}us)"
                    if abs(got - want) > max(1.0, 1e-3 * want):
                        line += " MISMATCH"
                        bad += 1
            print(line)
        if seen == 0:
            print(f"{path}: no interval histogram could be read", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
