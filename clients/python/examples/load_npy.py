#!/usr/bin/env python3
"""Load an .npy file of vectors into a new Quarry collection, then search it.

    python load_npy.py vectors.npy --collection docs [--metric cosine] [--server 127.0.0.1:7700]
    python load_npy.py vectors.npy --collection docs --build    # server-side bulk load instead

Without --build the rows are sent over one BulkUpsert stream (ids 0..n-1,
--first-id to shift them). With --build the server reads the file itself
(BuildIndex; the path must be one the server can open, so this is for a
server on this host) and the script follows the operation's progress.
Then the first --queries rows are searched: each should find itself first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import quarry


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("npy", help=".npy file holding an (n, dim) array")
    p.add_argument("--collection", help="collection name (default: the file's name)")
    p.add_argument("--server", help="host:port, http(s)://host:port or unix:/path (default $QUARRY_SERVER)")
    p.add_argument("--token", help="API token (default $QUARRY_TOKEN)")
    p.add_argument("--metric", default="l2", choices=["l2", "ip", "cosine"])
    p.add_argument("--first-id", type=int, default=0)
    p.add_argument("--build", action="store_true", help="BuildIndex from the file on the server instead of upserting")
    p.add_argument("--replace", action="store_true", help="drop the collection first if it exists")
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--k", type=int, default=5)
    a = p.parse_args()

    vectors = np.load(a.npy, mmap_mode="r")
    if vectors.ndim != 2:
        p.error(f"{a.npy}: expected a 2-D array, got shape {vectors.shape}")
    n, dim = vectors.shape
    name = a.collection or os.path.splitext(os.path.basename(a.npy))[0].replace(".", "-")[:64]

    with quarry.Client(a.server, token=a.token) as c:
        if a.replace:
            try:
                c.drop_collection(name)
            except quarry.NotFound:
                pass
        c.create_collection(name, dim, a.metric)
        print(f"created {name}: {n} x {dim} ({vectors.dtype}), metric {a.metric}", file=sys.stderr)
        t0 = time.perf_counter()
        if a.build:
            def show(op: quarry.Operation) -> None:
                print(f"\r{op.stage:<8} {op.progress:6.1%}  eta {op.eta_seconds:5.0f} s", end="", file=sys.stderr)

            op = c.build_index(name, os.path.abspath(a.npy), first_id=a.first_id, wait=True, progress=show)
            print(f"\nbuilt {op.vector_count} vectors in {time.perf_counter() - t0:.1f} s ({op.id})", file=sys.stderr)
        else:
            def sent(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                print(f"\r{done}/{total} sent, {rate:,.0f} vectors/s", end="", file=sys.stderr)

            ids = np.arange(a.first_id, a.first_id + n, dtype=np.uint64)
            w = c.bulk_upsert(name, ids, vectors, progress=sent)
            print(f"\nupserted {w.count} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        d = c.describe_collection(name)
        print(f"{name}: {d.vector_count} vectors, {d.writes.segments} segments, "
              f"{d.writes.fresh_vectors} fresh, {d.disk_bytes / 2**20:.1f} MiB on disk")

        hits = c.search_batch(name, np.asarray(vectors[: a.queries]), k=a.k)
        found = 0
        for row, r in enumerate(hits):
            want = a.first_id + row
            found += int(len(r) > 0 and int(r.ids[0]) == want)
            pairs = ", ".join(f"{i}:{s:.3f}" for i, s in zip(r.ids.tolist(), r.scores.tolist()))
            print(f"row {want}: {pairs}")
        print(f"{found}/{len(hits)} queries found their own row first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
