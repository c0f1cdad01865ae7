#!/usr/bin/env python3
"""Join quarryctl search rows with their build report, index and device
figures into the JSON lines `quarryctl plan` reads (tools/costs/)."""
import argparse
import json
import os
import re
import struct

ap = argparse.ArgumentParser()
for a in ("--family", "--disk", "--build", "--index", "--fio", "--meta", "--search", "--base"):
    ap.add_argument(a, required=True)
for a in ("--n", "--R", "--build-l", "--pq-bytes"):
    ap.add_argument(a, type=int, required=True)
a = ap.parse_args()

build = json.load(open(a.build))
fio = json.load(open(a.fio))
iops = fio["jobs"][0]["read"]["iops"]
lid = None
if os.path.exists(a.meta):
    m = json.load(open(a.meta))
    lid = m["lid"]["mean"] if isinstance(m.get("lid"), dict) else m.get("lid")
index_bytes = sum(os.path.getsize(os.path.join(a.index, f)) for f in os.listdir(a.index))
time_file = os.path.join(os.path.dirname(a.build), "build.time")
peak = build.get("peak_rss_bytes", 0)
if os.path.exists(time_file):
    t = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(time_file).read())
    if t:
        peak = max(peak, int(t.group(1)) * 1024)
with open(a.base, "rb") as f:
    dim = struct.unpack("<II", f.read(8))[1]
for line in open(a.search):
    row = json.loads(line)
    stored = {"f32": 4, "f16": 2, "i8": 1}[a.disk]
    vec = dim * stored + (4 if a.disk == "i8" else 0)
    node = (vec + 3) // 4 * 4 + 4 + 4 * a.R
    row.update(family=a.family, n=a.n, dim=dim, R=a.R, build_l=a.build_l, pq_bytes=a.pq_bytes,
               disk_vector=a.disk, node_size=node, lid=lid, index_bytes=index_bytes,
               build_s=build.get("build_seconds") or build["build_wall_s"],
               build_threads=build.get("threads") or build.get("params", {}).get("threads", 2),
               build_peak_rss=peak, device_iops=iops)
    print(json.dumps(row))
