#!/usr/bin/env python3
"""Prints the latest criterion results under target/criterion as a markdown
table: benchmark, median time per iteration, and median throughput.

Usage: python3 scripts/bench-table.py [FILTER ...]   (substring filters on the benchmark id)
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
filters = sys.argv[1:]
rows = []
for bench in sorted(root.glob("**/new/benchmark.json")):
    meta = json.loads(bench.read_text())
    full_id = meta["full_id"]
    if filters and not any(f in full_id for f in filters):
        continue
    est = json.loads((bench.parent / "estimates.json").read_text())
    ns = est["median"]["point_estimate"]
    thr = meta.get("throughput") or {}
    elements = thr.get("Elements") or thr.get("Bytes")
    rate = ""
    if elements:
        per_s = elements / (ns / 1e9)
        rate = f"{per_s / 1e9:.2f} G/s" if per_s >= 1e9 else f"{per_s / 1e6:.1f} M/s"
    t = f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.2f} µs"
    rows.append((full_id, t, rate))
print("| benchmark | median time | median throughput (values/s) |")
print("|---|---|---|")
for r in rows:
    print(f"| `{r[0]}` | {r[1]} | {r[2]} |")
