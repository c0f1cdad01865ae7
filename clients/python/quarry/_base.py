"""What the sync and async clients share: addresses, credentials, argument
validation, request building and method paths. No I/O here."""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from . import _wire
from ._proto import quarry_pb2 as pb
from .types import IndexParams, Metric, Residency, StoredVector

#: Address used when none is given and QUARRY_SERVER is unset.
DEFAULT_ADDRESS = "127.0.0.1:7700"
#: Default per-call deadline of unary calls, seconds.
DEFAULT_TIMEOUT = 30.0
#: Default rows per BulkUpsert message (the server's max_batch defaults to 1,024).
DEFAULT_BULK_BATCH = 512
#: Default queries per SearchBatch call. The server's max_batch is 1,024 by
#: default, but a batch must also fit its shard queues (shards x queue_depth,
#: 2 x 256 on a 2-core machine): 1,000 queries on an idle 2-shard server are
#: refused with RESOURCE_EXHAUSTED "every shard queue is full". 256 fits one
#: shard's default queue.
DEFAULT_SEARCH_BATCH = 256
#: Default bytes per BulkUpsert message (the server's max_message_bytes defaults to 16 MiB).
DEFAULT_BULK_BYTES = 4 << 20
#: Largest message the client sends or accepts (the server has its own limit).
CLIENT_MAX_MESSAGE = 256 << 20

PathOrBytes = Union[str, "os.PathLike[str]", bytes, None]
ArrayLike = Any  # anything np.asarray takes



class Methods:
    """Every RPC the clients make, as multi-callables of one channel (sync
    or aio: both have the same ``unary_unary``/``stream_unary``).

    The calls that carry vectors (Upsert, BulkUpsert, Search, SearchBatch)
    take requests already encoded by :mod:`quarry._wire` (no serializer);
    the health check is encoded by hand too, so no health package is
    needed. The rest use the generated messages.
    """

    def __init__(self, ch: Any) -> None:
        def unary(path: str, req: Any, resp: Any) -> Any:
            return ch.unary_unary(
                path,
                request_serializer=None if req is None else req.SerializeToString,
                response_deserializer=None if resp is None else resp.FromString,
            )

        c, q, w, a = "/quarry.v1.Collections/", "/quarry.v1.Query/", "/quarry.v1.Write/", "/quarry.v1.Admin/"
        self.create_collection = unary(c + "CreateCollection", pb.CreateCollectionRequest, pb.Collection)
        self.list_collections = unary(c + "ListCollections", pb.ListCollectionsRequest, pb.ListCollectionsResponse)
        self.describe_collection = unary(c + "DescribeCollection", pb.DescribeCollectionRequest, pb.Collection)
        self.drop_collection = unary(c + "DropCollection", pb.DropCollectionRequest, pb.DropCollectionResponse)
        self.build_index = unary(c + "BuildIndex", pb.BuildIndexRequest, pb.Operation)
        self.get_operation = unary(c + "GetOperation", pb.GetOperationRequest, pb.Operation)
        self.cancel_operation = unary(c + "CancelOperation", pb.CancelOperationRequest, pb.Operation)
        self.search = unary(q + "Search", None, pb.SearchResponse)
        self.search_batch = unary(q + "SearchBatch", None, pb.SearchBatchResponse)
        self.get = unary(q + "Get", pb.GetRequest, pb.GetResponse)
        self.upsert = unary(w + "Upsert", None, pb.WriteResponse)
        self.delete = unary(w + "Delete", pb.DeleteRequest, pb.WriteResponse)
        self.bulk_upsert = ch.stream_unary(
            w + "BulkUpsert", request_serializer=None, response_deserializer=pb.WriteResponse.FromString
        )
        self.stats = unary(a + "Stats", pb.StatsRequest, pb.StatsResponse)
        self.compact = unary(a + "Compact", pb.CompactRequest, pb.Operation)
        self.create_snapshot = unary(a + "CreateSnapshot", pb.CreateSnapshotRequest, pb.SnapshotInfo)
        self.verify_snapshot = unary(a + "VerifySnapshot", pb.VerifySnapshotRequest, pb.SnapshotInfo)
        self.restore_snapshot = unary(a + "RestoreSnapshot", pb.RestoreSnapshotRequest, pb.Collection)
        self.health = unary("/grpc.health.v1.Health/Check", None, None)

HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def resolve_target(address: Optional[str], tls: Optional[bool]) -> Tuple[str, bool]:
    """gRPC target and whether to use TLS, from an address and the ``tls`` flag.

    Accepts ``host:port``, ``http://host:port``, ``https://host:port`` and
    ``unix:/path``; ``None`` takes ``$QUARRY_SERVER``, else 127.0.0.1:7700.
    ``https://`` or ``tls=True`` means TLS; ``http://`` with ``tls=True`` is
    a contradiction and refused.
    """
    if address is None:
        address = os.environ.get("QUARRY_SERVER") or DEFAULT_ADDRESS
    addr = address.strip()
    if not addr:
        raise ValueError("empty server address")
    if addr.startswith("unix:"):
        return addr, bool(tls)
    scheme_tls: Optional[bool] = None
    if "://" in addr:
        scheme, _, rest = addr.partition("://")
        if scheme == "https":
            scheme_tls = True
        elif scheme == "http":
            scheme_tls = False
        else:
            raise ValueError(f"server address {address!r}: scheme must be http, https or unix")
        addr = rest.rstrip("/")
        if "/" in addr:
            raise ValueError(f"server address {address!r}: no path allowed after host:port")
    if scheme_tls is False and tls:
        raise ValueError(f"server address {address!r} is http:// but tls=True")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host or (host.count(":") and not host.startswith("[")):
        raise ValueError(f"server address {address!r}: expected host:port (IPv6 as [addr]:port) or unix:/path")
    use_tls = bool(tls) if tls is not None else bool(scheme_tls)
    return addr, use_tls


def is_loopback(target: str) -> bool:
    """True for unix: targets and loopback hosts."""
    if target.startswith("unix:"):
        return True
    host = target.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_pem(value: PathOrBytes, what: str) -> Optional[bytes]:
    """PEM bytes given as bytes, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {value!r}: {e}") from e


def channel_options(target: str, server_name: Optional[str]) -> List[Tuple[str, Any]]:
    """Options common to both channel kinds.

    For ``unix:`` targets the HTTP/2 authority is set to ``localhost``:
    grpc-core's default for them (derived from the socket path) is refused
    by quarryd's HTTP/2 stack with RST_STREAM PROTOCOL_ERROR.
    """
    opts: List[Tuple[str, Any]] = [
        ("grpc.max_send_message_length", CLIENT_MAX_MESSAGE),
        ("grpc.max_receive_message_length", CLIENT_MAX_MESSAGE),
        ("grpc.primary_user_agent", "quarry-python"),
    ]
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name))
        opts.append(("grpc.default_authority", server_name))
    elif target.startswith("unix:"):
        opts.append(("grpc.default_authority", "localhost"))
    return opts


def credentials(
    root_certificates: PathOrBytes, private_key: PathOrBytes, certificate_chain: PathOrBytes
) -> grpc.ChannelCredentials:
    """``grpc.ssl_channel_credentials`` from PEM bytes or file paths."""
    key = read_pem(private_key, "private_key")
    chain = read_pem(certificate_chain, "certificate_chain")
    if (key is None) != (chain is None):
        raise ValueError("a client certificate needs both private_key and certificate_chain")
    return grpc.ssl_channel_credentials(read_pem(root_certificates, "root_certificates"), key, chain)


def metadata(token: Optional[str]) -> Optional[Tuple[Tuple[str, str], ...]]:
    """Call metadata carrying the bearer token, if any."""
    if token is None:
        token = os.environ.get("QUARRY_TOKEN") or None
    if not token:
        return None
    if any(c.isspace() for c in token):
        raise ValueError("token must not contain whitespace")
    return (("authorization", f"Bearer {token}"),)


# ---------------------------------------------------------------- validation


def as_vectors(vectors: ArrayLike, what: str = "vectors", dim: Optional[int] = None, check_finite: bool = True) -> np.ndarray:
    """A 2-D, C-contiguous, little-endian float32 array of ``vectors``.

    Other float or integer dtypes are converted (a copy; float64 values
    outside float32's range become inf and are refused). Refuses an empty
    array, a wrong dimension and, with ``check_finite``, NaN or +-Inf.
    """
    a = np.asarray(vectors)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, dim); got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be numeric (float32 preferred); got dtype {a.dtype}")
    converted = a.dtype != np.dtype("<f4")
    if converted:
        with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values are reported below
            a = a.astype("<f4")  # a copy: the wire format is float32
    a = np.ascontiguousarray(a)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{what} have dimension {a.shape[1]}, expected {dim}")
    if check_finite:
        finite = np.isfinite(a)
        if not finite.all():
            row, col = (int(x) for x in np.argwhere(~finite)[0])
            note = f" (after conversion from {np.asarray(vectors).dtype} to float32)" if converted else ""
            raise ValueError(f"{what}[{row}][{col}] is {a[row, col]}{note}: vectors must be finite")
    return a


def as_query(vector: ArrayLike, check_finite: bool) -> np.ndarray:
    """One query as a (1, dim) float32 array (accepts shape (dim,) or (1, dim))."""
    a = np.asarray(vector)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    elif not (a.ndim == 2 and a.shape[0] == 1):
        raise ValueError(f"vector must have shape (dim,) or (1, dim); got {a.shape} (use search_batch for several)")
    return as_vectors(a, "vector", check_finite=check_finite)


def as_ids(ids: ArrayLike, n: Optional[int] = None, what: str = "ids") -> np.ndarray:
    """A 1-D uint64 array of ids (each 0 <= id < 2**64), ``n`` long if given."""
    if not isinstance(ids, np.ndarray):
        # Python ints: numpy would turn a list mixing ints >= 2**63 with
        # smaller ones into float64 and lose bits, so convert one by one.
        if isinstance(ids, (int, np.integer)):
            raise ValueError(f"{what} must be a sequence of integers, not a scalar")
        vals = []
        for x in ids:
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
                raise TypeError(f"{what} must be integers; got {type(x).__name__}")
            x = int(x)
            if x < 0 or x >= 2**64:
                raise ValueError(f"{what} must be in 0..2**64-1; got {x}")
            vals.append(x)
        ids = np.array(vals, dtype=np.uint64)
    a = ids
    if a.ndim == 0:
        raise ValueError(f"{what} must be a sequence of integers, not a scalar")
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D; got shape {a.shape}")
    if a.dtype.kind == "u":
        out = a.astype(np.uint64, copy=False)
    elif a.dtype.kind == "i":
        if len(a) and a.min() < 0:
            raise ValueError(f"{what} must be non-negative; got {int(a.min())}")
        out = a.astype(np.uint64)
    elif a.dtype.kind == "O" or len(a) == 0:
        return as_ids(a.tolist(), n, what)
    else:
        raise TypeError(f"{what} must be integers; got dtype {a.dtype}")
    if n is not None and len(out) != n:
        raise ValueError(f"{what} has {len(out)} entries but there are {n} vectors")
    return np.ascontiguousarray(out)


def as_payloads(payloads: Optional[Sequence[Optional[bytes]]], n: int) -> Optional[List[bytes]]:
    """Payloads as a list of ``n`` bytes objects (None entries become b"")."""
    if payloads is None:
        return None
    if isinstance(payloads, (bytes, str)):
        raise TypeError("payloads must be a sequence with one bytes object per vector")
    out = [b"" if p is None else p for p in payloads]
    if len(out) != n:
        raise ValueError(f"payloads has {len(out)} entries but there are {n} vectors")
    for i, p in enumerate(out):
        if not isinstance(p, bytes):
            if isinstance(p, (bytearray, memoryview)):
                out[i] = bytes(p)
            else:
                raise TypeError(f"payloads[{i}] must be bytes, got {type(p).__name__} (encode text first)")
    return out


def check_name(name: str, what: str = "collection") -> bytes:
    """The UTF-8 bytes of a collection name (the server checks its syntax)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string")
    return name.encode()


def search_knobs(k: int, l: Optional[int], w: Optional[int]) -> Tuple[int, int, int]:
    """k, L, W as sent (0 = the server's default)."""
    for v, n in ((k, "k"), (l, "l"), (w, "w")):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 0):
            raise ValueError(f"{n} must be a non-negative integer; got {v!r}")
    if k < 1:
        raise ValueError("k must be at least 1")
    return int(k), int(l or 0), int(w or 0)


# ------------------------------------------------------------- requests


def _enum(value: Any, cls: Any, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"{what} must be one of {allowed}; got {value!r}") from None


def create_request(
    name: str,
    dim: int,
    metric: Union[Metric, str],
    index_params: Optional[IndexParams],
    stored_vector: Union[StoredVector, str, None],
    residency: Union[Residency, str, None],
) -> pb.CreateCollectionRequest:
    """CreateCollectionRequest from the client's arguments."""
    check_name(name)
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer; got {dim!r}")
    p = index_params or IndexParams()
    req = pb.CreateCollectionRequest(
        name=name,
        dim=int(dim),
        metric=_enum(metric, Metric, "metric")._pb(),
        index_params=pb.IndexParams(
            max_degree=p.max_degree,
            build_list_size=p.build_list_size,
            alpha=p.alpha,
            pq_bytes=p.pq_bytes,
            opq=p.opq,
            nav_sample=p.nav_sample,
        ),
    )
    if stored_vector is not None:
        req.stored_vector = _enum(stored_vector, StoredVector, "stored_vector")._pb()
    if residency is not None:
        req.residency = _enum(residency, Residency, "residency")._pb()
    return req


def upsert_chunks(
    name: bytes,
    ids: np.ndarray,
    vectors: np.ndarray,
    payloads: Optional[List[bytes]],
    batch: int,
    max_bytes: int,
) -> List[Tuple[int, int]]:
    """Row ranges of the BulkUpsert messages: at most ``batch`` rows and
    ``max_bytes`` encoded bytes each."""
    plens = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads)) if payloads else None
    sizes = _wire.point_sizes(ids, vectors.shape[1], plens)
    header = 1 + len(_wire.varint(len(name))) + len(name)
    return _wire.plan_chunks(sizes, header, batch, max_bytes)


def bounded_timeout(timeout: Optional[float], default: Optional[float]) -> Optional[float]:
    """The per-call timeout: the given one, else the client's default."""
    return default if timeout is None else timeout


Progress = Any  # Callable[..., None]; kept loose for the sync/async variants
Dims = Dict[str, int]
