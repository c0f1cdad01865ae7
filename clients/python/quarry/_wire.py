"""Hand-written protobuf wire encoding for the requests that carry vectors.

Building ``quarry_pb2`` messages would push every float through a Python
list; these encoders write the same bytes straight from numpy buffers. The
layout (proto3, fields in number order, defaults omitted, repeated floats
packed) is the one ``SerializeToString`` produces, which
``tests/test_wire.py`` checks on random inputs.

    UpsertRequest       1: collection (string)   2: Point (repeated message)
    Point               1: id (uint64)  2: vector (packed float)  3: payload (bytes)
    SearchRequest and
    SearchBatchRequest  1: collection  2: vector(s) (packed float)
                        3: SearchParams {1: k, 2: l, 3: w}  4: with_payload (bool)

Vectors reaching these functions are already validated: 2-D, C-contiguous,
little-endian float32.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "varint",
    "point_sizes",
    "plan_chunks",
    "encode_upsert",
    "encode_search",
    "encode_health_check",
    "decode_health_status",
]

# Tag bytes: (field number << 3) | wire type (0 varint, 2 length-delimited).
_T1_LEN = b"\x0a"
_T2_LEN = b"\x12"
_T3_LEN = b"\x1a"
_T1_VARINT = b"\x08"
_T4_TRUE = b"\x20\x01"

_VARINT_CACHE = [bytes([i]) for i in range(128)]


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    if value < 128:
        if value < 0:
            raise ValueError(f"varint of a negative value {value}")
        return _VARINT_CACHE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_lens(values: np.ndarray) -> np.ndarray:
    """Varint length in bytes of each uint64 in ``values`` (vectorised)."""
    v = values.astype(np.uint64, copy=False)
    n = np.ones(v.shape, dtype=np.int64)
    for shift in range(7, 64, 7):
        n += v >= np.uint64(1 << shift)
    return n


def point_sizes(ids: np.ndarray, dim: int, payload_lens: Optional[np.ndarray]) -> np.ndarray:
    """Bytes each point takes inside an UpsertRequest, its own tag and length included."""
    vbytes = dim * 4
    body = np.full(ids.shape, 1 + len(varint(vbytes)) + vbytes, dtype=np.int64)
    body += np.where(ids != 0, 1 + _varint_lens(ids), 0)
    if payload_lens is not None:
        pl = payload_lens.astype(np.int64, copy=False)
        body += np.where(pl > 0, 1 + _varint_lens(pl.astype(np.uint64)) + pl, 0)
    return 1 + _varint_lens(body.astype(np.uint64)) + body


def plan_chunks(sizes: np.ndarray, header: int, max_rows: int, max_bytes: int) -> List[Tuple[int, int]]:
    """Split rows into consecutive ``(start, stop)`` ranges of at most
    ``max_rows`` rows whose encoded request (``header`` plus the rows' sizes)
    stays within ``max_bytes``. A single row larger than that goes alone."""
    if max_rows < 1:
        raise ValueError(f"batch must be at least 1, got {max_rows}")
    n = len(sizes)
    cum = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    out: List[Tuple[int, int]] = []
    start = 0
    while start < n:
        # Last stop with cum[stop] - cum[start] <= max_bytes - header.
        budget = cum[start] + max_bytes - header
        stop = int(np.searchsorted(cum, budget, side="right")) - 1
        stop = max(start + 1, min(stop, start + max_rows, n))
        out.append((start, stop))
        start = stop
    return out


def encode_upsert(
    collection: bytes,
    ids: Sequence[int],
    vectors: np.ndarray,
    payloads: Optional[Sequence[bytes]],
    start: int = 0,
    stop: Optional[int] = None,
) -> bytes:
    """An UpsertRequest with rows ``start:stop`` of ``ids``/``vectors``/``payloads``.

    ``collection`` is the UTF-8 name; ``ids`` a sequence of Python ints (a
    ``tolist()`` of the uint64 array); ``vectors`` (n, dim) C-contiguous
    little-endian float32.
    """
    if stop is None:
        stop = len(ids)
    vbytes = vectors.shape[1] * 4
    vhead = _T2_LEN + varint(vbytes)
    fixed = len(vhead) + vbytes
    mv = vectors.reshape(-1).view(np.uint8).data
    parts: List[object] = []
    if collection:
        parts += [_T1_LEN, varint(len(collection)), collection]
    append = parts.append
    off = start * vbytes
    for i in range(start, stop):
        pid = ids[i]
        idb = _T1_VARINT + varint(pid) if pid else b""
        p = payloads[i] if payloads is not None else b""
        if p:
            plen = varint(len(p))
            size = len(idb) + fixed + 1 + len(plen) + len(p)
            append(_T2_LEN + varint(size) + idb + vhead)
            append(mv[off : off + vbytes])
            append(_T3_LEN + plen)
            append(p)
        else:
            append(_T2_LEN + varint(len(idb) + fixed) + idb + vhead)
            append(mv[off : off + vbytes])
        off += vbytes
    return b"".join(parts)  # type: ignore[arg-type]


def encode_search(
    collection: bytes,
    vectors: np.ndarray,
    k: int,
    l: int,
    w: int,
    with_payload: bool,
) -> bytes:
    """A SearchRequest (one query) or SearchBatchRequest (row-major queries);
    both have the same field layout. ``params`` is always sent (zeros
    omitted inside it, meaning the server's defaults)."""
    data = vectors.reshape(-1).view(np.uint8).data
    params = b"".join(
        tag + varint(v) for tag, v in ((b"\x08", k), (b"\x10", l), (b"\x18", w)) if v
    )
    parts: List[object] = []
    if collection:
        parts += [_T1_LEN, varint(len(collection)), collection]
    if len(data):
        parts += [_T2_LEN, varint(len(data)), data]
    parts += [_T3_LEN, varint(len(params)), params]
    if with_payload:
        parts.append(_T4_TRUE)
    return b"".join(parts)  # type: ignore[arg-type]


def encode_health_check(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest {1: service}."""
    s = service.encode()
    return _T1_LEN + varint(len(s)) + s if s else b""


def decode_health_status(data: bytes) -> int:
    """ServingStatus (field 1) of a grpc.health.v1.HealthCheckResponse;
    0 (UNKNOWN) if absent. Fields other than 1 are skipped."""
    i, status = 0, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(data, i)
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"health response: unsupported wire type {wire}")
    return status


def _read_varint(data: bytes, i: int) -> Tuple[int, int]:
    shift, value = 0, 0
    while True:
        if i >= len(data):
            raise ValueError("health response: truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
