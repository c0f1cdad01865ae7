"""Python client of Quarry, a vector-search service (quarryd, gRPC).

    import numpy as np, quarry

    with quarry.Client("127.0.0.1:7700") as c:
        c.create_collection("docs", dim=384, metric="cosine")
        c.bulk_upsert("docs", np.arange(n), vectors)          # (n, 384) float32
        hits = c.search("docs", vectors[0], k=10)
        hits.ids, hits.scores                                   # numpy arrays

:class:`Client` is synchronous, :class:`AsyncClient` the asyncio twin.
Errors from the server raise :class:`QuarryError` subclasses.
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OperationFailed,
    PermissionDenied,
    QuarryError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .types import (
    PAD_ID,
    BatchSearchResult,
    Collection,
    CollectionState,
    GetResult,
    IndexParams,
    Metric,
    Operation,
    OperationState,
    QueryStats,
    RamUsage,
    Record,
    Residency,
    SearchResult,
    ShardStats,
    SnapshotInfo,
    Stats,
    StoredVector,
    WriteResult,
    WriteState,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "QuarryError",
    "NotFound",
    "InvalidArgument",
    "AlreadyExists",
    "FailedPrecondition",
    "ResourceExhausted",
    "Unauthenticated",
    "PermissionDenied",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
    "OperationFailed",
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
    "PAD_ID",
    "Record",
    "GetResult",
    "WriteResult",
    "ShardStats",
    "SnapshotInfo",
    "Stats",
]
