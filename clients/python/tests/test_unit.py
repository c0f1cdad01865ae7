"""Client-side pieces that need no server: addresses, tokens, validation, errors."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import quarry
from quarry import _base as B
from quarry.errors import error_from_rpc


@pytest.mark.parametrize(
    "address,tls,want",
    [
        ("127.0.0.1:7700", None, ("127.0.0.1:7700", False)),
        ("http://db:1234", None, ("db:1234", False)),
        ("http://db:1234/", None, ("db:1234", False)),
        ("https://db.example:443", None, ("db.example:443", True)),
        ("db:1234", True, ("db:1234", True)),
        ("[::1]:7700", None, ("[::1]:7700", False)),
        ("unix:/run/quarry/quarryd.sock", None, ("unix:/run/quarry/quarryd.sock", False)),
    ],
)
def test_addresses(address: str, tls: bool, want: tuple) -> None:
    assert B.resolve_target(address, tls) == want


@pytest.mark.parametrize("address", ["", "db", "ftp://db:1", "http://db:x", "http://db:1/path", "::1:7700"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        B.resolve_target(address, None)


def test_http_with_tls_is_a_contradiction() -> None:
    with pytest.raises(ValueError, match="tls=True"):
        B.resolve_target("http://db:1", True)


def test_address_and_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUARRY_SERVER", raising=False)
    assert B.resolve_target(None, None) == ("127.0.0.1:7700", False)
    monkeypatch.setenv("QUARRY_SERVER", "https://q:9")
    assert B.resolve_target(None, None) == ("q:9", True)
    monkeypatch.setenv("QUARRY_TOKEN", "abc")
    assert B.metadata(None) == (("authorization", "Bearer abc"),)
    assert B.metadata("") is None  # explicit: no token
    assert B.metadata("x") == (("authorization", "Bearer x"),)
    with pytest.raises(ValueError):
        B.metadata("a b")


def test_certificates_need_tls() -> None:
    with pytest.raises(ValueError, match="TLS is off"):
        quarry.Client("127.0.0.1:1", root_certificates=b"pem")


def test_vectors_validation() -> None:
    f64 = np.arange(12, dtype=np.float64).reshape(3, 4)
    a = B.as_vectors(f64)
    assert a.dtype == np.float32 and a.flags.c_contiguous and np.array_equal(a, f64)
    strided = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2]
    b = B.as_vectors(strided)
    assert b.flags.c_contiguous and np.array_equal(b, strided)
    f32 = np.ones((2, 3), dtype=np.float32)
    assert B.as_vectors(f32) is f32  # no copy when it is already right
    with pytest.raises(ValueError, match="2-D"):
        B.as_vectors(np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        B.as_vectors(np.ones((0, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected 4"):
        B.as_vectors(f32, dim=4)
    with pytest.raises(TypeError):
        B.as_vectors(np.array([["a"]]))
    bad = np.ones((2, 3), dtype=np.float32)
    bad[1, 2] = -np.inf
    with pytest.raises(ValueError, match=r"vectors\[1\]\[2\] is -inf"):
        B.as_vectors(bad)
    assert B.as_vectors(bad, check_finite=False).shape == (2, 3)
    assert B.as_query([1, 2, 3], True).shape == (1, 3)


def test_ids_validation() -> None:
    big = [2**64 - 1, 5, 2**63]
    assert B.as_ids(big).tolist() == big  # no detour through float64
    assert B.as_ids(np.array([1, 2], dtype=np.int32)).dtype == np.uint64
    assert B.as_ids(range(3)).tolist() == [0, 1, 2]
    assert B.as_ids([]).dtype == np.uint64
    for bad in ([-1], [2**64], np.array([-3])):
        with pytest.raises(ValueError):
            B.as_ids(bad)
    with pytest.raises(TypeError):
        B.as_ids([1.5])
    with pytest.raises(TypeError):
        B.as_ids(np.array([1.0]))
    with pytest.raises(ValueError, match="3 vectors"):
        B.as_ids([1, 2], n=3)


def test_payloads_validation() -> None:
    assert B.as_payloads(None, 3) is None
    assert B.as_payloads([b"a", None, bytearray(b"c")], 3) == [b"a", b"", b"c"]
    with pytest.raises(TypeError, match="encode"):
        B.as_payloads(["text"], 1)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        B.as_payloads([b"a"], 2)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    "code,cls",
    [
        (grpc.StatusCode.NOT_FOUND, quarry.NotFound),
        (grpc.StatusCode.INVALID_ARGUMENT, quarry.InvalidArgument),
        (grpc.StatusCode.ALREADY_EXISTS, quarry.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, quarry.FailedPrecondition),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, quarry.ResourceExhausted),
        (grpc.StatusCode.UNAUTHENTICATED, quarry.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, quarry.PermissionDenied),
        (grpc.StatusCode.UNAVAILABLE, quarry.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, quarry.DeadlineExceeded),
        (grpc.StatusCode.CANCELLED, quarry.Cancelled),
        (grpc.StatusCode.INTERNAL, quarry.Internal),
        (grpc.StatusCode.UNIMPLEMENTED, quarry.QuarryError),
        (grpc.StatusCode.DATA_LOSS, quarry.QuarryError),
    ],
)
def test_status_to_exception(code: grpc.StatusCode, cls: type) -> None:
    e = error_from_rpc(FakeRpcError(code, "the server's words"))
    assert type(e) is cls and e.code is code and e.message == "the server's words"
    assert isinstance(e, quarry.QuarryError) and str(e) == f"{code.name}: the server's words"
