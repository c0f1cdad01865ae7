from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_L2: _ClassVar[Metric]
    METRIC_IP: _ClassVar[Metric]
    METRIC_COSINE: _ClassVar[Metric]

class StoredVector(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORED_VECTOR_UNSPECIFIED: _ClassVar[StoredVector]
    STORED_VECTOR_F32: _ClassVar[StoredVector]
    STORED_VECTOR_F16: _ClassVar[StoredVector]
    STORED_VECTOR_I8: _ClassVar[StoredVector]

class CollectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLLECTION_STATE_UNSPECIFIED: _ClassVar[CollectionState]
    COLLECTION_STATE_EMPTY: _ClassVar[CollectionState]
    COLLECTION_STATE_BUILDING: _ClassVar[CollectionState]
    COLLECTION_STATE_READY: _ClassVar[CollectionState]
    COLLECTION_STATE_FAILED: _ClassVar[CollectionState]

class Residency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESIDENCY_UNSPECIFIED: _ClassVar[Residency]
    RESIDENCY_DISK: _ClassVar[Residency]
    RESIDENCY_RAM: _ClassVar[Residency]

class OperationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_STATE_UNSPECIFIED: _ClassVar[OperationState]
    OPERATION_STATE_RUNNING: _ClassVar[OperationState]
    OPERATION_STATE_DONE: _ClassVar[OperationState]
    OPERATION_STATE_FAILED: _ClassVar[OperationState]
    OPERATION_STATE_CANCELLED: _ClassVar[OperationState]
METRIC_UNSPECIFIED: Metric
METRIC_L2: Metric
METRIC_IP: Metric
METRIC_COSINE: Metric
STORED_VECTOR_UNSPECIFIED: StoredVector
STORED_VECTOR_F32: StoredVector
STORED_VECTOR_F16: StoredVector
STORED_VECTOR_I8: StoredVector
COLLECTION_STATE_UNSPECIFIED: CollectionState
COLLECTION_STATE_EMPTY: CollectionState
COLLECTION_STATE_BUILDING: CollectionState
COLLECTION_STATE_READY: CollectionState
COLLECTION_STATE_FAILED: CollectionState
RESIDENCY_UNSPECIFIED: Residency
RESIDENCY_DISK: Residency
RESIDENCY_RAM: Residency
OPERATION_STATE_UNSPECIFIED: OperationState
OPERATION_STATE_RUNNING: OperationState
OPERATION_STATE_DONE: OperationState
OPERATION_STATE_FAILED: OperationState
OPERATION_STATE_CANCELLED: OperationState

class IndexParams(_message.Message):
    __slots__ = ("max_degree", "build_list_size", "alpha", "pq_bytes", "opq", "nav_sample")
    MAX_DEGREE_FIELD_NUMBER: _ClassVar[int]
    BUILD_LIST_SIZE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    PQ_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPQ_FIELD_NUMBER: _ClassVar[int]
    NAV_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    max_degree: int
    build_list_size: int
    alpha: float
    pq_bytes: int
    opq: bool
    nav_sample: int
    def __init__(self, max_degree: _Optional[int] = ..., build_list_size: _Optional[int] = ..., alpha: _Optional[float] = ..., pq_bytes: _Optional[int] = ..., opq: _Optional[bool] = ..., nav_sample: _Optional[int] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "dim", "metric", "index_params", "stored_vector", "state", "vector_count", "operation_id", "error", "ram", "disk_bytes", "mutable", "writes", "residency")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    STORED_VECTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RAM_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MUTABLE_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: Metric
    index_params: IndexParams
    stored_vector: StoredVector
    state: CollectionState
    vector_count: int
    operation_id: str
    error: str
    ram: RamUsage
    disk_bytes: int
    mutable: bool
    writes: WriteState
    residency: Residency
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[_Union[Metric, str]] = ..., index_params: _Optional[_Union[IndexParams, _Mapping]] = ..., stored_vector: _Optional[_Union[StoredVector, str]] = ..., state: _Optional[_Union[CollectionState, str]] = ..., vector_count: _Optional[int] = ..., operation_id: _Optional[str] = ..., error: _Optional[str] = ..., ram: _Optional[_Union[RamUsage, _Mapping]] = ..., disk_bytes: _Optional[int] = ..., mutable: _Optional[bool] = ..., writes: _Optional[_Union[WriteState, _Mapping]] = ..., residency: _Optional[_Union[Residency, str]] = ...) -> None: ...

class WriteState(_message.Message):
    __slots__ = ("fresh_vectors", "segments", "last_lsn", "durable_lsn", "wal_bytes", "flushing", "flushes", "last_flush_error")
    FRESH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    DURABLE_LSN_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FLUSHING_FIELD_NUMBER: _ClassVar[int]
    FLUSHES_FIELD_NUMBER: _ClassVar[int]
    LAST_FLUSH_ERROR_FIELD_NUMBER: _ClassVar[int]
    fresh_vectors: int
    segments: int
    last_lsn: int
    durable_lsn: int
    wal_bytes: int
    flushing: bool
    flushes: int
    last_flush_error: str
    def __init__(self, fresh_vectors: _Optional[int] = ..., segments: _Optional[int] = ..., last_lsn: _Optional[int] = ..., durable_lsn: _Optional[int] = ..., wal_bytes: _Optional[int] = ..., flushing: _Optional[bool] = ..., flushes: _Optional[int] = ..., last_flush_error: _Optional[str] = ...) -> None: ...

class RamUsage(_message.Message):
    __slots__ = ("pq_codes", "pq_pivots", "nav_tier", "cache", "id_map", "total", "fresh_index")
    PQ_CODES_FIELD_NUMBER: _ClassVar[int]
    PQ_PIVOTS_FIELD_NUMBER: _ClassVar[int]
    NAV_TIER_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    ID_MAP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRESH_INDEX_FIELD_NUMBER: _ClassVar[int]
    pq_codes: int
    pq_pivots: int
    nav_tier: int
    cache: int
    id_map: int
    total: int
    fresh_index: int
    def __init__(self, pq_codes: _Optional[int] = ..., pq_pivots: _Optional[int] = ..., nav_tier: _Optional[int] = ..., cache: _Optional[int] = ..., id_map: _Optional[int] = ..., total: _Optional[int] = ..., fresh_index: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "dim", "metric", "index_params", "stored_vector", "mutable", "residency")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    STORED_VECTOR_FIELD_NUMBER: _ClassVar[int]
    MUTABLE_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: Metric
    index_params: IndexParams
    stored_vector: StoredVector
    mutable: bool
    residency: Residency
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[_Union[Metric, str]] = ..., index_params: _Optional[_Union[IndexParams, _Mapping]] = ..., stored_vector: _Optional[_Union[StoredVector, str]] = ..., mutable: _Optional[bool] = ..., residency: _Optional[_Union[Residency, str]] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DescribeCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BuildIndexRequest(_message.Message):
    __slots__ = ("collection", "source_path", "ids_path", "threads", "first_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    IDS_PATH_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    FIRST_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    source_path: str
    ids_path: str
    threads: int
    first_id: int
    def __init__(self, collection: _Optional[str] = ..., source_path: _Optional[str] = ..., ids_path: _Optional[str] = ..., threads: _Optional[int] = ..., first_id: _Optional[int] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("id", "collection", "state", "stage", "progress", "elapsed_seconds", "eta_seconds", "error", "vector_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    collection: str
    state: OperationState
    stage: str
    progress: float
    elapsed_seconds: float
    eta_seconds: float
    error: str
    vector_count: int
    def __init__(self, id: _Optional[str] = ..., collection: _Optional[str] = ..., state: _Optional[_Union[OperationState, str]] = ..., stage: _Optional[str] = ..., progress: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., error: _Optional[str] = ..., vector_count: _Optional[int] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SearchParams(_message.Message):
    __slots__ = ("k", "l", "w")
    K_FIELD_NUMBER: _ClassVar[int]
    L_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    k: int
    l: int
    w: int
    def __init__(self, k: _Optional[int] = ..., l: _Optional[int] = ..., w: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "vector", "params", "with_payload")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WITH_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vector: _containers.RepeatedScalarFieldContainer[float]
    params: SearchParams
    with_payload: bool
    def __init__(self, collection: _Optional[str] = ..., vector: _Optional[_Iterable[float]] = ..., params: _Optional[_Union[SearchParams, _Mapping]] = ..., with_payload: _Optional[bool] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("id", "distance", "payload", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    distance: float
    payload: bytes
    score: float
    def __init__(self, id: _Optional[int] = ..., distance: _Optional[float] = ..., payload: _Optional[bytes] = ..., score: _Optional[float] = ...) -> None: ...

class QueryStats(_message.Message):
    __slots__ = ("ios", "hops", "cache_hits", "shard_micros", "queue_micros", "handler_micros", "read_wait_micros", "reads_waited")
    IOS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    SHARD_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MICROS_FIELD_NUMBER: _ClassVar[int]
    HANDLER_MICROS_FIELD_NUMBER: _ClassVar[int]
    READ_WAIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    READS_WAITED_FIELD_NUMBER: _ClassVar[int]
    ios: int
    hops: int
    cache_hits: int
    shard_micros: float
    queue_micros: float
    handler_micros: float
    read_wait_micros: float
    reads_waited: int
    def __init__(self, ios: _Optional[int] = ..., hops: _Optional[int] = ..., cache_hits: _Optional[int] = ..., shard_micros: _Optional[float] = ..., queue_micros: _Optional[float] = ..., handler_micros: _Optional[float] = ..., read_wait_micros: _Optional[float] = ..., reads_waited: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("neighbors", "stats")
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    stats: QueryStats
    def __init__(self, neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("collection", "vectors", "params", "with_payload")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WITH_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vectors: _containers.RepeatedScalarFieldContainer[float]
    params: SearchParams
    with_payload: bool
    def __init__(self, collection: _Optional[str] = ..., vectors: _Optional[_Iterable[float]] = ..., params: _Optional[_Union[SearchParams, _Mapping]] = ..., with_payload: _Optional[bool] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("id", "vector", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: int
    vector: _containers.RepeatedScalarFieldContainer[float]
    payload: bytes
    def __init__(self, id: _Optional[int] = ..., vector: _Optional[_Iterable[float]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("records", "missing_ids")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    missing_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("id", "vector", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: int
    vector: _containers.RepeatedScalarFieldContainer[float]
    payload: bytes
    def __init__(self, id: _Optional[int] = ..., vector: _Optional[_Iterable[float]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "points")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, collection: _Optional[str] = ..., points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("count", "last_lsn")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    count: int
    last_lsn: int
    def __init__(self, count: _Optional[int] = ..., last_lsn: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStats(_message.Message):
    __slots__ = ("shard", "queries", "queue_depth", "in_flight", "expired", "rejected")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    shard: int
    queries: int
    queue_depth: int
    in_flight: int
    expired: int
    rejected: int
    def __init__(self, shard: _Optional[int] = ..., queries: _Optional[int] = ..., queue_depth: _Optional[int] = ..., in_flight: _Optional[int] = ..., expired: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("version", "uptime_seconds", "shards", "collections", "ram", "memory_budget_bytes", "rss_bytes", "latency_p50_us", "latency_p99_us", "latency_p999_us", "mean_ios", "cache_hit_rate")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    RAM_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_US_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_US_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P999_US_FIELD_NUMBER: _ClassVar[int]
    MEAN_IOS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_seconds: float
    shards: _containers.RepeatedCompositeFieldContainer[ShardStats]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    ram: RamUsage
    memory_budget_bytes: int
    rss_bytes: int
    latency_p50_us: float
    latency_p99_us: float
    latency_p999_us: float
    mean_ios: float
    cache_hit_rate: float
    def __init__(self, version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., shards: _Optional[_Iterable[_Union[ShardStats, _Mapping]]] = ..., collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., ram: _Optional[_Union[RamUsage, _Mapping]] = ..., memory_budget_bytes: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., latency_p50_us: _Optional[float] = ..., latency_p99_us: _Optional[float] = ..., latency_p999_us: _Optional[float] = ..., mean_ios: _Optional[float] = ..., cache_hit_rate: _Optional[float] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("collection", "out_dir")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    OUT_DIR_FIELD_NUMBER: _ClassVar[int]
    collection: str
    out_dir: str
    def __init__(self, collection: _Optional[str] = ..., out_dir: _Optional[str] = ...) -> None: ...

class SnapshotInfo(_message.Message):
    __slots__ = ("dir", "collection", "lsn", "checkpoint_lsn", "files", "bytes", "linked_files", "copied_files", "seconds", "copy_reason", "leftovers_removed", "dim", "metric", "created_unix_ms")
    DIR_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_LSN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LINKED_FILES_FIELD_NUMBER: _ClassVar[int]
    COPIED_FILES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    COPY_REASON_FIELD_NUMBER: _ClassVar[int]
    LEFTOVERS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    dir: str
    collection: str
    lsn: int
    checkpoint_lsn: int
    files: int
    bytes: int
    linked_files: int
    copied_files: int
    seconds: float
    copy_reason: str
    leftovers_removed: _containers.RepeatedScalarFieldContainer[str]
    dim: int
    metric: Metric
    created_unix_ms: int
    def __init__(self, dir: _Optional[str] = ..., collection: _Optional[str] = ..., lsn: _Optional[int] = ..., checkpoint_lsn: _Optional[int] = ..., files: _Optional[int] = ..., bytes: _Optional[int] = ..., linked_files: _Optional[int] = ..., copied_files: _Optional[int] = ..., seconds: _Optional[float] = ..., copy_reason: _Optional[str] = ..., leftovers_removed: _Optional[_Iterable[str]] = ..., dim: _Optional[int] = ..., metric: _Optional[_Union[Metric, str]] = ..., created_unix_ms: _Optional[int] = ...) -> None: ...

class VerifySnapshotRequest(_message.Message):
    __slots__ = ("dir",)
    DIR_FIELD_NUMBER: _ClassVar[int]
    dir: str
    def __init__(self, dir: _Optional[str] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("dir", "collection")
    DIR_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    dir: str
    collection: str
    def __init__(self, dir: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...
