"""Build or search one reference system in its own process.

    python worker.py build  --system S --base F --index DIR --params JSON --out FILE
    python worker.py search --system S --index DIR --queries F --gt F --k 10
                            --threads T --points JSON --params JSON --out FILE

S is diskannpy, hnswlib or faiss. Results are written as JSON lines to --out
(not stdout: DiskANN's C++ code logs to stdout). The search worker measures
its own IOs from /proc/self/io around each phase, so the figure covers every
thread of this process (OpenMP workers, libaio) and nothing else.

Per search point, two phases:
  single: one thread, one query at a time, each timed (mean/p50/p99 latency);
  batch:  all queries in one batch call with --threads threads (QPS).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    log,
    percentile,
    proc_read_bytes,
    rss_bytes,
    read_bin_header,
    read_fbin,
    read_ibin,
    recall_at_k,
    PAGE,
)

import numpy as np  # noqa: E402


def import_faiss():
    # faiss-cpu >= 1.12 probes CPU features through numpy._core, which the
    # numpy 1.25 that diskannpy pins does not have. faiss-cpu's wheel uses
    # runtime dynamic dispatch anyway, so naming any level skips only that probe.
    if int(np.__version__.split(".")[0]) < 2:
        os.environ.setdefault("FAISS_OPT_LEVEL", "AVX512")
    import faiss

    return faiss


# ======================================================================= build


def diskann_search_memory_gb(pq_bytes: int, n: int) -> float:
    """search_memory_maximum that makes DiskANN pick `pq_bytes` PQ chunks.

    DiskANN computes chunks = floor(budget_bytes / n), where budget_bytes is
    GB·2^30, less 0.25 GB kept for its cache when GB − 0.25 > 1.0. Passing
    (pq_bytes + 0.5)·n / 2^30 lands in the middle of the right interval; the
    C++ side formats the double with 6 decimals, which is why the +0.5 margin
    matters for small n."""
    gb = (pq_bytes + 0.5) * n / 2**30
    if gb > 1.0:  # DiskANN would subtract 0.25 GB for its node cache
        gb += 0.25
    return gb


def build_diskannpy(base: str, index: Path, p: dict) -> dict:
    import diskannpy

    n, d = read_bin_header(base)
    gb = diskann_search_memory_gb(p["pq_bytes"], n)
    args = dict(
        data=base,
        distance_metric="l2",
        index_directory=str(index),
        complexity=p["L"],
        graph_degree=p["R"],
        search_memory_maximum=gb,
        build_memory_maximum=p["build_ram_gb"],
        num_threads=p["threads"],
        pq_disk_bytes=0,
        vector_dtype=np.float32,
        index_prefix="ann",
    )
    log("diskannpy.build_disk_index", {k: v for k, v in args.items() if k != "vector_dtype"})
    diskannpy.build_disk_index(**args)
    # Check the PQ size it actually chose: ann_pq_compressed.bin is
    # int32 n, int32 chunks, then n × chunks u8 codes.
    cn, chunks = read_bin_header(index / "ann_pq_compressed.bin")
    if chunks != p["pq_bytes"]:
        log(f"WARNING: diskannpy chose {chunks} PQ bytes, wanted {p['pq_bytes']}")
    return {
        "search_memory_maximum_gb": gb,
        "pq_bytes_actual": chunks,
        "alpha": "1.2 (DiskANN's default; diskannpy does not expose it for disk builds)",
        "disk_index_bytes": (index / "ann_disk.index").stat().st_size,
    }


def build_hnswlib(base: str, index: Path, p: dict) -> dict:
    import hnswlib

    x = read_fbin(base, mmap=True)
    n, d = x.shape
    idx = hnswlib.Index(space="l2", dim=d)
    idx.init_index(max_elements=n, ef_construction=p["efc"], M=p["M"], random_seed=100)
    step = 50_000
    for s in range(0, n, step):
        e = min(n, s + step)
        idx.add_items(np.ascontiguousarray(x[s:e]), np.arange(s, e), num_threads=p["threads"])
        log(f"hnswlib added {e}/{n}")
    idx.save_index(str(index / "hnsw.bin"))
    return {}


def faiss_pq_m(d: int, pq_bytes: int) -> int:
    """IVF-PQ with nbits=8 needs d % M == 0: the largest divisor of d ≤ pq_bytes."""
    for m in range(min(pq_bytes, d), 0, -1):
        if d % m == 0:
            return m
    return 1


def build_faiss(base: str, index: Path, p: dict) -> dict:
    faiss = import_faiss()
    faiss.omp_set_num_threads(p["threads"])
    x = read_fbin(base, mmap=True)
    n, d = x.shape
    m = faiss_pq_m(d, p["pq_bytes"])
    quant = faiss.IndexFlatL2(d)
    ivf = faiss.IndexIVFPQ(quant, d, p["nlist"], m, 8)
    ntrain = min(n, max(p["nlist"] * 40, 256 * 256))
    rng = np.random.default_rng(123)
    sample = np.sort(rng.choice(n, size=ntrain, replace=False))
    log(f"faiss training IVF{p['nlist']},PQ{m}x8 on {ntrain} vectors")
    ivf.train(np.ascontiguousarray(x[sample]))
    index_ = faiss.IndexRefineFlat(ivf)
    step = 50_000
    for s in range(0, n, step):
        index_.add(np.ascontiguousarray(x[s : min(n, s + step)]))
    faiss.write_index(index_, str(index / "ivfpq_refine.faiss"))
    return {"pq_m": m, "ntrain": ntrain}


# ====================================================================== search


class System:
    """Uniform interface over the three libraries."""

    def __init__(self, name: str, index: Path, params: dict, threads: int, dim: int) -> None:
        self.name, self.threads = name, threads
        if name == "diskannpy":
            import diskannpy

            self.idx = diskannpy.StaticDiskIndex(
                index_directory=str(index),
                num_threads=threads,
                num_nodes_to_cache=params.get("cache_nodes", 0),
                cache_mechanism=1,
                index_prefix="ann",
            )
        elif name == "hnswlib":
            import hnswlib

            self.idx = hnswlib.Index(space="l2", dim=dim)
            self.idx.load_index(str(index / "hnsw.bin"))
        elif name == "faiss":
            self.faiss = import_faiss()
            self.idx = self.faiss.read_index(str(index / "ivfpq_refine.faiss"))
            self.ivf = self.faiss.extract_index_ivf(self.idx)
        else:
            raise SystemExit(f"unknown system {name}")

    def set_point(self, pt: dict) -> None:
        self.pt = pt
        if self.name == "hnswlib":
            self.idx.set_ef(pt["ef"])
        elif self.name == "faiss":
            self.ivf.nprobe = pt["nprobe"]
            self.idx.k_factor = float(pt["k_factor"])

    def one(self, q: np.ndarray, k: int) -> np.ndarray:
        if self.name == "diskannpy":
            return self.idx.search(q, k, self.pt["L"], self.pt["W"]).identifiers
        if self.name == "hnswlib":
            return self.idx.knn_query(q[None, :], k=k, num_threads=1)[0][0]
        self.faiss.omp_set_num_threads(1)
        return self.idx.search(q[None, :], k)[1][0]

    def batch(self, qs: np.ndarray, k: int) -> np.ndarray:
        if self.name == "diskannpy":
            return self.idx.batch_search(qs, k, self.pt["L"], self.threads, self.pt["W"]).identifiers
        if self.name == "hnswlib":
            return self.idx.knn_query(qs, k=k, num_threads=self.threads)[0]
        self.faiss.omp_set_num_threads(self.threads)
        return self.idx.search(qs, k)[1]


def do_search(a) -> None:
    params = json.loads(a.params)
    points = json.loads(a.points)
    qs = read_fbin(a.queries, max_rows=a.max_queries or None)
    gt = read_ibin(a.gt, max_rows=len(qs))
    k = a.k
    out = open(a.out, "w")

    rss_base = rss_bytes()
    t0 = time.perf_counter()
    sysm = System(a.system, Path(a.index), params, a.threads, qs.shape[1])
    load_s = time.perf_counter() - t0
    rss_loaded = rss_bytes()
    # Warm-up: the first point over a few hundred queries, both modes.
    sysm.set_point(points[0])
    nw = min(len(qs), 200)
    sysm.batch(qs[:nw], k)
    for i in range(min(nw, 50)):
        sysm.one(qs[i], k)
    rss_warm = rss_bytes()
    header = {
        "kind": "meta",
        "load_s": load_s,
        "rss_base_bytes": rss_base,
        "rss_loaded_bytes": rss_loaded,
        "rss_warm_bytes": rss_warm,
        "n_queries": len(qs),
        "threads": a.threads,
    }
    out.write(json.dumps(header) + "\n")
    out.flush()

    for pt in points:
        sysm.set_point(pt)
        # single: one thread, one query in flight
        ids_single = np.full((len(qs), k), -1, dtype=np.int64)
        lat = np.empty(len(qs), dtype=np.float64)
        rb0 = proc_read_bytes()
        for i in range(len(qs)):
            s = time.perf_counter_ns()
            r = sysm.one(qs[i], k)
            lat[i] = (time.perf_counter_ns() - s) / 1000.0
            ids_single[i, : len(r)] = r[:k]
        rb1 = proc_read_bytes()
        # batch: all queries, `threads` threads
        rb2 = proc_read_bytes()
        s = time.perf_counter()
        ids_batch = sysm.batch(qs, k)
        wall = time.perf_counter() - s
        rb3 = proc_read_bytes()
        row = {
            "kind": "point",
            **pt,
            "recall_at_k": recall_at_k(ids_batch, gt, k),
            "recall_single": recall_at_k(ids_single, gt, k),
            "lat_mean_us": float(lat.mean()),
            "lat_p50_us": percentile(lat, 50),
            "lat_p99_us": percentile(lat, 99),
            "qps": len(qs) / wall,
            "ios_proc_single": (rb1 - rb0) / PAGE / len(qs),
            "ios_proc_batch": (rb3 - rb2) / PAGE / len(qs),
            "read_bytes_single": (rb1 - rb0) / len(qs),
            "rss_bytes": rss_bytes(),
        }
        out.write(json.dumps(row) + "\n")
        out.flush()
        log(a.system, json.dumps({k_: (round(v, 4) if isinstance(v, float) else v) for k_, v in row.items()}))
    out.close()


def do_build(a) -> None:
    p = json.loads(a.params)
    index = Path(a.index)
    index.mkdir(parents=True, exist_ok=True)
    fn = {"diskannpy": build_diskannpy, "hnswlib": build_hnswlib, "faiss": build_faiss}[a.system]
    extra = fn(a.base, index, p)
    Path(a.out).write_text(json.dumps(extra))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["build", "search"])
    ap.add_argument("--system", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base")
    ap.add_argument("--queries")
    ap.add_argument("--gt")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", default="[]")
    ap.add_argument("--max-queries", type=int, default=0)
    a = ap.parse_args()
    if a.mode == "build":
        do_build(a)
    else:
        do_search(a)


if __name__ == "__main__":
    main()
