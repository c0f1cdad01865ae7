"""The asyncio client against a real quarryd: the core flow."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

import quarry
from conftest import Quarryd, write_fbin

pytestmark = pytest.mark.asyncio


async def test_core_flow(server: Quarryd, name: str) -> None:
    dim, n = 24, 5000
    v = np.random.default_rng(20).standard_normal((n, dim)).astype(np.float32)
    async with quarry.AsyncClient(server.address, token="") as c:
        assert await c.health() == "SERVING"
        col = await c.create_collection(name, dim, "cosine", max_degree=16, build_list_size=32)
        assert col.dim == dim and col.metric is quarry.Metric.COSINE
        assert name in [x.name for x in await c.list_collections()]

        w = await c.upsert(name, np.arange(100), v[:100], payloads=[b"%d" % i for i in range(100)])
        assert w.count == 100
        seen: list[int] = []
        b = await c.bulk_upsert(name, np.arange(100, n), v[100:], batch=700, progress=lambda s, t: seen.append(s))
        assert b.count == n - 100 and seen == [700 * i for i in range(1, 7)] + [n - 100]
        assert (await c.describe_collection(name)).vector_count == n

        r = await c.search(name, v[42], k=3, with_payload=True)
        assert r.ids[0] == 42 and abs(r.scores[0] - 1) < 1e-4 and r.payloads is not None and r.payloads[0] == b"42"
        batch = await c.search_batch(name, v[1000:1010], k=4, l=64)
        assert batch.ids.shape == (10, 4)
        assert np.mean(batch.ids[:, 0] == np.arange(1000, 1010)) >= 0.9

        g = await c.get(name, [7, 10**12, 4999])
        assert [x.id for x in g.records] == [7, 4999] and g.missing_ids.tolist() == [10**12]
        np.testing.assert_array_equal(g.records[1].vector, v[4999])

        d = await c.delete(name, [7])
        assert d.count == 1 and (await c.get(name, [7])).missing_ids.tolist() == [7]

        # Several calls at once on one channel.
        many = await asyncio.gather(*(c.search(name, v[i], k=1) for i in range(1000, 1020)))
        assert sum(int(m.ids[0]) == 1000 + i for i, m in enumerate(many)) >= 18

        s = await c.stats()
        assert name in [x.name for x in s.collections]
        await c.drop_collection(name)
        with pytest.raises(quarry.NotFound) as e:
            await c.describe_collection(name)
        assert e.value.code is grpc.StatusCode.NOT_FOUND


async def test_build_cancel_and_errors(server: Quarryd, name: str, tmp_path: Path) -> None:
    dim = 32
    v = np.random.default_rng(21).standard_normal((30_000, dim)).astype(np.float32)
    write_fbin(tmp_path / "small.fbin", v[:2000])
    write_fbin(tmp_path / "big.fbin", v)
    async with quarry.AsyncClient(server.address, token="") as c:
        await c.create_collection(name, dim, max_degree=24, build_list_size=48, pq_bytes=8)
        polls: list[quarry.Operation] = []
        op = await c.build_index(name, str(tmp_path / "small.fbin"), wait=True, progress=polls.append, poll_interval=0.05)
        assert op.succeeded and op.vector_count == 2000 and polls[-1].state is quarry.OperationState.DONE
        assert (await c.describe_collection(name)).vector_count == 2000

        op = await c.build_index(name, str(tmp_path / "big.fbin"), first_id=10**6)
        cancelled = await c.cancel_operation(op.id, wait=True)
        assert cancelled.state is quarry.OperationState.CANCELLED
        assert (await c.describe_collection(name)).vector_count == 2000
        with pytest.raises(quarry.FailedPrecondition):
            await c.cancel_operation(op.id)

        with pytest.raises(quarry.InvalidArgument, match="dimension"):
            await c.search(name, np.zeros(dim + 1, dtype=np.float32), validate=False)
        with pytest.raises(ValueError, match="dimension"):
            await c.search(name, np.zeros(dim + 1, dtype=np.float32))
        bad = v[:2].copy()
        bad[0, 0] = np.inf
        with pytest.raises(ValueError, match="finite"):
            await c.upsert(name, [1, 2], bad)
        with pytest.raises(quarry.InvalidArgument):
            await c.upsert(name, [1, 2], bad, validate=False)
        with pytest.raises(quarry.NotFound):
            await c.bulk_upsert(name + "-nope", [1, 2], v[:2])

        def boom(sent: int, total: int) -> None:
            raise RuntimeError("progress failed")

        with pytest.raises(RuntimeError, match="progress failed"):
            await c.bulk_upsert(name, np.arange(100), v[:100], batch=10, progress=boom)
        await c.drop_collection(name)
