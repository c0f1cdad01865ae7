#!/usr/bin/env python3
"""Payloads as JSON, returned with search results and filtered on the client.

    python filter_by_payload.py [--server 127.0.0.1:7700] [--collection products] [--keep]

Makes a small catalogue (random embeddings, each with a JSON payload of
category and price), upserts it with its payloads, then asks for the items
nearest to a query that are in one category and under a price: the search
over-fetches (k = 20 x the wanted count) with with_payload=True, and the
filter runs here on the decoded payloads. Quarry stores payloads as opaque
bytes and does not filter by them itself.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import quarry

CATEGORIES = ["books", "garden", "kitchen", "toys", "tools"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="host:port, http(s)://host:port or unix:/path (default $QUARRY_SERVER)")
    p.add_argument("--token", help="API token (default $QUARRY_TOKEN)")
    p.add_argument("--collection", default="example-products")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--category", default="kitchen", choices=CATEGORIES)
    p.add_argument("--max-price", type=float, default=50.0)
    p.add_argument("--want", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the collection afterwards")
    a = p.parse_args()

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((a.n, a.dim), dtype=np.float32)
    items = [
        {"sku": f"SKU-{i:05d}", "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
         "price": round(float(rng.uniform(1, 200)), 2)}
        for i in range(a.n)
    ]
    payloads = [json.dumps(x, separators=(",", ":")).encode() for x in items]

    with quarry.Client(a.server, token=a.token) as c:
        try:
            c.drop_collection(a.collection)
        except quarry.NotFound:
            pass
        c.create_collection(a.collection, a.dim, "cosine")
        c.bulk_upsert(a.collection, np.arange(a.n), vectors, payloads)
        try:
            # A query near one item that passes the filter, so the answer has a known best match.
            target = next(i for i, x in enumerate(items) if x["category"] == a.category and x["price"] <= a.max_price)
            query = vectors[target] + 0.5 * rng.standard_normal(a.dim, dtype=np.float32)
            print(f"query: near item {target} ({items[target]['sku']})")
            r = c.search(a.collection, query, k=20 * a.want, l=max(64, 20 * a.want), with_payload=True)
            assert r.payloads is not None
            kept = []
            for pid, score, raw in zip(r.ids.tolist(), r.scores.tolist(), r.payloads):
                item = json.loads(raw)
                if item["category"] == a.category and item["price"] <= a.max_price:
                    kept.append((pid, score, item))
            print(f"{len(r)} nearest fetched, {len(kept)} are {a.category} at <= {a.max_price}:")
            for pid, score, item in kept[: a.want]:
                print(f"  id {pid:5d}  cosine {score:.3f}  {item['sku']}  {item['category']:<8} {item['price']:7.2f}")
            if len(kept) < a.want:
                print(f"  (fewer than {a.want}: fetch more with a larger k, or loosen the filter)")
        finally:
            if not a.keep:
                c.drop_collection(a.collection)
    return 0


if __name__ == "__main__":
    sys.exit(main())
