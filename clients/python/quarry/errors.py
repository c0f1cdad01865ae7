"""Exceptions raised by the Quarry client.

Every failed RPC raises a :class:`QuarryError` (or one of its subclasses,
chosen by the gRPC status code); the server's own message is kept in
``.message``. Problems the client finds before sending anything (a NaN, a
wrong shape, a bad argument) raise :class:`ValueError` or
:class:`TypeError` instead, so they are never confused with the server's
answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Type

import grpc

if TYPE_CHECKING:  # pragma: no cover
    from .types import Operation

__all__ = [
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
    "error_from_rpc",
]


class QuarryError(Exception):
    """Base class of every error the server (or the transport) reports.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode``), or ``None`` for an
            error that is not a gRPC status (see :class:`OperationFailed`).
        message: the server's message, verbatim (it names the field at
            fault and, for limits, the limit).
    """

    code: Optional[grpc.StatusCode]
    message: str

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        self.code = code
        self.message = message
        name = code.name if code is not None else "ERROR"
        super().__init__(f"{name}: {message}")


class NotFound(QuarryError):
    """NOT_FOUND: unknown collection, operation or id."""


class InvalidArgument(QuarryError):
    """INVALID_ARGUMENT: wrong dimension, NaN/Inf, k/L/W out of range, bad name or parameters."""


class AlreadyExists(QuarryError):
    """ALREADY_EXISTS: a collection of that name exists."""


class FailedPrecondition(QuarryError):
    """FAILED_PRECONDITION: e.g. a second build while one runs, cancelling an ended operation."""


class ResourceExhausted(QuarryError):
    """RESOURCE_EXHAUSTED: a batch or message over a limit, an overloaded shard queue,
    writes ahead of the background flush, the memory budget, or a full disk.
    Overload and write stalls are worth retrying with backoff."""


class Unauthenticated(QuarryError):
    """UNAUTHENTICATED: no token, or a token the server does not know."""


class PermissionDenied(QuarryError):
    """PERMISSION_DENIED: the token's role may not call this method (e.g. a read token writing)."""


class Unavailable(QuarryError):
    """UNAVAILABLE: the server cannot be reached or is shutting down."""


class DeadlineExceeded(QuarryError):
    """DEADLINE_EXCEEDED: the call's timeout passed."""


class Cancelled(QuarryError):
    """CANCELLED: the call was cancelled."""


class Internal(QuarryError):
    """INTERNAL: the server failed (e.g. a write failed on disk; nothing of that batch was kept)."""


class OperationFailed(QuarryError):
    """A build or compaction that was waited on ended FAILED or CANCELLED.

    ``code`` is ``None`` (the RPCs succeeded; the operation did not);
    ``operation`` is the operation as it ended and ``message`` its error.
    """

    operation: "Operation"

    def __init__(self, operation: "Operation") -> None:
        self.operation = operation
        super().__init__(
            f"operation {operation.id} ended {operation.state.value}"
            + (f": {operation.error}" if operation.error else ""),
            None,
        )


_BY_CODE: Dict[grpc.StatusCode, Type[QuarryError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
}


def error_from_rpc(err: grpc.RpcError) -> QuarryError:
    """The :class:`QuarryError` subclass for a ``grpc.RpcError`` (sync or aio)."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    message = details_fn() if callable(details_fn) else str(err)
    cls = _BY_CODE.get(code, QuarryError)
    return cls(message or "", code)
