import json, sys, glob, os, statistics
d = sys.argv[1]
names = sys.argv[2].split(",")
rows = {}
for name in names:
    for f in sorted(glob.glob(f"{d}/search-{name}-*.jsonl")):
        for l in open(f):
            j = json.loads(l)
            rows.setdefault((name, j["L"]), []).append(j)
print("| build | L | recall@10 | IOs/q (engine) | IOs/q (/proc) | mean µs | p50 µs | p99 µs | QPS (2 thr) | hops |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (name, L), js in sorted(rows.items(), key=lambda x: (names.index(x[0][0]), x[0][1])):
    med = lambda k: statistics.median(j[k] for j in js)
    print(f"| {name} | {L} | {med('recall_at_k'):.4f} | {med('mean_ios'):.2f} | {med('proc_ios_per_query'):.2f} | {med('lat_mean_us'):,.0f} | {med('lat_p50_us'):,.0f} | {med('lat_p99_us'):,.0f} | {med('qps'):,.0f} | {med('mean_hops'):.1f} |")
print()
print("| build | seconds | peak RSS MiB | estimate MiB | shards | shard sizes | scratch MiB | mean degree | repaired / unreachable |")
print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
for name in names:
    p = f"{d}/{name}.json"
    if not os.path.exists(p):
        continue
    j = json.load(open(p))
    part = j.get("partition") or {}
    print(f"| {name} | {j['build_seconds']:.1f} | {j['peak_rss_bytes']/2**20:,.0f} | {j['estimated_bytes']/2**20:,.0f} | {part.get('shards','-')} | {part.get('shard_sizes','-')} | {part.get('scratch_bytes',0)/2**20:,.0f} | {j['mean_degree']:.1f} | {part.get('repaired_links','-')} / {part.get('unreachable','-')} |")
