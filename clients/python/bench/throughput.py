#!/usr/bin/env python3
"""Throughput of the Python client against quarryctl on one quarryd.

Synthetic data (standard normal, seeded), n x dim float32, written to a
temporary .fbin for quarryctl. Each round, each into a fresh collection:

  py-unary   Client.upsert in batches of --unary-batch rows, one call at a time
  ctl-unary  quarryctl collections upsert --unary --batch <same>
  py-bulk    Client.bulk_upsert (one BulkUpsert stream, default chunking)
  ctl-bulk   quarryctl collections upsert (one BulkUpsert stream, its default batch)
  py-search  Client.search, --queries single queries one after the other
  ctl-search quarryctl collections search (the same queries, k, L)

Between runs the server is left to finish its background flushes. Printed
per run: vectors/s (or latency), the client's CPU seconds (process_time
for Python, the child's rusage for quarryctl) per 100k vectors, and the
server's CPU seconds over the run (from /proc). Nothing is written except
the temporary files.

    python bench/throughput.py                       # starts its own quarryd
    python bench/throughput.py --server 127.0.0.1:7700 --quarryctl PATH
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import quarry

REPO = Path(__file__).resolve().parents[3]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_fbin(path: Path, v: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(np.array(v.shape, dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(v, dtype="<f4").tobytes())


def server_cpu(pid: Optional[int]) -> float:
    """quarryd's user+system CPU seconds so far (0 if not ours)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def settle(c: quarry.Client, name: str, limit: float = 600) -> float:
    """Wait until the collection has no flush running (twice in a row)."""
    t0 = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - t0 < limit:
        quiet = 0 if c.describe_collection(name).writes.flushing else quiet + 1
        time.sleep(0.5)
    return time.monotonic() - t0


class Bench:
    def __init__(self, a: argparse.Namespace, address: str, pid: Optional[int], tmp: Path) -> None:
        self.a, self.address, self.pid, self.tmp = a, address, pid, tmp
        self.c = quarry.Client(address, timeout=120)
        rng = np.random.default_rng(a.seed)
        self.base = rng.standard_normal((a.n, a.dim), dtype=np.float32)
        self.queries = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
        self.base_path, self.q_path = tmp / "base.fbin", tmp / "queries.fbin"
        write_fbin(self.base_path, self.base)
        write_fbin(self.q_path, self.queries)
        self.ids = np.arange(a.n, dtype=np.uint64)
        self.rows: List[Dict[str, Any]] = []

    def fresh(self, name: str) -> None:
        try:
            self.c.drop_collection(name)
        except quarry.NotFound:
            pass
        self.c.create_collection(name, self.a.dim, "l2")

    def record(self, **row: Any) -> None:
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def _write_run(self, kind: str, rnd: int, fn: Any) -> str:
        name = f"{kind}-r{rnd}"
        self.fresh(name)
        s0, c0, t0 = server_cpu(self.pid), time.process_time(), time.perf_counter()
        fn(name)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        srv = server_cpu(self.pid) - s0
        assert self.c.describe_collection(name).vector_count == self.a.n
        self.record(run=kind, round=rnd, vectors=self.a.n, seconds=round(wall, 2),
                    vectors_per_s=round(self.a.n / wall), client_cpu_s_per_100k=round(cpu * 1e5 / self.a.n, 3),
                    server_cpu_s=round(srv, 1), settle_s=round(settle(self.c, name), 1))
        return name

    def _ctl(self, args: List[str]) -> Dict[str, Any]:
        # quarryctl takes --server after the subcommand (`collections --server`), not before it.
        cmd = [self.a.quarryctl, *args, "--server", self.address, "--json"]
        r0 = children_cpu()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        cpu = children_cpu() - r0
        line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
        print("quarryctl:", " ".join(cmd[1:]), "->", line, flush=True)
        j: Dict[str, Any] = json.loads(line)
        j["_cpu"] = cpu
        return j

    def py_unary(self, rnd: int) -> str:
        b = self.a.unary_batch

        def go(name: str) -> None:
            for s in range(0, self.a.n, b):
                self.c.upsert(name, self.ids[s : s + b], self.base[s : s + b])

        return self._write_run("py-unary", rnd, go)

    def py_bulk(self, rnd: int) -> str:
        return self._write_run("py-bulk", rnd, lambda name: self.c.bulk_upsert(name, self.ids, self.base))

    def ctl_upsert(self, rnd: int, unary: bool) -> str:
        kind = "ctl-unary" if unary else "ctl-bulk"
        name = f"{kind}-r{rnd}"
        self.fresh(name)
        extra = ["--unary", "--batch", str(self.a.unary_batch)] if unary else []
        s0 = server_cpu(self.pid)
        j = self._ctl(["collections", "upsert", name, "--source", str(self.base_path), *extra])
        srv = server_cpu(self.pid) - s0
        assert j["upserted"] == self.a.n, j
        self.record(run=kind, round=rnd, vectors=self.a.n, seconds=round(j["seconds"], 2),
                    vectors_per_s=round(j["vectors_per_second"]), batch=j["batch"],
                    client_cpu_s_per_100k=round(j["_cpu"] * 1e5 / self.a.n, 3), server_cpu_s=round(srv, 1),
                    settle_s=round(settle(self.c, name), 1))
        return name

    def py_search(self, rnd: int, name: str) -> None:
        k, l = self.a.k, self.a.L
        for q in self.queries[:20]:  # warm the connection and the cache
            self.c.search(name, q, k=k, l=l)
        lat = np.empty(len(self.queries))
        c0, t0 = time.process_time(), time.perf_counter()
        for i, q in enumerate(self.queries):
            t = time.perf_counter()
            r = self.c.search(name, q, k=k, l=l)
            lat[i] = time.perf_counter() - t
            assert len(r) == k
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        # The same queries through a bare grpcio call of pre-encoded requests:
        # what grpcio itself costs, without this client's validation,
        # encoding and result arrays.
        import grpc

        from quarry import _wire

        reqs = [_wire.encode_search(name.encode(), q.reshape(1, -1), k, l, 0, False) for q in self.queries]
        with grpc.insecure_channel(self.address) as ch:
            bare = ch.unary_unary("/quarry.v1.Query/Search", request_serializer=None, response_deserializer=None)
            for r0 in reqs[:20]:
                bare(r0)
            raw_lat = np.empty(len(reqs))
            rc0 = time.process_time()
            for i, r0 in enumerate(reqs):
                t = time.perf_counter()
                bare(r0)
                raw_lat[i] = time.perf_counter() - t
            raw_cpu = time.process_time() - rc0
        t1 = time.perf_counter()
        b = self.c.search_batch(name, self.queries, k=k, l=l)
        bwall = time.perf_counter() - t1
        assert b.ids.shape == (len(self.queries), k)
        self.record(run="py-search", round=rnd, collection=name, queries=len(lat), k=k, L=l,
                    lat_p50_us=round(float(np.percentile(lat, 50)) * 1e6), lat_p99_us=round(float(np.percentile(lat, 99)) * 1e6),
                    qps_one_client=round(len(lat) / wall), client_cpu_us_per_query=round(cpu * 1e6 / len(lat)),
                    search_batch_qps=round(len(lat) / bwall),
                    bare_grpcio_p50_us=round(float(np.percentile(raw_lat, 50)) * 1e6),
                    bare_grpcio_p99_us=round(float(np.percentile(raw_lat, 99)) * 1e6),
                    bare_grpcio_cpu_us_per_query=round(raw_cpu * 1e6 / len(reqs)))

    def ctl_search(self, rnd: int, name: str) -> None:
        j = self._ctl(["collections", "search", name, "--queries", str(self.q_path), "--k", str(self.a.k),
                       "--L", str(self.a.L)])
        self.record(run="ctl-search", round=rnd, collection=name, queries=j["queries"], k=self.a.k, L=self.a.L,
                    lat_p50_us=j["lat_p50_us"], lat_p99_us=j["lat_p99_us"], qps_one_client=round(j["qps_one_client"]),
                    client_cpu_us_per_query=round(j["_cpu"] * 1e6 / j["queries"]))

    def encode_cost(self) -> None:
        """CPU to encode every row as UpsertRequests of 1,000: the hand encoder
        this client uses, and the generated protobuf classes fed numpy rows."""
        from quarry import _wire
        from quarry._proto import quarry_pb2 as pb

        ids = self.ids.tolist()
        c0 = time.process_time()
        hand = sum(len(_wire.encode_upsert(b"x", ids, self.base, None, s, min(s + 1000, self.a.n)))
                   for s in range(0, self.a.n, 1000))
        hand_s = time.process_time() - c0
        c0 = time.process_time()
        proto = 0
        for s in range(0, self.a.n, 1000):
            req = pb.UpsertRequest(collection="x")
            for i in range(s, min(s + 1000, self.a.n)):
                req.points.add(id=ids[i], vector=self.base[i])
            proto += len(req.SerializeToString())
        proto_s = time.process_time() - c0
        assert hand == proto
        self.record(run="encode", vectors=self.a.n, bytes=hand, hand_encoder_cpu_s=round(hand_s, 3),
                    protobuf_cpu_s=round(proto_s, 3))

    def run(self) -> None:
        self.encode_cost()
        for rnd in (1, 2):
            for f in (lambda: self.py_unary(rnd), lambda: self.ctl_upsert(rnd, True)) if rnd == 1 else (
                lambda: self.ctl_upsert(rnd, True), lambda: self.py_unary(rnd)):
                self.c.drop_collection(f())
            first, second = (self.py_bulk, lambda r: self.ctl_upsert(r, False))
            if rnd == 2:
                first, second = second, first
            a_name = first(rnd)
            b_name = second(rnd)
            self.c.drop_collection(b_name)
            # Searches on the collection this round kept, both clients, A/B order alternating.
            if rnd == 1:
                self.py_search(rnd, a_name)
                self.ctl_search(rnd, a_name)
            else:
                self.ctl_search(rnd, a_name)
                self.py_search(rnd, a_name)
            self.c.drop_collection(a_name)
        self.summary()

    def summary(self) -> None:
        print("\nsummary (ratio = Python / quarryctl; > 1 means Python is faster for throughput)")
        by: Dict[str, List[Dict[str, Any]]] = {}
        for r in self.rows:
            by.setdefault(r["run"], []).append(r)
        for py, ctl in (("py-unary", "ctl-unary"), ("py-bulk", "ctl-bulk")):
            for a, b in zip(by[py], by[ctl]):
                print(f"round {a['round']}: {py} {a['vectors_per_s']}/s, {ctl} {b['vectors_per_s']}/s, "
                      f"ratio {a['vectors_per_s'] / b['vectors_per_s']:.2f}; client CPU s/100k "
                      f"{a['client_cpu_s_per_100k']} vs {b['client_cpu_s_per_100k']}")
        for a, b in zip(by["py-search"], by["ctl-search"]):
            print(f"round {a['round']}: search p50 {a['lat_p50_us']} us vs {b['lat_p50_us']} us, "
                  f"p99 {a['lat_p99_us']} us vs {b['lat_p99_us']} us (Python vs quarryctl)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="a running quarryd (default: start one from --quarryd)")
    p.add_argument("--quarryd", default=os.environ.get("QUARRYD", str(REPO / "target/release/quarryd")))
    p.add_argument("--quarryctl", default=os.environ.get("QUARRYCTL", str(REPO / "target/release/quarryctl")))
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--unary-batch", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--server-config", default="flush_at = 1000000\nwrite_stall_at = 2000000\n",
                   help="extra quarryd.toml lines for the server this script starts (default: no background "
                        "flush during a 100k run, so every run measures inserts alone)")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="quarry-bench-"))
    proc = None
    try:
        if a.server:
            address, pid = a.server, None
        else:
            port = free_port()
            cfg = tmp / "quarryd.toml"
            cfg.write_text(f'listen = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
                           f'data_dir = "{tmp / "data"}"\nlog = "warn"\n{a.server_config}')
            proc = subprocess.Popen([a.quarryd, "--config", str(cfg)], stdout=subprocess.DEVNULL,
                                    stderr=open(tmp / "quarryd.log", "wb"))
            address, pid = f"127.0.0.1:{port}", proc.pid
            quarry.Client(address).wait_ready(30)
        print(f"quarry-bench: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, server {address}, "
              f"n={a.n} dim={a.dim} queries={a.queries} k={a.k} L={a.L}, python {sys.version.split()[0]}, "
              f"numpy {np.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
        if not a.server:
            print("quarryd config extra:", a.server_config.strip().replace("\n", "; "), flush=True)
        Bench(a, address, pid, tmp).run()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
