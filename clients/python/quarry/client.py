"""The synchronous client."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Callable, Iterator, Optional, Sequence, Type, TypeVar, Union

import grpc
import numpy as np

from . import _base as B
from . import _wire
from ._proto import quarry_pb2 as pb
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

__all__ = ["Client"]

T = TypeVar("T")

#: ``progress(rows_sent, rows_total)``, called as each BulkUpsert message is handed to gRPC.
BulkProgress = Callable[[int, int], None]
#: ``progress(operation)``, called at every poll of a waited-on operation.
OperationProgress = Callable[[Operation], None]


class Client:
    """A synchronous connection to one quarryd.

    Args:
        address: ``host:port``, ``http://host:port``, ``https://host:port``
            or ``unix:/path``. Default: ``$QUARRY_SERVER``, else
            ``127.0.0.1:7700``.
        token: bearer token sent as ``authorization: Bearer <token>`` on
            every call. Default: ``$QUARRY_TOKEN``; ``""`` sends none.
        tls: use TLS (implied by ``https://``).
        root_certificates: PEM bytes or path of the CA to trust (default:
            the system's roots).
        private_key, certificate_chain: PEM bytes or paths of a client
            certificate, for servers that require one.
        server_name: the name to expect in the server's certificate when it
            differs from the address's host.
        timeout: default deadline of each unary call, seconds (``None``: no
            deadline). Each method also takes ``timeout=``.

    Use as a context manager or call :meth:`close`. A client is safe to use
    from several threads.
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
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            if root_certificates or private_key or certificate_chain:
                raise ValueError("certificates given but TLS is off: use https:// or tls=True")
            self._channel = grpc.insecure_channel(target, options=opts)
        self._m = B.Methods(self._channel)
        self._dims: B.Dims = {}
        self._dims_lock = threading.Lock()

    # ------------------------------------------------------------ plumbing

    @property
    def channel(self) -> grpc.Channel:
        """The underlying ``grpc.Channel`` (for calls this client does not wrap)."""
        return self._channel

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: object, timeout: Optional[float]) -> T:
        """Every RPC goes through here: deadline, token, and status to QuarryError."""
        try:
            return method(request, timeout=B.bounded_timeout(timeout, self.timeout), metadata=self._metadata)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def _remember(self, c: Collection) -> Collection:
        with self._dims_lock:
            self._dims[c.name] = c.dim
        return c

    def _check_dim(self, collection: str, dim: int) -> None:
        """Refuse a dimension that differs from the collection's, when known.
        A mismatch is confirmed with a fresh Describe (the cached one may be
        stale) before raising."""
        known = self._dims.get(collection)
        if known is None or known == dim:
            return
        try:
            known = self.describe_collection(collection).dim
        except Exception:  # the server will answer for itself
            with self._dims_lock:
                self._dims.pop(collection, None)
            return
        if known != dim:
            raise ValueError(f"collection {collection!r} has dimension {known}; got vectors of dimension {dim}")

    # --------------------------------------------------------- collections

    def create_collection(
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
        """Create an empty collection (ready at once: fill it with upserts or
        :meth:`build_index`).

        Args:
            name: 1..=64 characters from ``[A-Za-z0-9_-]``.
            dim: dimension of every vector (1..=4096).
            metric: ``"l2"``, ``"ip"`` or ``"cosine"``.
            max_degree: graph out-degree R (0: server default 64).
            build_list_size: build L (0: default 100).
            alpha: RobustPrune alpha, 1.0..=2.0 (0: default 1.2).
            pq_bytes: PQ bytes per vector (0: default min(dim/4, 128)).
            opq: learn an OPQ rotation before PQ.
            nav_sample: navigation-tier sample size (0: 1 % of the vectors).
            stored_vector: ``"f32"``, ``"f16"`` or ``"i8"`` (None: the server's choice).
            residency: ``"disk"`` or ``"ram"`` (None: disk). Fixed at create.

        Raises:
            AlreadyExists: the name is taken. InvalidArgument: bad parameters.
        """
        req = B.create_request(
            name, dim, metric, IndexParams(max_degree, build_list_size, alpha, pq_bytes, opq, nav_sample),
            stored_vector, residency,
        )
        return self._remember(Collection._from_pb(self._call(self._m.create_collection, req, timeout)))

    def list_collections(self, *, timeout: Optional[float] = None) -> list[Collection]:
        """Every collection, sorted by name."""
        r = self._call(self._m.list_collections, pb.ListCollectionsRequest(), timeout)
        return [self._remember(Collection._from_pb(c)) for c in r.collections]

    def describe_collection(self, name: str, *, timeout: Optional[float] = None) -> Collection:
        """One collection. Raises NotFound if unknown."""
        B.check_name(name)
        r = self._call(self._m.describe_collection, pb.DescribeCollectionRequest(name=name), timeout)
        return self._remember(Collection._from_pb(r))

    def drop_collection(self, name: str, *, timeout: Optional[float] = None) -> None:
        """Drop a collection and delete its files (a running build of it is
        cancelled first). Raises NotFound if unknown."""
        B.check_name(name)
        self._call(self._m.drop_collection, pb.DropCollectionRequest(name=name), timeout)
        with self._dims_lock:
            self._dims.pop(name, None)

    # ---------------------------------------------------------- operations

    def build_index(
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
        """Bulk-load a vector file that is on the server's filesystem
        (.fbin, .u8bin, .i8bin, .fvecs, .bvecs or .npy) into ``collection``
        as a new disk segment, in the background.

        Args:
            source_path: path as the server sees it.
            ids_path: optional file of one little-endian u64 id per vector;
                without it ids are ``first_id + row``.
            threads: build threads (0: the server's setting).
            wait: poll until the operation ends and return it; raise
                :class:`OperationFailed` if it ended FAILED or CANCELLED.
            progress: called with the :class:`Operation` at every poll (``wait``).
            poll_interval: seconds between polls.
            wait_timeout: give up waiting after this many seconds
                (:class:`TimeoutError`; the build goes on).

        Returns:
            The operation (as started, or as ended with ``wait``).
        """
        req = pb.BuildIndexRequest(
            collection=collection, source_path=str(source_path), ids_path=str(ids_path or ""),
            threads=threads, first_id=first_id,
        )
        op = Operation._from_pb(self._call(self._m.build_index, req, timeout))
        if not wait:
            return op
        return self._finish(op, progress, poll_interval, wait_timeout)

    def _finish(
        self, op: Operation, progress: Optional[OperationProgress], poll_interval: float, wait_timeout: Optional[float]
    ) -> Operation:
        end = self.wait_operation(op.id, progress=progress, poll_interval=poll_interval, timeout=wait_timeout)
        if not end.succeeded:
            raise OperationFailed(end)
        return end

    def get_operation(self, operation_id: str, *, timeout: Optional[float] = None) -> Operation:
        """A build or compaction as it stands (or as it ended). Raises NotFound if unknown."""
        return Operation._from_pb(self._call(self._m.get_operation, pb.GetOperationRequest(id=operation_id), timeout))

    def cancel_operation(
        self, operation_id: str, *, wait: bool = False, poll_interval: float = 0.2, timeout: Optional[float] = None
    ) -> Operation:
        """Ask a running build or compaction to stop. The answer says RUNNING;
        it turns CANCELLED at the work's next check. With ``wait``, poll
        until it has ended and return that.

        Raises:
            NotFound: unknown id. FailedPrecondition: it has already ended.
        """
        op = Operation._from_pb(
            self._call(self._m.cancel_operation, pb.CancelOperationRequest(id=operation_id), timeout)
        )
        if wait and op.running:
            op = self.wait_operation(operation_id, poll_interval=poll_interval)
        return op

    def wait_operation(
        self,
        operation_id: str,
        *,
        progress: Optional[OperationProgress] = None,
        poll_interval: float = 0.5,
        timeout: Optional[float] = None,
    ) -> Operation:
        """Poll GetOperation until the operation is no longer RUNNING and
        return it as it ended (DONE, FAILED or CANCELLED: check
        ``.state``; this does not raise for FAILED).

        Args:
            progress: called with the :class:`Operation` at every poll.
            poll_interval: seconds between polls.
            timeout: seconds to wait at most (None: no limit); then
                :class:`TimeoutError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            op = self.get_operation(operation_id)
            if progress is not None:
                progress(op)
            if not op.running:
                return op
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"operation {operation_id} still {op.stage} ({op.progress:.0%}) after {timeout} s")
            time.sleep(poll_interval)

    def compact(
        self,
        collection: str,
        *,
        wait: bool = False,
        progress: Optional[OperationProgress] = None,
        poll_interval: float = 0.5,
        wait_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> Operation:
        """Merge the collection's fresh index and every disk segment into one
        segment, dropping deleted vectors, in the background. ``wait`` and
        ``progress`` as in :meth:`build_index`."""
        op = Operation._from_pb(self._call(self._m.compact, pb.CompactRequest(collection=collection), timeout))
        if not wait:
            return op
        return self._finish(op, progress, poll_interval, wait_timeout)

    def create_snapshot(self, collection: str, out_dir: str, *, timeout: Optional[float] = None) -> SnapshotInfo:
        """Snapshot ``collection`` into ``out_dir``, a new directory on the
        server's machine (absolute, outside its data directory), while it
        keeps serving: the segment files hard-linked, the log copied up to
        one LSN. Copy the directory off the machine for a backup."""
        req = pb.CreateSnapshotRequest(collection=collection, out_dir=out_dir)
        return SnapshotInfo._from_pb(self._call(self._m.create_snapshot, req, timeout))

    def verify_snapshot(self, dir: str, *, timeout: Optional[float] = None) -> SnapshotInfo:
        """Check every file of the snapshot at ``dir`` (on the server's
        machine); raises naming the first file at fault."""
        return SnapshotInfo._from_pb(self._call(self._m.verify_snapshot, pb.VerifySnapshotRequest(dir=dir), timeout))

    def restore_snapshot(self, dir: str, collection: str, *, timeout: Optional[float] = None) -> Collection:
        """Restore the snapshot at ``dir`` as a new collection named
        ``collection``: exactly the writes up to the snapshot's LSN."""
        req = pb.RestoreSnapshotRequest(dir=dir, collection=collection)
        return Collection._from_pb(self._call(self._m.restore_snapshot, req, timeout))

    def stats(self, *, timeout: Optional[float] = None) -> Stats:
        """Server-wide statistics."""
        return Stats._from_pb(self._call(self._m.stats, pb.StatsRequest(), timeout))

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """The grpc.health.v1 status: "SERVING", "NOT_SERVING", "UNKNOWN" or
        "SERVICE_UNKNOWN" (needs no token)."""
        data = self._call(self._m.health, _wire.encode_health_check(service), timeout)
        return B.HEALTH_STATUS.get(_wire.decode_health_status(data), "UNKNOWN")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server answers the health check with SERVING.
        Raises TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                status = self.health(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                if status == "SERVING":
                    return
                last = status
            except Exception as e:  # not up yet
                last = e
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.target} not serving after {timeout} s (last: {last})")
            time.sleep(0.05)

    # --------------------------------------------------------------- writes

    def upsert(
        self,
        collection: str,
        ids: B.ArrayLike,
        vectors: B.ArrayLike,
        payloads: Optional[Sequence[Optional[bytes]]] = None,
        *,
        validate: bool = True,
        timeout: Optional[float] = None,
    ) -> WriteResult:
        """Insert or replace points in one Upsert call (validated whole by the
        server: one bad point refuses the batch). At most the server's
        max_batch points (1,024 by default); use :meth:`bulk_upsert` for more.

        Args:
            ids: n external ids (uint64).
            vectors: (n, dim) array; float32 is sent as is, other numeric
                dtypes are converted (copied) to float32.
            payloads: optional n bytes objects (None or b"" for none).
            validate: check for NaN/Inf and the dimension before sending.

        Raises:
            ValueError: NaN/Inf, wrong shape or dimension (client-side).
            InvalidArgument, NotFound, ResourceExhausted: from the server.
        """
        name = B.check_name(collection)
        v = B.as_vectors(vectors, check_finite=validate)
        i = B.as_ids(ids, len(v))
        p = B.as_payloads(payloads, len(v))
        if validate:
            self._check_dim(collection, v.shape[1])
        req = _wire.encode_upsert(name, i.tolist(), v, p)
        return WriteResult._from_pb(self._call(self._m.upsert, req, timeout))

    def delete(self, collection: str, ids: B.ArrayLike, *, timeout: Optional[float] = None) -> WriteResult:
        """Remove points by id (an unknown id is not an error)."""
        B.check_name(collection)
        req = pb.DeleteRequest(collection=collection, ids=B.as_ids(ids).tolist())
        return WriteResult._from_pb(self._call(self._m.delete, req, timeout))

    def bulk_upsert(
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
        """Upsert many points over one BulkUpsert stream.

        The rows are cut into messages of at most ``batch`` rows and
        ``max_message_bytes`` bytes (keep both under the server's max_batch
        and max_message_bytes). Messages are encoded lazily, one at a time,
        as gRPC has room to send them: the server acknowledges each before
        reading the next, so memory stays bounded and a fast client is
        paced by the server.

        Args:
            progress: ``progress(rows_sent, rows_total)``, called from
                gRPC's sending thread as each message is handed over.
            timeout: deadline of the whole stream (None: none).

        Returns:
            The count of points written. On failure the error's message says
            how many points of the stream were written before it.
        """
        name = B.check_name(collection)
        v = B.as_vectors(vectors, check_finite=validate)
        i = B.as_ids(ids, len(v))
        p = B.as_payloads(payloads, len(v))
        if validate:
            self._check_dim(collection, v.shape[1])
        chunks = B.upsert_chunks(name, i, v, p, batch, max_message_bytes)
        id_list = i.tolist()
        total = len(v)
        failure: list[BaseException] = []

        def messages() -> Iterator[bytes]:
            try:
                for start, stop in chunks:
                    yield _wire.encode_upsert(name, id_list, v, p, start, stop)
                    if progress is not None:
                        progress(stop, total)
            except BaseException as e:  # surfaces after gRPC cancels the call
                failure.append(e)
                raise

        try:
            r = self._m.bulk_upsert(messages(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            if failure:
                raise failure[0] from e
            raise error_from_rpc(e) from e
        return WriteResult._from_pb(r)

    # ---------------------------------------------------------------- reads

    def search(
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
        """The ``k`` nearest neighbours of one vector.

        Args:
            vector: shape (dim,) or (1, dim).
            l: search list size (None: the server's default, max(k, 64)).
            w: beam width (None: the server's default, 8).
            with_payload: also return each neighbour's payload.

        Returns:
            :class:`SearchResult` with numpy ``ids``, ``scores`` (larger is
            closer) and ``distances`` (smaller is closer), nearest first.
        """
        name = B.check_name(collection)
        q = B.as_query(vector, validate)
        kk, ll, ww = B.search_knobs(k, l, w)
        if validate:
            self._check_dim(collection, q.shape[1])
        r = self._call(self._m.search, _wire.encode_search(name, q, kk, ll, ww, with_payload), timeout)
        return SearchResult._from_pb(r, with_payload)

    def search_batch(
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
        """The ``k`` nearest neighbours of each row of ``vectors`` (n, dim).

        Sent as SearchBatch calls of at most ``batch`` queries each, one after
        the other (a call must stay within the server's max_batch, 1,024 by
        default, and its shard queues, shards x queue_depth: 512 on a 2-core
        server with the defaults). Returns a
        :class:`BatchSearchResult`: a list of :class:`SearchResult` in query
        order, with 2-D ``ids``/``scores``/``distances`` views.
        """
        name = B.check_name(collection)
        v = B.as_vectors(vectors, check_finite=validate)
        kk, ll, ww = B.search_knobs(k, l, w)
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if validate:
            self._check_dim(collection, v.shape[1])
        out: list[SearchResult] = []
        for s in range(0, len(v), batch):
            r = self._call(self._m.search_batch, _wire.encode_search(name, v[s : s + batch], kk, ll, ww, with_payload), timeout)
            out.extend(SearchResult._from_pb(x, with_payload) for x in r.results)
        return BatchSearchResult(out, kk)

    def get(
        self, collection: str, ids: B.ArrayLike, *, with_vector: bool = True, timeout: Optional[float] = None
    ) -> GetResult:
        """Points by id: the found ones in request order, and ``missing_ids``.

        ``with_vector=False`` drops the vectors from the result (the server
        always sends them)."""
        B.check_name(collection)
        req = pb.GetRequest(collection=collection, ids=B.as_ids(ids).tolist())
        return GetResult._from_pb(self._call(self._m.get, req, timeout), with_vector)
