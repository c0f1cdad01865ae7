#!/usr/bin/env python3
"""Check `quarryctl plan` against a measured run it was not fitted on.

Usage: validate.py QUARRYCTL COSTS SEARCH.jsonl[,SEARCH2.jsonl...] BUILD.json INDEX_DIR N DIM
       --recalls 0.9,0.95 --cores 2 --ram-gb 24 --build-ram-gb 6 [--family F] [--growth end|all]

For each recall target: the plan's prediction (fitted on COSTS) beside the
measured run interpolated to that recall (linearly between the two L
values around it, the median of the search files), and the error. Prints
a markdown table.
"""
import argparse
import json
import os
import statistics
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("quarryctl")
ap.add_argument("costs")
ap.add_argument("searches")
ap.add_argument("build")
ap.add_argument("index")
ap.add_argument("n", type=int)
ap.add_argument("dim", type=int)
ap.add_argument("--recalls", default="0.9,0.95")
ap.add_argument("--cores", default="2")
ap.add_argument("--ram-gb", default="24")
ap.add_argument("--build-ram-gb", default="6")
ap.add_argument("--family")
ap.add_argument("--growth", default="end", help="end or all (quarryctl plan --growth)")
a = ap.parse_args()

runs = []
for f in a.searches.split(","):
    runs.append([json.loads(l) for l in open(f) if l.strip()])
build = json.load(open(a.build))


def measured_at(recall):
    """Median over the search files of each figure interpolated to recall."""
    per = []
    for rows in runs:
        rows = sorted(rows, key=lambda r: r["L"])
        for lo, hi in zip(rows, rows[1:]):
            if lo["recall_at_k"] < recall <= hi["recall_at_k"]:
                t = (recall - lo["recall_at_k"]) / (hi["recall_at_k"] - lo["recall_at_k"])
                mix = lambda k: lo[k] + t * (hi[k] - lo[k])
                per.append({k: mix(k) for k in ("L", "mean_ios", "mean_hops", "qps", "lat_p50_us", "lat_p99_us")})
                break
    if not per:
        return None
    return {k: statistics.median(p[k] for p in per) for k in per[0]}


ram = runs[0][0]["ram_pq_codes_bytes"] + runs[0][0]["ram_nav_bytes"]
ssd = sum(os.path.getsize(os.path.join(a.index, f)) for f in os.listdir(a.index))
print("| recall@10 | figure | plan | measured | error |")
print("| ---: | --- | ---: | ---: | ---: |")
for r in a.recalls.split(","):
    cmd = [a.quarryctl, "plan", "--costs", a.costs, "--vectors", str(a.n), "--dim", str(a.dim),
           "--recall", r, "--cores", a.cores, "--ram-gb", a.ram_gb, "--build-ram-gb", a.build_ram_gb,
           "--cache-share", "0", "--growth", a.growth, "--json"]
    if a.family:
        cmd += ["--family", a.family]
    p = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    m = measured_at(float(r))
    if m is None:
        print(f"| {r} | (not reached by the measured run) | | | |")
        continue
    rows = [
        ("search L", p["search_l"], m["L"]),
        ("IOs/query", p["ios_per_query"], m["mean_ios"]),
        ("hops/query", p["hops_per_query"], m["mean_hops"]),
        ("QPS (2 threads)", p["qps_node"], m["qps"]),
        ("p50 ms", p["p50_ms"], m["lat_p50_us"] / 1000),
        ("p99 ms", p["p99_ms"], m["lat_p99_us"] / 1000),
        ("RAM PQ + navigation, MiB", (p["ram_pq_bytes"] + p["ram_nav_bytes"]) / 2**20, ram / 2**20),
        ("SSD, GiB", p["ssd_bytes"] / 2**30, ssd / 2**30),
        ("build, h", p["build_hours"], build["build_seconds"] / 3600),
        ("build peak RSS (planned phase peak), GiB", p["build_ram_bytes"] / 2**30, build["peak_rss_bytes"] / 2**30),
    ]
    for name, pv, mv in rows:
        err = (pv - mv) / mv * 100 if mv else float("nan")
        print(f"| {r} | {name} | {pv:,.3f} | {mv:,.3f} | {err:+.1f} % |")
