"""The hand encoder writes exactly what protobuf's SerializeToString writes."""

from __future__ import annotations

import numpy as np
import pytest

from quarry import _wire
from quarry._base import upsert_chunks
from quarry._proto import quarry_pb2 as pb

SPECIAL_IDS = [0, 1, 127, 128, 16383, 16384, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


def random_case(rng: np.random.Generator):
    n = int(rng.integers(1, 60))
    dim = int(rng.choice([1, 2, 3, 7, 31, 32, 100, 384]))
    kind = rng.integers(0, 3)
    if kind == 0:
        ids = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    elif kind == 1:
        ids = rng.integers(0, 300, size=n).astype(np.uint64)
    else:
        ids = np.array([SPECIAL_IDS[j] for j in rng.integers(0, len(SPECIAL_IDS), size=n)], dtype=np.uint64)
    vectors = (rng.standard_normal((n, dim)) * 10 ** float(rng.uniform(-3, 3))).astype(np.float32)
    # Signed zeros, tiny and huge values survive byte for byte.
    vectors.flat[rng.integers(0, vectors.size)] = -0.0
    vectors.flat[rng.integers(0, vectors.size)] = np.float32(1e-42)
    vectors.flat[rng.integers(0, vectors.size)] = np.float32(3.4e38)
    pmode = rng.integers(0, 3)
    if pmode == 0:
        payloads = None
    elif pmode == 1:
        payloads = [b""] * n
    else:
        lens = rng.choice([0, 1, 5, 127, 128, 300, 20000], size=n)
        payloads = [rng.bytes(int(x)) for x in lens]
    name = str(rng.choice(["", "c", "docs-2_x", "n" * 64, "é" * 70]))
    return name, ids, vectors, payloads


def proto_upsert(name, ids, vectors, payloads, start=0, stop=None) -> bytes:
    stop = len(ids) if stop is None else stop
    req = pb.UpsertRequest(collection=name)
    for i in range(start, stop):
        req.points.add(id=int(ids[i]), vector=vectors[i].tolist(), payload=payloads[i] if payloads else b"")
    return req.SerializeToString()


@pytest.mark.parametrize("seed", range(150))
def test_upsert_matches_protobuf(seed: int) -> None:
    rng = np.random.default_rng(seed)
    name, ids, vectors, payloads = random_case(rng)
    want = proto_upsert(name, ids, vectors, payloads)
    got = _wire.encode_upsert(name.encode(), ids.tolist(), vectors, payloads)
    assert got == want
    # A slice of the rows too, as BulkUpsert sends them.
    a = int(rng.integers(0, len(ids)))
    b = int(rng.integers(a, len(ids) + 1))
    assert _wire.encode_upsert(name.encode(), ids.tolist(), vectors, payloads, a, b) == proto_upsert(
        name, ids, vectors, payloads, a, b
    )
    # And it parses back to the same points.
    back = pb.UpsertRequest.FromString(got)
    assert [p.id for p in back.points] == ids.tolist()
    np.testing.assert_array_equal(
        np.array([list(p.vector) for p in back.points], dtype=np.float32).view(np.uint32), vectors.view(np.uint32)
    )


@pytest.mark.parametrize("seed", range(60))
def test_search_matches_protobuf(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    nq = int(rng.integers(1, 20))
    dim = int(rng.choice([1, 8, 129, 384]))
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    k, l, w = (int(rng.choice([0, 1, 10, 127, 128, 5000])) for _ in range(3))
    with_payload = bool(rng.integers(0, 2))
    name = str(rng.choice(["", "docs", "x" * 64]))

    single = pb.SearchRequest(collection=name, vector=q[0].tolist(), with_payload=with_payload)
    single.params.SetInParent()
    single.params.k, single.params.l, single.params.w = k, l, w
    assert _wire.encode_search(name.encode(), q[:1], k, l, w, with_payload) == single.SerializeToString()

    batch = pb.SearchBatchRequest(collection=name, vectors=q.reshape(-1).tolist(), with_payload=with_payload)
    batch.params.SetInParent()
    batch.params.k, batch.params.l, batch.params.w = k, l, w
    assert _wire.encode_search(name.encode(), q, k, l, w, with_payload) == batch.SerializeToString()


def test_varint_edges() -> None:
    for v in SPECIAL_IDS:
        m = pb.Point(id=v)
        # Point {1: id}: tag 0x08 then the varint (absent for 0).
        assert m.SerializeToString() == (b"\x08" + _wire.varint(v) if v else b"")
    with pytest.raises(ValueError):
        _wire.varint(-1)


@pytest.mark.parametrize("seed", range(30))
def test_chunks_respect_rows_and_bytes(seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    name, ids, vectors, payloads = random_case(rng)
    max_rows = int(rng.integers(1, 20))
    max_bytes = int(rng.integers(200, 60000))
    chunks = upsert_chunks(name.encode(), ids, vectors, payloads, max_rows, max_bytes)
    # Consecutive, covering every row once.
    assert chunks[0][0] == 0 and chunks[-1][1] == len(ids)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for start, stop in chunks:
        assert 1 <= stop - start <= max_rows
        msg = _wire.encode_upsert(name.encode(), ids.tolist(), vectors, payloads, start, stop)
        assert len(msg) <= max_bytes or stop - start == 1, (start, stop, len(msg), max_bytes)
        # The chunk could not have taken one more row.
        if stop < len(ids) and stop - start < max_rows:
            longer = _wire.encode_upsert(name.encode(), ids.tolist(), vectors, payloads, start, stop + 1)
            assert len(longer) > max_bytes


def test_point_sizes_add_up() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        name, ids, vectors, payloads = random_case(rng)
        plens = np.array([len(p) for p in payloads]) if payloads else None
        sizes = _wire.point_sizes(ids, vectors.shape[1], plens)
        body = _wire.encode_upsert(b"", ids.tolist(), vectors, payloads)
        assert int(sizes.sum()) == len(body)


def test_health_codec() -> None:
    assert _wire.encode_health_check("") == b""
    assert _wire.encode_health_check("quarry.v1.Query") == b"\x0a\x0fquarry.v1.Query"
    assert _wire.decode_health_status(b"\x08\x01") == 1
    assert _wire.decode_health_status(b"") == 0
    # Unknown fields are skipped.
    assert _wire.decode_health_status(b"\x12\x02ab\x08\x02\x1d\x00\x00\x00\x00") == 2
    with pytest.raises(ValueError):
        _wire.decode_health_status(b"\x08\x80")
