"""Side-by-side benchmark driver: Quarry vs diskannpy, hnswlib and faiss.

Run through run.sh (which prepares the virtualenv and fio); see
benches/README.md. Everything heavy runs in child processes:

* builds: one child per system (`worker.py build`, or `quarryctl build`),
  wall time and that child's peak RSS (wait4 rusage) go to build.json in the
  build's cache directory, ~/.cache/quarry-bench/<system>/<dataset>-<params>/;
  a later run with the same data and parameters reuses the build.
* searches: one child per system (`worker.py search`, or `quarryctl search`).
  IOs per query come from /proc/<pid>/io read_bytes / 4096 of the searching
  process, around the search phase, for every system alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from common import (  # noqa: E402
    CACHE_ROOT,
    PAGE,
    CommandLog,
    ProcPoller,
    build_dir,
    dataset_key,
    dir_size,
    log,
    proc_read_bytes,
    read_bin_header,
    read_fbin,
    read_ibin,
    rss_bytes,
    run_measured,
    write_fbin,
    write_ibin,
)

REPO = HERE.parent.parent
CMDS = CommandLog()
ALL_SYSTEMS = ["quarry", "quarry-nonav", "quarry-budget", "diskannpy", "hnswlib", "faiss"]


def ints(s: str) -> list[int]:
    return [int(x) for x in str(s).split(",") if x.strip()]


# ============================================================ data set


def prepare_queries(args, ds: dict) -> tuple[Path, Path, int]:
    """The query and ground-truth files every system uses: the originals, or
    the first --max-queries rows written once to the cache."""
    q, g = Path(args.data) / "queries.fbin", Path(args.data) / "gt.ibin"
    nq, _ = read_bin_header(q)
    ng, kg = read_bin_header(g)
    if ng < nq:
        raise SystemExit(f"gt.ibin has {ng} rows for {nq} queries")
    if kg < args.k:
        raise SystemExit(f"gt.ibin has k={kg} < --k {args.k}")
    if args.max_queries and args.max_queries < nq:
        d = CACHE_ROOT / "queries" / f"{ds['tag']}-q{args.max_queries}"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "gt.ibin").exists():
            write_fbin(d / "queries.fbin", read_fbin(q, max_rows=args.max_queries))
            write_ibin(d / "gt.ibin", read_ibin(g, max_rows=args.max_queries))
        return d / "queries.fbin", d / "gt.ibin", args.max_queries
    return q, g, nq


def local_intrinsic_dim(base: Path, queries: Path, ds: dict, k: int = 20, m: int = 500) -> dict:
    """MLE local intrinsic dimension (Levina–Bickel, k=20) of up to m queries
    against the base set, by brute force; cached per data set."""
    cache = CACHE_ROOT / "lid" / f"{ds['tag']}-k{k}-m{m}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    t0 = time.perf_counter()
    q = read_fbin(queries, max_rows=m).astype(np.float32)
    x = read_fbin(base, mmap=True)
    qn = (q * q).sum(1)
    best = np.full((len(q), k), np.inf, dtype=np.float32)
    step = 65536
    for s in range(0, x.shape[0], step):
        blk = np.asarray(x[s : s + step], dtype=np.float32)
        d2 = qn[:, None] - 2.0 * (q @ blk.T) + (blk * blk).sum(1)[None, :]
        kk = min(k, d2.shape[1])
        part = np.partition(d2, kk - 1, axis=1)[:, :kk]
        best = np.partition(np.concatenate([best, part], axis=1), k - 1, axis=1)[:, :k]
    dist = np.sqrt(np.maximum(np.sort(best, axis=1), 0.0)).astype(np.float64)
    lids = []
    for row in dist:
        row = row[row > 0]
        if len(row) < 3:
            continue
        v = np.log(row[-1] / row[:-1]).mean()
        if v > 0:
            lids.append(1.0 / v)
    res = {
        "lid_mle_mean": float(np.mean(lids)),
        "lid_mle_median": float(np.median(lids)),
        "k": k,
        "queries_used": len(q),
        "seconds": time.perf_counter() - t0,
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return res


# ============================================================ fio


def run_fio(args) -> dict:
    if not shutil.which("fio"):
        log("fio not found; skipping the device measurement")
        return {}
    d = CACHE_ROOT / "fio"
    d.mkdir(parents=True, exist_ok=True)
    f = d / "randread.dat"
    res = {}
    for qd in (1, 64):
        cmd = [
            "fio",
            "--name=randread",
            f"--filename={f}",
            "--direct=1",
            "--rw=randread",
            "--bs=4k",
            "--ioengine=io_uring",
            f"--iodepth={qd}",
            "--size=2G",
            f"--runtime={args.fio_runtime}",
            "--time_based",
            "--output-format=json",
        ]
        CMDS.add(cmd)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            log("fio failed:", p.stderr[-2000:])
            continue
        # fio may print notes before the JSON object.
        j = json.loads(p.stdout[p.stdout.index("{") :])
        rd = j["jobs"][0]["read"]
        clat = rd.get("clat_ns", {})
        pct = clat.get("percentile", {})
        res[f"qd{qd}"] = {
            "iops": rd["iops"],
            "clat_mean_us": clat.get("mean", float("nan")) / 1000,
            "clat_p50_us": pct.get("50.000000", float("nan")) / 1000,
            "clat_p99_us": pct.get("99.000000", float("nan")) / 1000,
        }
        log(f"fio QD{qd}: {res[f'qd{qd}']}")
    return res


# ============================================================ builds


def build_params(system: str, args, n: int) -> tuple[str, dict]:
    if system == "quarry":
        p = {
            "R": args.R,
            "L": args.L,
            "alpha": args.alpha,
            "pq_bytes": args.pq_bytes,
            "disk_vector": args.disk_vector,
            "threads": args.build_threads,
            "build_ram_gb": args.build_ram_gb,
        }
        # "-coloc": nodes renamed so graph neighbours share sectors (builds
        # cached before co-location existed lack the suffix).
        return f"R{args.R}-L{args.L}-a{args.alpha}-pq{args.pq_bytes}-{args.disk_vector}-coloc", p
    if system == "diskannpy":
        p = {
            "R": args.R,
            "L": args.L,
            "pq_bytes": args.pq_bytes,
            "threads": args.build_threads,
            "build_ram_gb": args.build_ram_gb,
        }
        return f"R{args.R}-L{args.L}-pq{args.pq_bytes}", p
    if system == "hnswlib":
        p = {"M": args.hnsw_M, "efc": args.hnsw_efc, "threads": args.build_threads}
        return f"M{args.hnsw_M}-efc{args.hnsw_efc}", p
    if system == "faiss":
        nlist = args.faiss_nlist or max(16, int(round(4 * math.sqrt(n))))
        p = {"nlist": nlist, "pq_bytes": args.pq_bytes, "threads": args.build_threads}
        return f"nlist{nlist}-pq{args.pq_bytes}", p
    raise ValueError(system)


def derive_quarry(args, ds: dict, tag: str, bdir: Path) -> dict | None:
    """A Quarry build with the same graph parameters but another stored
    vector type or node order is cached: `quarryctl relayout` it (the graph
    does not depend on either, so only the graph file is rewritten). The
    build time reported is the cached build's plus the relayout's."""
    stem = f"R{args.R}-L{args.L}-a{args.alpha}-pq{args.pq_bytes}-"
    if stem not in bdir.name:
        return None
    # Same data set tag and graph parameters: "<data tag>-R..-L..-a..-pq..-".
    prefix = bdir.name[: bdir.name.index(stem) + len(stem)]
    for sib in sorted(bdir.parent.glob(prefix + "*")):
        src_meta = sib / "build.json"
        if sib == bdir or not src_meta.exists() or not (sib / "index" / "manifest.json").exists():
            continue
        src = json.loads(src_meta.read_text())
        index = bdir / "index"
        if index.exists():
            shutil.rmtree(index)
        bdir.mkdir(parents=True, exist_ok=True)
        log_path = bdir / "build.log"
        cmd = [
            args.quarryctl, "relayout", "--index", sib / "index", "--out", index,
            "--disk-vector", args.disk_vector,
        ]  # fmt: skip
        cmd_s = CMDS.add(cmd)
        log(f"quarry: deriving {tag} from cached {sib.name} by relayout (log: {log_path})")
        r = run_measured(cmd, log_path=log_path)
        if r["returncode"] != 0:
            log(f"quarry: relayout failed (exit {r['returncode']}); building from scratch")
            return None
        meta = dict(src)
        meta.update(
            {
                "params": {**src["params"], "disk_vector": args.disk_vector},
                "build_wall_s": src["build_wall_s"] + r["wall_s"],
                "peak_rss_bytes": max(src["peak_rss_bytes"], r["peak_rss_bytes"]),
                "derived_from": sib.name,
                "relayout_wall_s": r["wall_s"],
                "quarryctl": args.quarryctl,
                "quarryctl_mtime": Path(args.quarryctl).stat().st_mtime,
            }
        )
        meta["index_bytes"] = dir_size(index)
        meta["index_dir"] = str(index)
        meta["command"] = cmd_s
        (bdir / "build.json").write_text(json.dumps(meta, indent=2))
        meta["reused"] = True
        return meta
    return None


def ensure_build(system: str, args, ds: dict, base: Path) -> dict | None:
    """Build `system` (or reuse the cached build); return its build.json."""
    tag, params = build_params(system, args, ds["n"])
    bdir = build_dir(system, ds, tag)
    index = bdir / "index"
    meta_path = bdir / "build.json"
    if meta_path.exists() and system not in args.rebuild:
        meta = json.loads(meta_path.read_text())
        meta["reused"] = True
        log(f"{system}: reusing build {bdir} ({meta['build_wall_s']:.1f}s, peak RSS {meta['peak_rss_bytes'] / 2**30:.2f} GiB)")
        if system == "quarry":
            qm = Path(args.quarryctl).stat().st_mtime
            if qm > meta.get("quarryctl_mtime", 0):
                log("WARNING: quarryctl is newer than this cached Quarry build; pass --rebuild quarry if the format changed")
        return meta
    if system == "quarry" and system not in args.rebuild:
        meta = derive_quarry(args, ds, tag, bdir)
        if meta is not None:
            return meta
    if index.exists():
        shutil.rmtree(index)
    index.mkdir(parents=True)
    log_path = bdir / "build.log"
    extra: dict = {}
    if system == "quarry":
        cmd = [
            args.quarryctl, "build",
            "--base", base, "--index", index,
            "--metric", "l2",
            "--R", params["R"], "--L", params["L"], "--alpha", params["alpha"],
            "--pq-bytes", params["pq_bytes"], "--disk-vector", params["disk_vector"],
            "--threads", params["threads"], "--build-ram-gb", params["build_ram_gb"],
        ]  # fmt: skip
        extra["quarryctl"] = args.quarryctl
        extra["quarryctl_mtime"] = Path(args.quarryctl).stat().st_mtime
    else:
        extra_path = bdir / "build_extra.json"
        cmd = [
            sys.executable, HERE / "worker.py", "build",
            "--system", system, "--base", base, "--index", index,
            "--params", json.dumps(params), "--out", extra_path,
        ]  # fmt: skip
    cmd_s = CMDS.add(cmd)
    log(f"{system}: building into {index} (log: {log_path})")
    r = run_measured(cmd, log_path=log_path)
    if r["returncode"] != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        log(f"{system}: BUILD FAILED (exit {r['returncode']}); last lines of {log_path}:\n{tail}")
        return None
    if system != "quarry":
        extra.update(json.loads((bdir / "build_extra.json").read_text()))
    elif (index / "build_report.json").exists():
        extra["quarry_build_report"] = json.loads((index / "build_report.json").read_text())
    meta = {
        "system": system,
        "params": params,
        "dataset": ds,
        "build_wall_s": r["wall_s"],
        "peak_rss_bytes": r["peak_rss_bytes"],
        "user_s": r["user_s"],
        "sys_s": r["sys_s"],
        "index_bytes": dir_size(index),
        "index_dir": str(index),
        "command": cmd_s,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        **extra,
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    log(f"{system}: built in {r['wall_s']:.1f}s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB, index {meta['index_bytes'] / 2**30:.3f} GiB")
    meta["reused"] = False
    return meta


# ============================================================ searches


def search_points(system: str, args) -> list[dict]:
    if system == "diskannpy":
        Ls = sorted(set(max(L, args.k) for L in ints(args.Ls)))
        return [{"L": L, "W": w} for w in ints(args.W) for L in Ls]
    if system == "hnswlib":
        return [{"ef": ef} for ef in sorted(set(max(ef, args.k) for ef in ints(args.hnsw_ef)))]
    if system == "faiss":
        return [{"nprobe": p, "k_factor": kf} for kf in ints(args.faiss_kfactor) for p in ints(args.faiss_nprobe)]
    raise ValueError(system)


def search_python(system: str, args, meta: dict, qf: Path, gf: Path, nq: int) -> tuple[list[dict], dict]:
    pts = search_points(system, args)
    out = Path(meta["index_dir"]).parent / f"search-{os.getpid()}.jsonl"
    params = {"cache_nodes": args.cache_nodes}
    cmd = [
        sys.executable, HERE / "worker.py", "search",
        "--system", system, "--index", meta["index_dir"],
        "--queries", qf, "--gt", gf, "--k", args.k, "--threads", args.threads,
        "--params", json.dumps(params), "--points", json.dumps(pts), "--out", out,
    ]  # fmt: skip
    CMDS.add(cmd)
    slog = Path(meta["index_dir"]).parent / "search.log"
    r = run_measured(cmd, log_path=slog)
    if r["returncode"] != 0:
        log(f"{system}: SEARCH FAILED; last lines of {slog}:\n{slog.read_text(errors='replace')[-3000:]}")
        return [], {}
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    out.unlink()
    head = next(x for x in lines if x["kind"] == "meta")
    rows = []
    for x in lines:
        if x["kind"] != "point":
            continue
        x.pop("kind")
        if system == "diskannpy":
            x["point"] = f"L={x['L']} W={x['W']}"
            x["series"] = f"diskannpy W={x['W']}"
        elif system == "hnswlib":
            x["point"] = f"ef={x['ef']}"
            x["series"] = "hnswlib"
        else:
            x["point"] = f"nprobe={x['nprobe']} kf={x['k_factor']}"
            x["series"] = f"faiss kf={x['k_factor']}"
        x["ios_per_query"] = x["ios_proc_single"]
        x["rss_warm_bytes"] = head["rss_warm_bytes"]
        x["rss_index_bytes"] = head["rss_warm_bytes"] - head["rss_base_bytes"]
        rows.append(x)
    head["search_peak_rss_bytes"] = r["peak_rss_bytes"]
    return rows, head


def run_quarry_search(
    args, index: str, qf: Path, gf: Path, nq: int, W: int, no_nav: bool, warm: bool = True, extra: tuple = ()
) -> list[dict]:
    """One `quarryctl search` process for one W; its JSON lines (one per L).

    quarryctl makes two passes per L: a latency pass (1 pinned thread, one
    query in flight, around which it reads its own /proc/self/io:
    `proc_ios_per_query`, the same method as the Python workers) and a
    throughput pass on --threads threads. The driver also samples
    /proc/<pid>/io at the moment each line arrives; the difference between
    consecutive lines covers both passes of that L, so the throughput pass's
    IOs = line delta − latency-pass IOs. The first L is searched twice and
    its first line dropped, so no kept delta includes the index load or the
    node-cache warm-up. If the run fails with the duplicated L, it is retried
    without, and the first kept line is flagged `ios_proc_includes_load`."""
    Ls = ints(args.Ls)
    Ls_run = ([Ls[0]] if warm else []) + Ls
    cmd = [
        args.quarryctl, "search",
        "--index", index, "--queries", qf, "--gt", gf,
        "--k", args.k, "--L", ",".join(map(str, Ls_run)), "--W", W,
        "--threads", args.threads, "--cache-nodes", args.cache_nodes, "--json",
    ]  # fmt: skip
    if no_nav:
        cmd.append("--no-nav")
    cmd += list(extra)
    cmd += args.quarry_search_extra
    CMDS.add(cmd)
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poller = ProcPoller(p.pid)
    start_rb = proc_read_bytes(p.pid) or 0
    stderr_buf: list[str] = []
    t_err = threading.Thread(target=lambda: stderr_buf.extend(p.stderr), daemon=True)
    t_err.start()
    lines = []
    for line in p.stdout:
        rb, rss = poller.sample()  # the process is alive while its line is in flight
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        lines.append((obj, rb if rb is not None else poller.last_read_bytes, rss))
    p.wait()
    poller.stop()
    t_err.join(timeout=5)
    err = "".join(stderr_buf)
    if err.strip():
        log("quarryctl stderr:", err.strip()[-1500:])
    if p.returncode != 0:
        log(f"quarry search FAILED (exit {p.returncode})")
        if warm:
            log("retrying without the duplicated warm-up L")
            return run_quarry_search(args, index, qf, gf, nq, W, no_nav, warm=False, extra=extra)
        return []
    total_rb = (poller.last_read_bytes or 0) - start_rb
    drop_first = warm and len(lines) == len(Ls_run)
    rows = []
    prev_rb = start_rb
    for i, (obj, rb, rss) in enumerate(lines):
        delta = (rb - prev_rb) if rb is not None else None
        prev_rb = rb if rb is not None else prev_rb
        if drop_first and i == 0:
            continue
        obj["ios_proc_line"] = None if delta is None else delta / PAGE / nq
        obj["ios_proc_includes_load"] = (not drop_first) and len(rows) == 0
        obj["rss_proc_bytes"] = rss
        rows.append(obj)
    # The whole-process cross-check: last /proc sample (within 10 ms of
    # exit) over every query of every pass, load and warm-up included.
    passes = sum(1 + (o.get("qps") is not None) for o, _, _ in lines)
    for r in rows:
        r["ios_proc_whole_process"] = total_rb / PAGE / (nq * max(1, passes))
    return rows


def search_quarry(system: str, args, meta: dict, qf: Path, gf: Path, nq: int) -> tuple[list[dict], dict]:
    no_nav = system == "quarry-nonav"
    # quarry-budget: the same index with a soft per-query time budget
    # (quarryctl --budget-us): a query still waiting for reads then answers
    # from what it has scored; the share of such queries is reported.
    # Latency pass only: in the throughput pass 8 interleaved queries per
    # thread each take several times the single-query latency, so a budget
    # sized for one query in flight would cut nearly all of them.
    extra = ("--budget-us", args.quarry_budget_us, "--no-qps") if system == "quarry-budget" else ()
    rows = []
    for W in ints(args.W):
        for r in run_quarry_search(args, meta["index_dir"], qf, gf, nq, W, no_nav, extra=extra):
            row = dict(r)
            row["W"] = r.get("W", W)
            row["recall_single"] = r.get("recall_at_k")
            # /proc around the latency pass, measured by quarryctl itself the
            # way worker.py measures the others; else the driver's line delta.
            single = r.get("proc_ios_per_query")
            if single is None:
                single = r.get("ios_proc_line")
            row["ios_proc_single"] = single
            if r.get("ios_proc_line") is not None and r.get("proc_ios_per_query") is not None and r.get("qps") is not None:
                row["ios_proc_batch"] = max(0.0, r["ios_proc_line"] - r["proc_ios_per_query"])
            row["ios_per_query"] = single
            row["rss_warm_bytes"] = r.get("rss_bytes") or r.get("rss_proc_bytes")
            row["point"] = f"L={r['L']} W={row['W']}"
            if r.get("budget_us"):
                row["point"] += f" budget={r['budget_us']}µs"
            row["series"] = f"{system} W={row['W']}"
            rows.append(row)
    return rows, {}


def median_rows(runs: list[list[dict]]) -> list[dict]:
    """Merge repetitions point by point: the median of every numeric field
    (each field separately), other fields from the first run."""
    if len(runs) == 1:
        return runs[0]
    by_point: dict[str, list[dict]] = {}
    for rows in runs:
        for r in rows:
            by_point.setdefault(r["point"], []).append(r)
    out = []
    for group in by_point.values():
        m = dict(group[0])
        for k, v in group[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                xs = [g[k] for g in group if isinstance(g.get(k), (int, float))]
                m[k] = float(np.median(xs))
        m["repeats"] = len(group)
        out.append(m)
    return out


# ============================================================ report


def fmt(v, nd=1, scale=1.0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (int, float)):
        return f"{v / scale:,.{nd}f}"
    return str(v)


def qualify(r: dict, target: float) -> bool:
    rs = [x for x in (r.get("recall_at_k"), r.get("recall_single")) if x is not None]
    return bool(rs) and min(rs) >= target


def summarize(rows_by_sys: dict, target: float, fio: dict) -> dict:
    out = {}
    fio64 = fio.get("qd64", {}).get("iops")
    for s, rows in rows_by_sys.items():
        ok = [r for r in rows if qualify(r, target)]
        if not ok:
            out[s] = None
            continue
        lat = min(ok, key=lambda r: r.get("lat_mean_us") or float("inf"))
        qps = max(ok, key=lambda r: r.get("qps") or 0)
        ios = min(ok, key=lambda r: r.get("ios_per_query") if r.get("ios_per_query") is not None else float("inf"))
        iops = None
        if qps.get("qps") and qps.get("ios_proc_batch") is not None:
            iops = qps["qps"] * qps["ios_proc_batch"]
        out[s] = {
            "best_lat_point": lat["point"],
            "lat_mean_us": lat.get("lat_mean_us"),
            "lat_p50_us": lat.get("lat_p50_us"),
            "lat_p99_us": lat.get("lat_p99_us"),
            "recall_at_best_lat": lat.get("recall_at_k"),
            "best_qps_point": qps["point"],
            "qps": qps.get("qps"),
            "min_ios_point": ios["point"],
            "ios_per_query": ios.get("ios_per_query"),
            "iops_at_saturation": iops,
            "iops_over_fio_qd64": (iops / fio64) if (iops is not None and fio64) else None,
        }
    return out


def ratio(a, b):
    return (a / b) if (a is not None and b) else None


def make_plots(rows_by_sys: dict, stem: Path, title: str, threads: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for ykey, ylabel, fname, ylog in (
        ("qps", f"QPS ({threads} threads)", "qps", True),
        ("lat_mean_us", "mean latency, 1 query in flight (µs)", "latency", True),
    ):
        fig, ax = plt.subplots(figsize=(9, 6))
        for s, rows in rows_by_sys.items():
            series: dict[str, list] = {}
            for r in rows:
                if r.get(ykey) and r.get("recall_at_k") is not None:
                    series.setdefault(r["series"], []).append((r["recall_at_k"], r[ykey]))
            for name, pts in series.items():  # in sweep order
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
        ax.set_xlabel("recall@10")
        ax.set_ylabel(ylabel)
        if ylog:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
        ax.legend(fontsize=8)
        p = Path(f"{stem}-{fname}.png")
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def machine_info() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "repo_rev": rev}


def render(args, ds, lid, fio, builds, heads, rows_by_sys, summary, nq, plots) -> str:
    L = []
    add = L.append
    mi = machine_info()
    add(f"# Side-by-side: {args.name}")
    add("")
    add(f"- data: `{args.data}`: n={ds['n']:,}, d={ds['d']}, queries={nq}, k={args.k}; "
        f"LID (MLE, k=20, {lid.get('queries_used', '?')} queries): mean {fmt(lid.get('lid_mle_mean'))}, median {fmt(lid.get('lid_mle_median'))}")
    add(f"- machine: {mi['cpu']}, {mi['cores']} cores, kernel {mi['kernel']}; repo {mi['repo_rev']}")
    add(f"- budget: R={args.R}, build L={args.L}, PQ bytes={args.pq_bytes}, cache nodes={args.cache_nodes}, "
        f"Quarry disk vectors={args.disk_vector}; search threads for QPS={args.threads}; "
        f"figures are per-point medians of {args.repeat} interleaved repetition(s)")
    if fio:
        add("- fio 4 KiB random read (O_DIRECT, io_uring): " + "; ".join(
            f"QD{k[2:]}: {v['iops']:,.0f} IOPS, mean {v['clat_mean_us']:.1f} µs, p99 {v['clat_p99_us']:.1f} µs"
            for k, v in fio.items()))
    add("- IOs/query = /proc/<pid>/io read_bytes / 4096 / queries of the searching process, "
        "around the search phase (O_DIRECT reads count, page-cache hits do not).")
    add("- Latency: 1 thread, 1 query in flight (Python systems are timed around each Python call, "
        "so they include a few µs of binding overhead). QPS: one batch with the stated threads.")
    add("")
    add("## Builds")
    add("")
    add("| system | params | build s | peak build RSS GiB | index on disk GiB | RSS after warm-up MiB | RAM B/vector | reused |")
    add("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for s, m in builds.items():
        if not m:
            add(f"| {s} | build failed | | | | | | |")
            continue
        h = heads.get(s, {})
        rows = rows_by_sys.get(s) or [{}]
        rss = h.get("rss_warm_bytes") or rows[0].get("rss_warm_bytes")
        idx_rss = h.get("rss_warm_bytes", 0) - h.get("rss_base_bytes", 0) if h else None
        if s.startswith("quarry"):
            r0 = rows[0]
            parts = [v for k_, v in r0.items() if k_.startswith("ram_") and isinstance(v, (int, float))]
            idx_rss = sum(parts) if parts else rss
        bpv = (idx_rss / ds["n"]) if idx_rss else None
        params = ", ".join(f"{k_}={v}" for k_, v in m["params"].items() if k_ != "threads")
        add(f"| {s} | {params} | {fmt(m['build_wall_s'])} | {fmt(m['peak_rss_bytes'], 2, 2**30)} | "
            f"{fmt(m['index_bytes'], 3, 2**30)} | {fmt(rss, 1, 2**20)} | {fmt(bpv, 0)} | {m.get('reused')} |")
    add("")
    add("RAM B/vector: Quarry = its reported PQ + navigation + cache bytes / n (when it reports them); "
        "others = (VmRSS after warm-up − VmRSS before loading) / n.")
    for s in builds:
        rows = rows_by_sys.get(s) or []
        if s.startswith("quarry") and rows:
            split = {k_: v for k_, v in rows[0].items() if k_.startswith("ram_") and isinstance(v, (int, float))}
            if split:
                add(f"- {s} RAM split (its own report): " + ", ".join(
                    f"{k_[4:].removesuffix('_bytes')} {v / 2**20:,.1f} MiB ({v / ds['n']:,.1f} B/vector)" for k_, v in split.items()))
    add("")
    add("## Points")
    add("")
    add(f"| system | point | recall@10 | mean µs | p50 µs | p99 µs | QPS ({args.threads} thr) | IOs/q (1 thr) | IOs/q ({args.threads} thr) | self-reported IOs/q | hops | RSS MiB |")
    add("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s, rows in rows_by_sys.items():
        for r in sorted(rows, key=lambda r: (r["series"], r.get("recall_at_k") or 0)):
            add(f"| {s} | {r['point']} | {fmt(r.get('recall_at_k'), 4)} | {fmt(r.get('lat_mean_us'))} | {fmt(r.get('lat_p50_us'))} | "
                f"{fmt(r.get('lat_p99_us'))} | {fmt(r.get('qps'), 0)} | {fmt(r.get('ios_proc_single'), 2)} | "
                f"{fmt(r.get('ios_proc_batch'), 2)} | {fmt(r.get('mean_ios'), 2)} | {fmt(r.get('mean_hops'), 1)} | "
                f"{fmt(r.get('rss_bytes') or r.get('rss_warm_bytes'), 1, 2**20)} |")
    if any(r.get("ios_proc_includes_load") for rs in rows_by_sys.values() for r in rs):
        add("")
        add("Note: a Quarry row's /proc IO figure marked as including the index load (quarryctl merged the warm-up L).")
    budget_rows = rows_by_sys.get("quarry-budget") or []
    if budget_rows:
        add("")
        cuts = ", ".join(
            f"{r['point']}: {100 * (r.get('budget_cut_fraction') or 0):.1f} %"
            for r in sorted(budget_rows, key=lambda r: r["point"])
        )
        add(f"quarry-budget (latency pass only; its QPS is not measured): share of queries cut by the budget — {cuts}.")
    for s in ("quarry", "quarry-nonav", "quarry-budget"):
        xs = [r["ios_proc_whole_process"] for r in rows_by_sys.get(s) or [] if r.get("ios_proc_whole_process") is not None]
        if xs:
            add("")
            add(f"Cross-check ({s}): whole-process /proc read_bytes / 4096 / (queries × L passes) of each quarryctl run, "
                f"index load and warm-up pass included, last sample ≤ 10 ms before exit: {fmt(min(xs), 2)} – {fmt(max(xs), 2)} "
                "IOs/query across runs (an average over the whole sweep; the per-L columns above are the measurement).")
    add("")
    add(f"## Summary at recall@10 ≥ {args.target_recall}")
    add("")
    add("| system | best mean µs (point) | p50 µs | p99 µs | best QPS (point) | min IOs/q (point) | IOPS at saturation | / fio QD64 |")
    add("| --- | --- | ---: | ---: | --- | --- | ---: | ---: |")
    for s, v in summary.items():
        if not v:
            add(f"| {s} | not reached | | | | | | |")
            continue
        add(f"| {s} | {fmt(v['lat_mean_us'])} ({v['best_lat_point']}) | {fmt(v['lat_p50_us'])} | {fmt(v['lat_p99_us'])} | "
            f"{fmt(v['qps'], 0)} ({v['best_qps_point']}) | {fmt(v['ios_per_query'], 2)} ({v['min_ios_point']}) | "
            f"{fmt(v['iops_at_saturation'], 0)} | {fmt(v['iops_over_fio_qd64'], 3)} |")
    q, d = summary.get("quarry"), summary.get("diskannpy")
    if q and d:
        add("")
        add(f"- Quarry / diskannpy best mean latency: **{fmt(ratio(q['lat_mean_us'], d['lat_mean_us']), 3)}** (target ≤ 0.5)")
        add(f"- Quarry / diskannpy best QPS: **{fmt(ratio(q['qps'], d['qps']), 3)}** (target ≥ 1.5)")
        add(f"- Quarry / diskannpy min IOs per query: **{fmt(ratio(q['ios_per_query'], d['ios_per_query']), 3)}** (target ≤ 1)")
        add(f"- p99 at the best-latency point: Quarry {fmt(q['lat_p99_us'])} µs, diskannpy {fmt(d['lat_p99_us'])} µs")
        add(f"- IOPS achieved / fio QD64 at saturation: Quarry {fmt(q['iops_over_fio_qd64'], 3)}, diskannpy {fmt(d['iops_over_fio_qd64'], 3)}")
    elif summary:
        add("")
        add("- Ratios need both quarry and diskannpy to reach the target recall in this run.")
    h = summary.get("hnswlib")
    if q and h:
        add(f"- Quarry / hnswlib best QPS: {fmt(ratio(q['qps'], h['qps']), 3)}")
    add("")
    if plots:
        add("Plots: " + ", ".join(f"`{p}`" for p in plots))
        add("")
    add("## Commands run")
    add("")
    add("```")
    add(f"{' '.join(sys.argv)}")
    for c in CMDS.cmds:
        add(c)
    add("```")
    return "\n".join(L)


# ============================================================ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory with base.fbin, queries.fbin, gt.ibin")
    ap.add_argument("--name", required=True)
    ap.add_argument("--systems", default="quarry,diskannpy,hnswlib,faiss", help=f"comma list of {ALL_SYSTEMS}")
    tdir = Path(os.environ["CARGO_TARGET_DIR"]) if os.environ.get("CARGO_TARGET_DIR") else REPO / "target"
    ap.add_argument("--quarryctl", default=str(tdir / "release" / "quarryctl"), help="default: $CARGO_TARGET_DIR or target/, release/quarryctl")
    ap.add_argument("--quarry-budget-us", type=int, default=1800, help="quarry-budget: soft per-query time budget, µs")
    ap.add_argument("--quarry-search-extra", default="", help="extra quarryctl search flags, e.g. '--inflight 16 --rerank 20'")
    ap.add_argument("--R", type=int, default=64)
    ap.add_argument("--L", type=int, default=100, help="build complexity (Quarry and diskannpy)")
    ap.add_argument("--alpha", type=float, default=1.2, help="Quarry only (diskannpy's disk build fixes 1.2)")
    ap.add_argument("--pq-bytes", type=int, default=32)
    ap.add_argument("--cache-nodes", type=int, default=0)
    ap.add_argument("--disk-vector", default="f32", choices=["f32", "f16", "i8"])
    ap.add_argument("--threads", type=int, default=2, help="search threads for the QPS phase")
    ap.add_argument("--build-threads", type=int, default=None, help="default: --threads")
    ap.add_argument("--build-ram-gb", type=float, default=16)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--Ls", default="10,15,20,30,40,50,75,100,150,200,300", help="search L sweep (Quarry, diskannpy)")
    ap.add_argument("--W", default="2,4,8", help="beam width sweep (Quarry, diskannpy)")
    ap.add_argument("--hnsw-M", type=int, default=32)
    ap.add_argument("--hnsw-efc", type=int, default=200)
    ap.add_argument("--hnsw-ef", default="10,16,24,32,48,64,96,128,200,300")
    ap.add_argument("--faiss-nlist", type=int, default=0, help="0: 4·sqrt(N)")
    ap.add_argument("--faiss-nprobe", default="2,4,8,16,32,64,128")
    ap.add_argument("--faiss-kfactor", default="1,4,16")
    ap.add_argument("--max-queries", type=int, default=0, help="use only the first N queries (0: all)")
    ap.add_argument("--repeat", type=int, default=1, help="search every system N times (interleaved); report per-point medians")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--rebuild", default="", help="comma list of systems to rebuild even if cached")
    ap.add_argument("--no-fio", action="store_true")
    ap.add_argument("--fio-runtime", type=int, default=10)
    ap.add_argument("--no-lid", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 200 queries, short sweeps, 3 s fio")
    args = ap.parse_args()

    if args.quick:
        quick = {
            "max_queries": 200, "Ls": "10,20,50,100,200", "W": "4", "hnsw_ef": "16,64,200",
            "faiss_nprobe": "4,16,64", "faiss_kfactor": "1,4", "fio_runtime": 3,
        }  # fmt: skip
        given = {a.dest for a in ap._actions for opt in a.option_strings
                 if any(x == opt or x.startswith(opt + "=") for x in sys.argv[1:])}
        for k, v in quick.items():  # only where the user did not choose
            if k not in given:
                setattr(args, k, v)
    args.build_threads = args.build_threads or args.threads
    args.quarry_search_extra = shlex.split(args.quarry_search_extra)
    args.rebuild = set(x for x in args.rebuild.split(",") if x)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in ALL_SYSTEMS:
            raise SystemExit(f"unknown system {s}; choose from {ALL_SYSTEMS}")
    if any(s.startswith("quarry") for s in systems):
        if not Path(args.quarryctl).exists():
            raise SystemExit(f"quarryctl not found at {args.quarryctl} (build it: cargo build --release -p quarry-tools, or pass --quarryctl)")
        args.quarryctl = str(Path(args.quarryctl).resolve())

    data = Path(args.data).resolve()
    args.data = str(data)
    base = data / "base.fbin"
    for f in ("base.fbin", "queries.fbin", "gt.ibin"):
        if not (data / f).exists():
            raise SystemExit(f"missing {data / f}")
    ds = dataset_key(args.name, base)
    qf, gf, nq = prepare_queries(args, ds)
    log(f"data set {ds['tag']}: n={ds['n']} d={ds['d']}, {nq} queries")

    lid = {} if args.no_lid else local_intrinsic_dim(base, qf, ds)
    if lid:
        log(f"LID (MLE k=20): mean {lid['lid_mle_mean']:.1f}, median {lid['lid_mle_median']:.1f}")
    fio = {} if args.no_fio else run_fio(args)

    builds, heads = {}, {}
    for s in systems:  # all builds first, so the searches run back to back
        bsys = "quarry" if s.startswith("quarry") else s
        builds[s] = builds[bsys] if bsys in builds else ensure_build(bsys, args, ds, base)
    reps: dict[str, list[list[dict]]] = {s: [] for s in systems if builds[s]}
    for rep in range(args.repeat):  # interleave the systems in every repetition
        for s in reps:
            log(f"search {s} (repetition {rep + 1}/{args.repeat})")
            if s.startswith("quarry"):
                rows, head = search_quarry(s, args, builds[s], qf, gf, nq)
            else:
                rows, head = search_python(s, args, builds[s], qf, gf, nq)
            for r in rows:
                r["system"] = s
            reps[s].append(rows)
            heads.setdefault(s, head)
    rows_by_sys = {s: median_rows(rr) for s, rr in reps.items()}

    summary = summarize(rows_by_sys, args.target_recall, fio)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    res_dir = CACHE_ROOT / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    stem = res_dir / f"{args.name}-{stamp}"
    plots = []
    try:
        if any(rows_by_sys.values()):
            plots = make_plots(rows_by_sys, stem, f"{args.name}: n={ds['n']:,} d={ds['d']} (cache nodes {args.cache_nodes})", args.threads)
    except Exception as e:  # plots are a convenience; never lose the table to them
        log("plotting failed:", repr(e))
    md = render(args, ds, lid, fio, builds, heads, rows_by_sys, summary, nq, plots)
    Path(f"{stem}.md").write_text(md + "\n")
    Path(f"{stem}.json").write_text(json.dumps({
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "dataset": ds, "lid": lid, "fio": fio, "builds": builds, "search_meta": heads,
        "rows": [r for rs in rows_by_sys.values() for r in rs], "summary": summary,
        "commands": CMDS.cmds, "machine": machine_info(),
    }, indent=1, default=str))  # fmt: skip
    print(md)
    print(f"\nwritten: {stem}.md, {stem}.json" + "".join(f", {p}" for p in plots))


if __name__ == "__main__":
    main()
