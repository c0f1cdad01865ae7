"""Values the client takes and returns: enums and result classes.

Everything here is plain Python/numpy; the generated protobuf classes stay
inside the client (``quarry._proto``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Union, overload, Tuple

import numpy as np

from ._proto import quarry_pb2 as pb

__all__ = [
    "Metric",
    "StoredVector",
    "Residency",
    "CollectionState",
    "OperationState",
    "IndexParams",
    "RamUsage",
    "WriteState",
    "Collection",
    "Operation",
    "QueryStats",
    "SearchResult",
    "BatchSearchResult",
    "Record",
    "GetResult",
    "WriteResult",
    "ShardStats",
    "Stats",
    "SnapshotInfo",
]


class Metric(str, enum.Enum):
    """Distance a collection ranks by."""

    #: Squared Euclidean distance; score = -distance.
    L2 = "l2"
    #: Inner product; distance = -product, score = product.
    IP = "ip"
    #: Cosine (vectors normalised by the server); distance = 1 - cos, score = cos.
    COSINE = "cosine"

    def _pb(self) -> int:
        return {Metric.L2: pb.METRIC_L2, Metric.IP: pb.METRIC_IP, Metric.COSINE: pb.METRIC_COSINE}[self]


class StoredVector(str, enum.Enum):
    """How vectors are stored in the on-disk graph (used for exact re-ranking)."""

    #: 4 bytes per dimension, exact.
    F32 = "f32"
    #: 2 bytes per dimension (IEEE half); the server's default for dim >= 512.
    F16 = "f16"
    #: 1 byte per dimension plus a per-vector scale.
    I8 = "i8"

    def _pb(self) -> int:
        return {
            StoredVector.F32: pb.STORED_VECTOR_F32,
            StoredVector.F16: pb.STORED_VECTOR_F16,
            StoredVector.I8: pb.STORED_VECTOR_I8,
        }[self]


class Residency(str, enum.Enum):
    """Where a collection's graph records live while it serves (fixed at create)."""

    #: On disk, read per query (the default).
    DISK = "disk"
    #: All graph records in RAM, counted against the server's memory budget.
    RAM = "ram"

    def _pb(self) -> int:
        return {Residency.DISK: pb.RESIDENCY_DISK, Residency.RAM: pb.RESIDENCY_RAM}[self]


class CollectionState(str, enum.Enum):
    """Where a collection is in its life."""

    UNSPECIFIED = "unspecified"
    EMPTY = "empty"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class OperationState(str, enum.Enum):
    """Phase of a build or compaction."""

    UNSPECIFIED = "unspecified"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_METRIC_FROM_PB = {pb.METRIC_L2: Metric.L2, pb.METRIC_IP: Metric.IP, pb.METRIC_COSINE: Metric.COSINE}
_STORED_FROM_PB = {
    pb.STORED_VECTOR_F32: StoredVector.F32,
    pb.STORED_VECTOR_F16: StoredVector.F16,
    pb.STORED_VECTOR_I8: StoredVector.I8,
}
_RESIDENCY_FROM_PB = {pb.RESIDENCY_DISK: Residency.DISK, pb.RESIDENCY_RAM: Residency.RAM}
_CSTATE_FROM_PB = {
    pb.COLLECTION_STATE_EMPTY: CollectionState.EMPTY,
    pb.COLLECTION_STATE_BUILDING: CollectionState.BUILDING,
    pb.COLLECTION_STATE_READY: CollectionState.READY,
    pb.COLLECTION_STATE_FAILED: CollectionState.FAILED,
}
_OSTATE_FROM_PB = {
    pb.OPERATION_STATE_RUNNING: OperationState.RUNNING,
    pb.OPERATION_STATE_DONE: OperationState.DONE,
    pb.OPERATION_STATE_FAILED: OperationState.FAILED,
    pb.OPERATION_STATE_CANCELLED: OperationState.CANCELLED,
}


@dataclass(frozen=True)
class IndexParams:
    """Graph and quantisation parameters of a collection's disk index
    (0 / False means "the server's default" when creating)."""

    #: Maximum out-degree R of the Vamana graph (4..=512; default 64).
    max_degree: int = 0
    #: Build search list size L (>= max_degree; default 100).
    build_list_size: int = 0
    #: RobustPrune alpha (1.0..=2.0; default 1.2).
    alpha: float = 0.0
    #: PQ bytes per vector held in RAM (1..=dim; default min(dim/4, 128)).
    pq_bytes: int = 0
    #: Learn an OPQ rotation before PQ.
    opq: bool = False
    #: Navigation-tier sample size (0: 1 % of the vectors).
    nav_sample: int = 0

    @classmethod
    def _from_pb(cls, m: pb.IndexParams) -> "IndexParams":
        return cls(m.max_degree, m.build_list_size, m.alpha, m.pq_bytes, m.opq, m.nav_sample)


@dataclass(frozen=True)
class RamUsage:
    """RAM held by an open index, bytes, by component."""

    pq_codes: int = 0
    pq_pivots: int = 0
    nav_tier: int = 0
    cache: int = 0
    id_map: int = 0
    total: int = 0
    fresh_index: int = 0

    @classmethod
    def _from_pb(cls, m: pb.RamUsage) -> "RamUsage":
        return cls(m.pq_codes, m.pq_pivots, m.nav_tier, m.cache, m.id_map, m.total, m.fresh_index)


@dataclass(frozen=True)
class WriteState:
    """Write-side state of a collection."""

    #: Vectors in the in-RAM fresh index, not yet in a disk segment.
    fresh_vectors: int = 0
    #: Disk segments a search visits.
    segments: int = 0
    #: LSN of the last write applied.
    last_lsn: int = 0
    #: Last LSN known durable in the write-ahead log.
    durable_lsn: int = 0
    #: Bytes of write-ahead log on disk.
    wal_bytes: int = 0
    #: A flush or merge is running.
    flushing: bool = False
    #: Flushes and merges finished since the server started.
    flushes: int = 0
    #: Why the last background flush failed ("" if it did not).
    last_flush_error: str = ""

    @classmethod
    def _from_pb(cls, m: pb.WriteState) -> "WriteState":
        return cls(
            m.fresh_vectors, m.segments, m.last_lsn, m.durable_lsn, m.wal_bytes, m.flushing, m.flushes,
            m.last_flush_error,
        )


@dataclass(frozen=True)
class Collection:
    """A named set of vectors of one dimension and metric, as the server describes it."""

    name: str
    dim: int
    metric: Optional[Metric]
    #: As resolved by the server (defaults filled in).
    index_params: IndexParams
    stored_vector: Optional[StoredVector]
    state: CollectionState
    #: Live vectors.
    vector_count: int
    #: Id of the running or last build operation ("" if none).
    operation_id: str
    #: Why the last build failed (state FAILED only).
    error: str
    ram: RamUsage
    disk_bytes: int
    writes: WriteState
    residency: Optional[Residency]

    @classmethod
    def _from_pb(cls, m: pb.Collection) -> "Collection":
        return cls(
            name=m.name,
            dim=m.dim,
            metric=_METRIC_FROM_PB.get(m.metric),
            index_params=IndexParams._from_pb(m.index_params),
            stored_vector=_STORED_FROM_PB.get(m.stored_vector),
            state=_CSTATE_FROM_PB.get(m.state, CollectionState.UNSPECIFIED),
            vector_count=m.vector_count,
            operation_id=m.operation_id,
            error=m.error,
            ram=RamUsage._from_pb(m.ram),
            disk_bytes=m.disk_bytes,
            writes=WriteState._from_pb(m.writes),
            residency=_RESIDENCY_FROM_PB.get(m.residency),
        )


@dataclass(frozen=True)
class Operation:
    """A long-running build or compaction."""

    #: ``<kind>-<collection>-<n>``.
    id: str
    collection: str
    state: OperationState
    #: "reading", "pq", "graph", "nav", "write", "opening", ... then "done".
    stage: str
    #: Fraction done, 0..=1.
    progress: float
    elapsed_seconds: float
    #: Estimated seconds left (0 when unknown or finished).
    eta_seconds: float
    #: Failure reason (FAILED/CANCELLED).
    error: str
    #: Vectors in the source file (once read).
    vector_count: int

    @property
    def running(self) -> bool:
        """True while the operation has not ended."""
        return self.state in (OperationState.RUNNING, OperationState.UNSPECIFIED)

    @property
    def succeeded(self) -> bool:
        """True if it ended DONE."""
        return self.state is OperationState.DONE

    @classmethod
    def _from_pb(cls, m: pb.Operation) -> "Operation":
        return cls(
            m.id, m.collection, _OSTATE_FROM_PB.get(m.state, OperationState.UNSPECIFIED), m.stage, m.progress,
            m.elapsed_seconds, m.eta_seconds, m.error, m.vector_count,
        )


@dataclass(frozen=True)
class QueryStats:
    """What answering one query cost, as the server measured it."""

    ios: int = 0
    hops: int = 0
    cache_hits: int = 0
    shard_micros: float = 0.0
    queue_micros: float = 0.0
    handler_micros: float = 0.0
    read_wait_micros: float = 0.0
    reads_waited: int = 0

    @classmethod
    def _from_pb(cls, m: pb.QueryStats) -> "QueryStats":
        return cls(
            m.ios, m.hops, m.cache_hits, m.shard_micros, m.queue_micros, m.handler_micros, m.read_wait_micros,
            m.reads_waited,
        )


@dataclass(frozen=True)
class SearchResult:
    """The neighbours of one query, nearest first.

    ``scores`` are similarities (larger is closer): cosine similarity, inner
    product, or negated squared L2 distance; ``distances`` the metric's
    distances (smaller is closer). Both are in the same order.
    """

    #: External ids, uint64, shape (m,), m <= k.
    ids: np.ndarray
    #: float32, shape (m,), descending.
    scores: np.ndarray
    #: float32, shape (m,), ascending.
    distances: np.ndarray
    #: One payload per neighbour when the search asked ``with_payload``, else None.
    payloads: Optional[List[bytes]]
    stats: QueryStats

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def _from_pb(cls, m: pb.SearchResponse, with_payload: bool) -> "SearchResult":
        nb = m.neighbors
        n = len(nb)
        return cls(
            ids=np.fromiter((x.id for x in nb), dtype=np.uint64, count=n),
            scores=np.fromiter((x.score for x in nb), dtype=np.float32, count=n),
            distances=np.fromiter((x.distance for x in nb), dtype=np.float32, count=n),
            payloads=[x.payload for x in nb] if with_payload else None,
            stats=QueryStats._from_pb(m.stats),
        )


#: Id used to pad rows of :attr:`BatchSearchResult.ids` that have fewer than k neighbours.
PAD_ID = np.uint64(2**64 - 1)


class BatchSearchResult(Sequence[SearchResult]):
    """The results of a batch of queries, in query order.

    A sequence of :class:`SearchResult`; also 2-D views: :attr:`ids`,
    :attr:`scores`, :attr:`distances` of shape (n_queries, k), rows with
    fewer than k neighbours padded with :data:`PAD_ID`, ``-inf`` and
    ``+inf``.
    """

    def __init__(self, results: List[SearchResult], k: int) -> None:
        self._results = results
        self._k = k

    @overload
    def __getitem__(self, i: int) -> SearchResult: ...

    @overload
    def __getitem__(self, i: slice) -> List[SearchResult]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[SearchResult, List[SearchResult]]:
        return self._results[i]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[SearchResult]:
        return iter(self._results)

    def _stack(self, attr: str, fill: object, dtype: type) -> np.ndarray:
        out: np.ndarray = np.full((len(self._results), self._k), fill, dtype=dtype)
        for row, r in enumerate(self._results):
            a = getattr(r, attr)
            out[row, : len(a)] = a
        return out

    @property
    def ids(self) -> np.ndarray:
        """uint64 (n_queries, k), padded with PAD_ID."""
        return self._stack("ids", PAD_ID, np.uint64)

    @property
    def scores(self) -> np.ndarray:
        """float32 (n_queries, k), padded with -inf."""
        return self._stack("scores", -np.inf, np.float32)

    @property
    def distances(self) -> np.ndarray:
        """float32 (n_queries, k), padded with +inf."""
        return self._stack("distances", np.inf, np.float32)


@dataclass(frozen=True)
class Record:
    """A stored point."""

    id: int
    #: float32 (dim,), or None when fetched with ``with_vector=False``.
    vector: Optional[np.ndarray]
    #: The payload given with the upsert (b"" for bulk-loaded rows).
    payload: bytes


@dataclass(frozen=True)
class GetResult:
    """Answer to :meth:`Client.get`."""

    #: The requested ids that exist, in request order.
    records: List[Record]
    #: The requested ids that do not, in request order (uint64).
    missing_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    @property
    def ids(self) -> np.ndarray:
        """Ids of :attr:`records` (uint64)."""
        return np.fromiter((r.id for r in self.records), dtype=np.uint64, count=len(self.records))

    @classmethod
    def _from_pb(cls, m: pb.GetResponse, with_vector: bool) -> "GetResult":
        recs = [
            Record(r.id, np.array(r.vector, dtype=np.float32) if with_vector else None, r.payload) for r in m.records
        ]
        return cls(recs, np.array(m.missing_ids, dtype=np.uint64))


@dataclass(frozen=True)
class WriteResult:
    """Acknowledgement of a write: durable and visible from now on."""

    #: Points (or ids) applied.
    count: int
    #: LSN of the last one in the collection's write-ahead log.
    last_lsn: int

    @classmethod
    def _from_pb(cls, m: pb.WriteResponse) -> "WriteResult":
        return cls(m.count, m.last_lsn)


@dataclass(frozen=True)
class ShardStats:
    """Per-shard counters since the server started."""

    shard: int
    queries: int
    queue_depth: int
    in_flight: int
    expired: int
    rejected: int


@dataclass(frozen=True)
class Stats:
    """Server-wide statistics (Admin.Stats)."""

    version: str
    uptime_seconds: float
    shards: List[ShardStats]
    collections: List[Collection]
    ram: RamUsage
    memory_budget_bytes: int
    rss_bytes: int
    latency_p50_us: float
    latency_p99_us: float
    latency_p999_us: float
    mean_ios: float
    cache_hit_rate: float

    @classmethod
    def _from_pb(cls, m: pb.StatsResponse) -> "Stats":
        return cls(
            version=m.version,
            uptime_seconds=m.uptime_seconds,
            shards=[ShardStats(s.shard, s.queries, s.queue_depth, s.in_flight, s.expired, s.rejected) for s in m.shards],
            collections=[Collection._from_pb(c) for c in m.collections],
            ram=RamUsage._from_pb(m.ram),
            memory_budget_bytes=m.memory_budget_bytes,
            rss_bytes=m.rss_bytes,
            latency_p50_us=m.latency_p50_us,
            latency_p99_us=m.latency_p99_us,
            latency_p999_us=m.latency_p999_us,
            mean_ios=m.mean_ios,
            cache_hit_rate=m.cache_hit_rate,
        )


@dataclass(frozen=True)
class SnapshotInfo:
    """A collection's snapshot: what CreateSnapshot wrote or VerifySnapshot
    found. It holds exactly the writes up to ``lsn``."""

    #: The snapshot's directory, as the server sees it.
    dir: str
    collection: str
    #: Every write acknowledged before the snapshot began, none after.
    lsn: int
    #: Writes up to here are in the segment files; the rest, to ``lsn``, in its log copy.
    checkpoint_lsn: int
    files: int
    bytes: int
    #: Segment files hard-linked from the collection (CreateSnapshot only).
    linked_files: int
    #: Files copied (CreateSnapshot only).
    copied_files: int
    seconds: float
    #: Why files were copied rather than linked ("" if none was).
    copy_reason: str
    #: Leftovers of crashed earlier creates removed first.
    leftovers_removed: Tuple[str, ...]
    #: Dimension and metric (VerifySnapshot).
    dim: int
    metric: Optional[Metric]
    #: When it was taken, Unix milliseconds (VerifySnapshot).
    created_unix_ms: int

    @classmethod
    def _from_pb(cls, m: pb.SnapshotInfo) -> "SnapshotInfo":
        return cls(
            m.dir, m.collection, m.lsn, m.checkpoint_lsn, m.files, m.bytes, m.linked_files, m.copied_files,
            m.seconds, m.copy_reason, tuple(m.leftovers_removed), m.dim, _METRIC_FROM_PB.get(m.metric),
            m.created_unix_ms,
        )
