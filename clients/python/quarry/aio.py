"""The asyncio client (grpc.aio): the same methods as :class:`quarry.Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence, Type, TypeVar, Union

import grpc
import grpc.aio

from . import _base as B
from . import _wire
from ._proto import quarry_pb2 as pb
from .client import BulkProgress, OperationProgress
from .errors import OperationFailed, error_from_rpc
from .types import (
    BatchSearchResult,
    Collection,
    GetResult,
    IndexParams,
    Metric,
    Operation,
    Residency,
    SearchResult,
    SnapshotInfo,
    Stats,
    StoredVector,
    WriteResult,
)

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """An asyncio connection to one quarryd; arguments as :class:`quarry.Client`.

    Create it inside a running event loop, use it as ``async with`` or
    ``await client.close()``. Every method is a coroutine with the same
    arguments and results as the sync client's.
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        token: Optional[str] = None,
        tls: Optional[bool] = None,
        root_certificates: B.PathOrBytes = None,
        private_key: B.PathOrBytes = None,
        certificate_chain: B.PathOrBytes = None,
        server_name: Optional[str] = None,
        timeout: Optional[float] = B.DEFAULT_TIMEOUT,
    ) -> None:
        target, use_tls = B.resolve_target(address, tls)
        self.target: str = target
        """The gRPC target the channel connects to."""
        self.tls: bool = use_tls
        """Whether the channel uses TLS."""
        self.timeout: Optional[float] = timeout
        """Default deadline of unary calls, seconds."""
        self._metadata = B.metadata(token)
        opts = B.channel_options(target, server_name)
        if use_tls:
            creds = B.credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.aio.secure_channel(target, creds, options=opts)
        else:
            if root_certificates or private_key or certificate_chain:
                raise ValueError("certificates given but TLS is off: use https:// or tls=True")
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        self._m = B.Methods(self._channel)
        self._dims: B.Dims = {}

    # ------------------------------------------------------------ plumbing

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying ``grpc.aio.Channel``."""
        return self._channel

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: object, timeout: Optional[float]) -> T:
        """Every RPC goes through here: deadline, token, and status to QuarryError."""
        try:
            return await method(request, timeout=B.bounded_timeout(timeout, self.timeout), metadata=self._metadata)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def _remember(self, c: Collection) -> Collection:
        self._dims[c.name] = c.dim
        return c

    async def _check_dim(self, collection: str, dim: int) -> None:
        """As :meth:`quarry.Client._check_dim`."""
        known = self._dims.get(collection)
        if known is None or known == dim:
            return
        try:
            known = (await self.describe_collection(collection)).dim
        except Exception:
            self._dims.pop(collection, None)
            return
        if known != dim:
            raise ValueError(f"collection {collection!r} has dimension {known}; got vectors of dimension {dim}")

    # --------------------------------------------------------- collections

    async def create_collection(
        self,
        name: str,
        dim: int,
        metric: Union[Metric, str] = Metric.L2,
        *,
        max_degree: int = 0,
        build_list_size: int = 0,
        alpha: float = 0.0,
        pq_bytes: int = 0,
        opq: bool = False,
        nav_sample: int = 0,
        stored_vector: Union[StoredVector, str, None] = None,
        residency: Union[Residency, str, None] = None,
        timeout: Optional[float] = None,
    ) -> Collection:
        """Create an empty collection; see :meth:`quarry.Client.create_collection`."""
        req = B.create_request(
            name, dim, metric, IndexParams(max_degree, build_list_size, alpha, pq_bytes, opq, nav_sample),
            stored_vector, residency,
        )
        return self._remember(Collection._from_pb(await self._call(self._m.create_collection, req, timeout)))

    async def list_collections(self, *, timeout: Optional[float] = None) -> list[Collection]:
        """Every collection, sorted by name."""
        r = await self._call(self._m.list_collections, pb.ListCollectionsRequest(), timeout)
        return [self._remember(Collection._from_pb(c)) for c in r.collections]

    async def describe_collection(self, name: str, *, timeout: Optional[float] = None) -> Collection:
        """One collection. Raises NotFound if unknown."""
        B.check_name(name)
        r = await self._call(self._m.describe_collection, pb.DescribeCollectionRequest(name=name), timeout)
        return self._remember(Collection._from_pb(r))

    async def drop_collection(self, name: str, *, timeout: Optional[float] = None) -> None:
        """Drop a collection and its files. Raises NotFound if unknown."""
        B.check_name(name)
        await self._call(self._m.drop_collection, pb.DropCollectionRequest(name=name), timeout)
        self._dims.pop(name, None)

    # ---------------------------------------------------------- operations

    async def build_index(
        self,
        collection: str,
        source_path: str,
        *,
        ids_path: Optional[str] = None,
        first_id: int = 0,
        threads: int = 0,
        wait: bool = False,
        progress: Optional[OperationProgress] = None,
        poll_interval: float = 0.5,
        wait_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> Operation:
        """Bulk-load a file on the server; see :meth:`quarry.Client.build_index`."""
        req = pb.BuildIndexRequest(
            collection=collection, source_path=str(source_path), ids_path=str(ids_path or ""),
            threads=threads, first_id=first_id,
        )
        op = Operation._from_pb(await self._call(self._m.build_index, req, timeout))
        if not wait:
            return op
        return await self._finish(op, progress, poll_interval, wait_timeout)

    async def _finish(
        self, op: Operation, progress: Optional[OperationProgress], poll_interval: float, wait_timeout: Optional[float]
    ) -> Operation:
        end = await self.wait_operation(op.id, progress=progress, poll_interval=poll_interval, timeout=wait_timeout)
        if not end.succeeded:
            raise OperationFailed(end)
        return end

    async def get_operation(self, operation_id: str, *, timeout: Optional[float] = None) -> Operation:
        """A build or compaction as it stands. Raises NotFound if unknown."""
        r = await self._call(self._m.get_operation, pb.GetOperationRequest(id=operation_id), timeout)
        return Operation._from_pb(r)

    async def cancel_operation(
        self, operation_id: str, *, wait: bool = False, poll_interval: float = 0.2, timeout: Optional[float] = None
    ) -> Operation:
        """Ask a running operation to stop; see :meth:`quarry.Client.cancel_operation`."""
        r = await self._call(self._m.cancel_operation, pb.CancelOperationRequest(id=operation_id), timeout)
        op = Operation._from_pb(r)
        if wait and op.running:
            op = await self.wait_operation(operation_id, poll_interval=poll_interval)
        return op

    async def wait_operation(
        self,
        operation_id: str,
        *,
        progress: Optional[OperationProgress] = None,
        poll_interval: float = 0.5,
        timeout: Optional[float] = None,
    ) -> Operation:
        """Poll until the operation has ended and return it; see :meth:`quarry.Client.wait_operation`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            op = await self.get_operation(operation_id)
            if progress is not None:
                progress(op)
            if not op.running:
                return op
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"operation {operation_id} still {op.stage} ({op.progress:.0%}) after {timeout} s")
            await asyncio.sleep(poll_interval)

    async def compact(
        self,
        collection: str,
        *,
        wait: bool = False,
        progress: Optional[OperationProgress] = None,
        poll_interval: float = 0.5,
        wait_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> Operation:
        """Merge a collection into one segment; see :meth:`quarry.Client.compact`."""
        op = Operation._from_pb(await self._call(self._m.compact, pb.CompactRequest(collection=collection), timeout))
        if not wait:
            return op
        return await self._finish(op, progress, poll_interval, wait_timeout)

    async def create_snapshot(self, collection: str, out_dir: str, *, timeout: Optional[float] = None) -> SnapshotInfo:
        """Snapshot ``collection`` into ``out_dir``, a new directory on the
        server's machine (absolute, outside its data directory), while it
        keeps serving: the segment files hard-linked, the log copied up to
        one LSN. Copy the directory off the machine for a backup."""
        req = pb.CreateSnapshotRequest(collection=collection, out_dir=out_dir)
        return SnapshotInfo._from_pb(await self._call(self._m.create_snapshot, req, timeout))

    async def verify_snapshot(self, dir: str, *, timeout: Optional[float] = None) -> SnapshotInfo:
        """Check every file of the snapshot at ``dir`` (on the server's
        machine); raises naming the first file at fault."""
        return SnapshotInfo._from_pb(await self._call(self._m.verify_snapshot, pb.VerifySnapshotRequest(dir=dir), timeout))

    async def restore_snapshot(self, dir: str, collection: str, *, timeout: Optional[float] = None) -> Collection:
        """Restore the snapshot at ``dir`` as a new collection named
        ``collection``: exactly the writes up to the snapshot's LSN."""
        req = pb.RestoreSnapshotRequest(dir=dir, collection=collection)
        return Collection._from_pb(await self._call(self._m.restore_snapshot, req, timeout))

    async def stats(self, *, timeout: Optional[float] = None) -> Stats:
        """Server-wide statistics."""
        return Stats._from_pb(await self._call(self._m.stats, pb.StatsRequest(), timeout))

    async def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """The grpc.health.v1 status string ("SERVING", ...)."""
        data = await self._call(self._m.health, _wire.encode_health_check(service), timeout)
        return B.HEALTH_STATUS.get(_wire.decode_health_status(data), "UNKNOWN")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the health check says SERVING; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                status = await self.health(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                if status == "SERVING":
                    return
                last = status
            except Exception as e:
                last = e
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.target} not serving after {timeout} s (last: {last})")
            await asyncio.sleep(0.05)

    # --------------------------------------------------------------- writes

    async def upsert(
        self,
        collection: str,
        ids: B.ArrayLike,
        vectors: B.ArrayLike,
        payloads: Optional[Sequence[Optional[bytes]]] = None,
        *,
        validate: bool = True,
        timeout: Optional[float] = None,
    ) -> WriteResult:
        """Insert or replace points in one call; see :meth:`quarry.Client.upsert`."""
        name = B.check_name(collection)
        v = B.as_vectors(vectors, check_finite=validate)
        i = B.as_ids(ids, len(v))
        p = B.as_payloads(payloads, len(v))
        if validate:
            await self._check_dim(collection, v.shape[1])
        req = _wire.encode_upsert(name, i.tolist(), v, p)
        return WriteResult._from_pb(await self._call(self._m.upsert, req, timeout))

    async def delete(self, collection: str, ids: B.ArrayLike, *, timeout: Optional[float] = None) -> WriteResult:
        """Remove points by id (an unknown id is not an error)."""
        B.check_name(collection)
        req = pb.DeleteRequest(collection=collection, ids=B.as_ids(ids).tolist())
        return WriteResult._from_pb(await self._call(self._m.delete, req, timeout))

    async def bulk_upsert(
        self,
        collection: str,
        ids: B.ArrayLike,
        vectors: B.ArrayLike,
        payloads: Optional[Sequence[Optional[bytes]]] = None,
        *,
        batch: int = B.DEFAULT_BULK_BATCH,
        max_message_bytes: int = B.DEFAULT_BULK_BYTES,
        progress: Optional[BulkProgress] = None,
        validate: bool = True,
        timeout: Optional[float] = None,
    ) -> WriteResult:
        """Upsert many points over one BulkUpsert stream fed by an async
        generator (each message is encoded when gRPC asks for it); see
        :meth:`quarry.Client.bulk_upsert`. ``progress`` runs on the event loop."""
        name = B.check_name(collection)
        v = B.as_vectors(vectors, check_finite=validate)
        i = B.as_ids(ids, len(v))
        p = B.as_payloads(payloads, len(v))
        if validate:
            await self._check_dim(collection, v.shape[1])
        chunks = B.upsert_chunks(name, i, v, p, batch, max_message_bytes)
        id_list = i.tolist()
        total = len(v)
        failure: list[BaseException] = []

        async def messages() -> AsyncIterator[bytes]:
            try:
                for start, stop in chunks:
                    yield _wire.encode_upsert(name, id_list, v, p, start, stop)
                    if progress is not None:
                        progress(stop, total)
            except Exception as e:
                failure.append(e)
                raise

        call: Any = self._m.bulk_upsert(messages(), timeout=timeout, metadata=self._metadata)
        try:
            r = await call
        except grpc.RpcError as e:
            if failure:
                raise failure[0] from e
            raise error_from_rpc(e) from e
        except asyncio.CancelledError:
            # grpc.aio cancels the call when the request iterator raises.
            if failure:
                raise failure[0] from None
            raise
        return WriteResult._from_pb(r)

    # ---------------------------------------------------------------- reads

    async def search(
        self,
        collection: str,
        vector: B.ArrayLike,
        k: int = 10,
        *,
        l: Optional[int] = None,
        w: Optional[int] = None,
        with_payload: bool = False,
        validate: bool = True,
        timeout: Optional[float] = None,
    ) -> SearchResult:
        """The ``k`` nearest neighbours of one vector; see :meth:`quarry.Client.search`."""
        name = B.check_name(collection)
        q = B.as_query(vector, validate)
        kk, ll, ww = B.search_knobs(k, l, w)
        if validate:
            await self._check_dim(collection, q.shape[1])
        r = await self._call(self._m.search, _wire.encode_search(name, q, kk, ll, ww, with_payload), timeout)
        return SearchResult._from_pb(r, with_payload)

    async def search_batch(
        self,
        collection: str,
        vectors: B.ArrayLike,
        k: int = 10,
        *,
        l: Optional[int] = None,
        w: Optional[int] = None,
        with_payload: bool = False,
        batch: int = B.DEFAULT_SEARCH_BATCH,
        validate: bool = True,
        timeout: Optional[float] = None,
    ) -> BatchSearchResult:
        """The neighbours of each row of ``vectors``; see :meth:`quarry.Client.search_batch`."""
        name = B.check_name(collection)
        v = B.as_vectors(vectors, check_finite=validate)
        kk, ll, ww = B.search_knobs(k, l, w)
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if validate:
            await self._check_dim(collection, v.shape[1])
        out: list[SearchResult] = []
        for s in range(0, len(v), batch):
            req = _wire.encode_search(name, v[s : s + batch], kk, ll, ww, with_payload)
            r = await self._call(self._m.search_batch, req, timeout)
            out.extend(SearchResult._from_pb(x, with_payload) for x in r.results)
        return BatchSearchResult(out, kk)

    async def get(
        self, collection: str, ids: B.ArrayLike, *, with_vector: bool = True, timeout: Optional[float] = None
    ) -> GetResult:
        """Points by id, and ``missing_ids``; see :meth:`quarry.Client.get`."""
        B.check_name(collection)
        req = pb.GetRequest(collection=collection, ids=B.as_ids(ids).tolist())
        return GetResult._from_pb(await self._call(self._m.get, req, timeout), with_vector)
