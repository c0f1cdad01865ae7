"""The sync client against a real quarryd."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import numpy as np
import pytest

import quarry
from conftest import Quarryd, free_port, write_fbin


def rows(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


# ------------------------------------------------------------ collections


def test_create_list_describe_drop(client: quarry.Client, name: str) -> None:
    c = client.create_collection(
        name, 48, "ip", max_degree=24, build_list_size=48, alpha=1.1, pq_bytes=12, opq=True, nav_sample=50,
        stored_vector="f16", residency="ram",
    )
    assert (c.name, c.dim, c.metric) == (name, 48, quarry.Metric.IP)
    d = client.describe_collection(name)
    assert d.index_params.max_degree == 24 and d.index_params.build_list_size == 48
    assert d.index_params.pq_bytes == 12 and d.index_params.opq and d.index_params.nav_sample == 50
    assert abs(d.index_params.alpha - 1.1) < 1e-6
    assert d.stored_vector is quarry.StoredVector.F16 and d.residency is quarry.Residency.RAM
    assert d.vector_count == 0 and d.state is quarry.CollectionState.READY

    other = client.create_collection(name + "-b", 3)  # defaults: l2, server-resolved params
    assert other.metric is quarry.Metric.L2 and other.index_params.max_degree == 64
    assert other.residency is quarry.Residency.DISK

    names = [x.name for x in client.list_collections()]
    assert name in names and name + "-b" in names and names == sorted(names)

    with pytest.raises(quarry.AlreadyExists) as e:
        client.create_collection(name, 48)
    assert e.value.code is grpc.StatusCode.ALREADY_EXISTS and name in e.value.message

    client.drop_collection(name)
    client.drop_collection(name + "-b")
    assert name not in [x.name for x in client.list_collections()]
    with pytest.raises(quarry.NotFound):
        client.describe_collection(name)
    with pytest.raises(quarry.NotFound):
        client.drop_collection(name)


def test_create_refuses_bad_arguments(client: quarry.Client, name: str) -> None:
    with pytest.raises(ValueError, match="metric"):
        client.create_collection(name, 8, "hamming")
    with pytest.raises(ValueError, match="dim"):
        client.create_collection(name, 0)
    with pytest.raises(quarry.InvalidArgument) as e:
        client.create_collection("bad name!", 8)
    assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(quarry.InvalidArgument):
        client.create_collection(name, 8, max_degree=2)


# ------------------------------------------------------------ writes and reads


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_upsert_then_search_finds_each_vector(client: quarry.Client, name: str, metric: str) -> None:
    dim, n = 16, 600
    v = rows(n, dim, 1)
    ids = np.arange(1000, 1000 + n, dtype=np.uint64)
    client.create_collection(name, dim, metric)
    w = client.upsert(name, ids, v, payloads=[f"doc-{i}".encode() for i in ids])
    assert w.count == n and w.last_lsn >= 1
    assert client.describe_collection(name).vector_count == n
    for row in range(0, n, 60):
        r = client.search(name, v[row], k=5, l=64, with_payload=True)
        assert r.ids.dtype == np.uint64 and r.scores.dtype == np.float32 and len(r) == 5
        assert np.all(np.diff(r.scores) <= 0) and np.all(np.diff(r.distances) >= 0)
        if metric == "l2":
            assert r.ids[0] == ids[row] and abs(r.distances[0]) < 1e-3
            np.testing.assert_allclose(r.scores, -r.distances)
        elif metric == "cosine":
            assert r.ids[0] == ids[row] and abs(r.scores[0] - 1) < 1e-4
            np.testing.assert_allclose(r.scores, 1 - r.distances, atol=1e-6)
        else:  # ip: the best match is the largest product, the exact maximum
            np.testing.assert_allclose(r.scores, -r.distances)
            assert abs(r.scores[0] - float((v @ v[row]).max())) < 1e-3 * abs(r.scores[0]) + 1e-3
        assert r.payloads == [f"doc-{i}".encode() for i in r.ids]
    plain = client.search(name, v[3], k=5)
    assert plain.payloads is None


def test_search_batch_shapes(client: quarry.Client, name: str) -> None:
    dim = 8
    v = rows(300, dim, 2)
    client.create_collection(name, dim)
    client.upsert(name, np.arange(300), v)
    q = v[:37]
    b = client.search_batch(name, q, k=7)
    assert len(b) == 37 and b.ids.shape == (37, 7) and b.ids.dtype == np.uint64
    assert b.scores.shape == (37, 7) and b.scores.dtype == np.float32 and b.distances.shape == (37, 7)
    np.testing.assert_array_equal(b.ids[:, 0], np.arange(37, dtype=np.uint64))
    assert all(isinstance(r, quarry.SearchResult) for r in b)
    np.testing.assert_array_equal(b[5].ids, b.ids[5])
    # Split into calls of 10: the same answers.
    split = client.search_batch(name, q, k=7, batch=10)
    np.testing.assert_array_equal(split.ids, b.ids)
    # 1,000 queries: more than the session server's shard queues hold at once
    # (2 shards x 256), which the default batch of 256 stays under.
    many = client.search_batch(name, np.tile(v[:10], (100, 1)), k=3)
    assert many.ids.shape == (1000, 3)
    np.testing.assert_array_equal(many.ids[:, 0], np.tile(np.arange(10, dtype=np.uint64), 100))
    # float64 queries are converted.
    np.testing.assert_array_equal(client.search_batch(name, q.astype(np.float64), k=7).ids, b.ids)

    # Fewer points than k: rows are padded.
    small = name + "-s"
    client.create_collection(small, dim)
    client.upsert(small, [7, 8, 9], v[:3])
    s = client.search_batch(small, v[:2], k=5, with_payload=True)
    assert [len(r) for r in s] == [3, 3]
    assert s.ids.shape == (2, 5) and np.all(s.ids[:, 3:] == quarry.PAD_ID)
    assert np.all(np.isneginf(s.scores[:, 3:])) and np.all(np.isposinf(s.distances[:, 3:]))
    assert s[0].payloads == [b"", b"", b""]


def test_get_returns_records_and_missing_ids(client: quarry.Client, name: str) -> None:
    dim = 12
    v = rows(50, dim, 3)
    ids = np.arange(2**63, 2**63 + 50, dtype=np.uint64)  # large ids round-trip
    client.create_collection(name, dim)
    client.upsert(name, ids, v, payloads=[bytes([i]) * i for i in range(50)])
    ask = [int(ids[4]), 5, int(ids[0]), 2**64 - 1, int(ids[49])]
    g = client.get(name, ask)
    assert [r.id for r in g.records] == [int(ids[4]), int(ids[0]), int(ids[49])]
    assert g.missing_ids.dtype == np.uint64 and g.missing_ids.tolist() == [5, 2**64 - 1]
    np.testing.assert_array_equal(g.records[0].vector, v[4])
    np.testing.assert_array_equal(g.records[2].vector, v[49])
    assert g.records[0].payload == bytes([4]) * 4 and g.records[1].payload == b""
    assert client.get(name, [int(ids[1])], with_vector=False).records[0].vector is None


def test_delete(client: quarry.Client, name: str) -> None:
    dim = 8
    v = rows(100, dim, 4)
    client.create_collection(name, dim)
    client.upsert(name, np.arange(100), v)
    d = client.delete(name, [3, 4, 5, 12345])
    assert d.count >= 3
    assert client.get(name, [3, 4, 5, 6]).missing_ids.tolist() == [3, 4, 5]
    r = client.search(name, v[4], k=10)
    assert 4 not in r.ids.tolist()
    assert client.describe_collection(name).vector_count == 97


def test_upsert_replaces_vector_and_payload(client: quarry.Client, name: str) -> None:
    client.create_collection(name, 4)
    client.upsert(name, [1], [[1, 2, 3, 4]], payloads=[b"old"])
    client.upsert(name, [1], [[4, 3, 2, 1]], payloads=[b"new"])
    rec = client.get(name, [1]).records[0]
    np.testing.assert_array_equal(rec.vector, np.array([4, 3, 2, 1], dtype=np.float32))
    assert rec.payload == b"new"


def test_bulk_upsert_in_several_messages(client: quarry.Client, name: str) -> None:
    n, dim = 20_000, 64
    v = rows(n, dim, 5)
    ids = np.arange(n, dtype=np.uint64) * 3 + 7
    payloads = [b"p%d" % i if i % 3 == 0 else b"" for i in range(n)]
    client.create_collection(name, dim)
    seen: list[tuple[int, int]] = []
    # 1000 rows are ~265 KB; 200 KB messages force the byte limit to cut first.
    r = client.bulk_upsert(
        name, ids, v, payloads, batch=1000, max_message_bytes=200_000, progress=lambda s, t: seen.append((s, t))
    )
    assert r.count == n
    assert len(seen) > 20 and seen[-1] == (n, n) and all(t == n for _, t in seen)
    steps = np.diff([0] + [s for s, _ in seen])
    assert steps.max() < 1000  # the byte limit, not the row limit, cut the messages
    assert client.describe_collection(name).vector_count == n
    pick = np.random.default_rng(0).choice(n, 25, replace=False)
    g = client.get(name, ids[pick])
    assert not len(g.missing_ids)
    for rec, row in zip(g.records, pick):
        np.testing.assert_array_equal(rec.vector, v[row])
        assert rec.payload == payloads[row]
    hits = client.search_batch(name, v[pick], k=1, l=64)
    assert np.mean(hits.ids[:, 0] == ids[pick]) >= 0.9

    # The row limit cuts too: 20 rows per message.
    seen.clear()
    r = client.bulk_upsert(name, ids[:100], v[:100], batch=20, progress=lambda s, t: seen.append((s, t)))
    assert r.count == 100 and [s for s, _ in seen] == [20, 40, 60, 80, 100]


def test_bulk_upsert_error_names_the_server_status(client: quarry.Client, name: str) -> None:
    client.create_collection(name, 8)
    v = rows(50, 8, 6)
    with pytest.raises(quarry.NotFound):
        client.bulk_upsert(name + "-nope", np.arange(50), v, batch=10)
    # A callback that raises stops the stream; its own exception comes back.
    def boom(sent: int, total: int) -> None:
        if sent >= 20:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        client.bulk_upsert(name, np.arange(50), v, batch=10, progress=boom)


# ------------------------------------------------------------ operations


def test_build_index_from_fbin_and_wait(client: quarry.Client, name: str, tmp_path: Path) -> None:
    n, dim = 3000, 32
    v = rows(n, dim, 7)
    src = tmp_path / "base.fbin"
    write_fbin(src, v)
    client.create_collection(name, dim, max_degree=24, build_list_size=48, pq_bytes=8, stored_vector="f32")
    seen: list[quarry.Operation] = []
    op = client.build_index(name, str(src), first_id=100_000, wait=True, progress=seen.append, poll_interval=0.1)
    assert op.state is quarry.OperationState.DONE and op.succeeded and op.vector_count == n
    assert op.collection == name and op.progress == 1.0
    assert seen and seen[-1].id == op.id and all(x.id == op.id for x in seen)
    assert client.get_operation(op.id).state is quarry.OperationState.DONE
    d = client.describe_collection(name)
    assert d.vector_count == n and d.operation_id == op.id
    g = client.get(name, [100_000, 100_000 + n - 1, 99_999])
    np.testing.assert_array_equal(g.records[0].vector, v[0])
    assert g.missing_ids.tolist() == [99_999]
    hits = client.search_batch(name, v[:50], k=1, l=64)
    assert np.mean(hits.ids[:, 0] == np.arange(100_000, 100_050)) >= 0.9

    # A file that does not exist is refused at once ...
    with pytest.raises(quarry.InvalidArgument, match="No such file"):
        client.build_index(name, str(tmp_path / "missing.fbin"))
    # ... one with a NaN fails while reading: wait=True raises OperationFailed.
    bad = v[:100].copy()
    bad[5, 3] = np.nan
    write_fbin(tmp_path / "nan.fbin", bad)
    with pytest.raises(quarry.OperationFailed) as e:
        client.build_index(name, str(tmp_path / "nan.fbin"), wait=True, poll_interval=0.05)
    assert e.value.code is None and e.value.operation.state is quarry.OperationState.FAILED
    assert "NaN" in e.value.operation.error and "NaN" in e.value.message
    assert client.describe_collection(name).vector_count == n


def test_cancel_a_build(client: quarry.Client, name: str, tmp_path: Path) -> None:
    n, dim = 30_000, 32
    src = tmp_path / "big.fbin"
    write_fbin(src, rows(n, dim, 8))
    client.create_collection(name, dim, max_degree=24, build_list_size=48, pq_bytes=8)
    op = client.build_index(name, str(src))
    assert op.running
    c = client.cancel_operation(op.id, wait=True)
    assert c.state is quarry.OperationState.CANCELLED and "cancelled" in c.error
    assert client.wait_operation(op.id).state is quarry.OperationState.CANCELLED
    assert client.describe_collection(name).vector_count == 0
    with pytest.raises(quarry.FailedPrecondition) as e:
        client.cancel_operation(op.id)
    assert "already ended" in e.value.message
    with pytest.raises(quarry.NotFound):
        client.cancel_operation(f"build-{name}-999")
    with pytest.raises(quarry.NotFound):
        client.get_operation("build-nope-1")


def test_compact(client: quarry.Client, name: str) -> None:
    client.create_collection(name, 8, max_degree=16, build_list_size=32, pq_bytes=4)
    v = rows(400, 8, 9)
    client.upsert(name, np.arange(400), v)
    client.delete(name, np.arange(100))
    stages: list[str] = []
    op = client.compact(name, wait=True, progress=lambda o: stages.append(o.stage), poll_interval=0.05)
    assert op.state is quarry.OperationState.DONE and op.id.startswith("compact-")
    assert stages[-1] == "done"
    d = client.describe_collection(name)
    assert d.vector_count == 300 and d.writes.segments == 1 and d.writes.fresh_vectors == 0
    assert client.search(name, v[200], k=1).ids[0] == 200


def test_stats_and_health(client: quarry.Client, name: str) -> None:
    client.create_collection(name, 4)
    s = client.stats()
    assert s.version and s.uptime_seconds > 0 and len(s.shards) == 2
    assert name in [c.name for c in s.collections] and s.memory_budget_bytes > 0
    assert client.health() == "SERVING"
    assert client.health("quarry.v1.Query") == "SERVING"
    with pytest.raises(quarry.NotFound):
        client.health("no.such.Service")


# ------------------------------------------------------------ errors


def test_typed_errors(server: Quarryd, client: quarry.Client, name: str) -> None:
    client.create_collection(name, 8)
    good = rows(3, 8, 10)
    # Wrong dimension: the server's INVALID_ARGUMENT (a fresh client knows no dimension) ...
    with quarry.Client(server.address, token="") as fresh:
        with pytest.raises(quarry.InvalidArgument) as e:
            fresh.search(name, np.zeros(9, dtype=np.float32))
        assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT and "dimension 8" in e.value.message
        with pytest.raises(quarry.InvalidArgument):
            fresh.upsert(name, [1], np.zeros((1, 9), dtype=np.float32))
    # ... and a ValueError from one that created the collection.
    with pytest.raises(ValueError, match="dimension 8"):
        client.upsert(name, [1], np.zeros((1, 9), dtype=np.float32))
    # Unknown collection.
    for call in (
        lambda: client.search(name + "-x", good[0]),
        lambda: client.upsert(name + "-x", [1], good[:1]),
        lambda: client.get(name + "-x", [1]),
        lambda: client.describe_collection(name + "-x"),
    ):
        with pytest.raises(quarry.NotFound) as nf:
            call()
        assert nf.value.code is grpc.StatusCode.NOT_FOUND and name + "-x" in nf.value.message
    # NaN / Inf: refused client-side, and by the server when sent raw.
    bad = good.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"vectors\[1\]\[5\] is nan"):
        client.upsert(name, [1, 2, 3], bad)
    with pytest.raises(ValueError, match="vector"):
        client.search(name, np.array([np.inf] + [0.0] * 7, dtype=np.float32))
    with pytest.raises(quarry.InvalidArgument) as e:
        client.upsert(name, [1, 2, 3], bad, validate=False)
    assert "NaN" in e.value.message
    with pytest.raises(quarry.InvalidArgument):
        client.search(name, bad[1], validate=False)
    assert client.describe_collection(name).vector_count == 0  # nothing of the batch was written
    # float64 beyond float32's range becomes inf, and says so.
    with pytest.raises(ValueError, match="float64"):
        client.upsert(name, [1], np.full((1, 8), 1e300))
    # Limits: more points than max_batch (1024) in one Upsert.
    with pytest.raises(quarry.ResourceExhausted) as e:
        client.upsert(name, np.arange(1025), rows(1025, 8, 11))
    assert "max_batch" in e.value.message
    # k out of range.
    with pytest.raises(quarry.InvalidArgument, match="max_k"):
        client.search(name, good[0], k=5000)
    # Client-side argument checks.
    with pytest.raises(ValueError):
        client.upsert(name, [1, 2], good)  # 2 ids, 3 vectors
    with pytest.raises(ValueError):
        client.upsert(name, [-1, 2, 3], good)
    with pytest.raises(TypeError):
        client.upsert(name, [1, 2, 3], good, payloads=["a", "b", "c"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        client.search(name, good)  # 2-D with 3 rows: use search_batch
    # Deadline: a listener that accepts and never answers.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        with quarry.Client(f"127.0.0.1:{mute.getsockname()[1]}", token="", timeout=0.3) as silent:
            with pytest.raises(quarry.DeadlineExceeded) as e:
                silent.search(name, good[0])
    assert e.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    # Nobody listening.
    with quarry.Client(f"127.0.0.1:{free_port()}", token="", timeout=5) as down:
        with pytest.raises(quarry.Unavailable):
            down.list_collections()
    # Every one of them is a QuarryError.
    assert issubclass(quarry.Unavailable, quarry.QuarryError)


def test_unix_socket_and_address_forms(server: Quarryd, name: str) -> None:
    assert server.unix_socket is not None
    with quarry.Client(f"unix:{server.unix_socket}", token="") as c:
        c.create_collection(name, 4)
    with quarry.Client(f"http://{server.address}", token="") as c:
        assert name in [x.name for x in c.list_collections()]


def test_env_defaults(server: Quarryd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_SERVER", server.address)
    with quarry.Client(token="") as c:
        assert c.target == server.address and c.health() == "SERVING"


def test_snapshot_create_verify_and_restore_holds_exactly_the_writes_before_it(
    client: quarry.Client, name: str, tmp_path: Path
) -> None:
    client.create_collection(name, dim=8, metric="l2")
    client.upsert(name, np.arange(1, 11, dtype=np.uint64), rows(10, 8, seed=3))
    out = str(tmp_path / "snap")
    info = client.create_snapshot(name, out)
    assert info.collection == name and info.dir == out
    assert info.lsn >= 1 and info.files >= 1
    # Writes after the snapshot are not in it.
    client.upsert(name, np.array([11], dtype=np.uint64), rows(1, 8, seed=4))
    client.delete(name, [1])
    checked = client.verify_snapshot(out)
    assert checked.lsn == info.lsn and checked.dim == 8 and checked.metric is quarry.Metric.L2
    restored = client.restore_snapshot(out, name + "_r")
    assert restored.name == name + "_r" and restored.vector_count == 10
    got = client.get(name + "_r", [1, 10, 11])
    assert [r.id for r in got.records] == [1, 10] and list(got.missing_ids) == [11]
    # A snapshot directory that exists, and a name in use, are refused.
    with pytest.raises(quarry.AlreadyExists):
        client.create_snapshot(name, out)
    with pytest.raises(quarry.AlreadyExists):
        client.restore_snapshot(out, name)
    client.drop_collection(name + "_r")
