"""Bearer tokens and TLS, each on a quarryd of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pytest

import quarry
from conftest import REPO, Quarryd, start_quarryd

READ = "r3ad-token-0123456789abcdef"
ADMIN = "adm1n-token-0123456789abcdef"


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quarryd]:
    tmp = tmp_path_factory.mktemp("auth")
    tokens = tmp / "api.tokens"
    tokens.write_text(f"# test tokens\nread {READ}\nadmin {ADMIN}\n")
    q = start_quarryd(tmp, f'api_token_file = "{tokens}"\n')
    yield q
    assert q.stop() == 0


def test_tokens_and_roles(authed: Quarryd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUARRY_TOKEN", raising=False)
    v = np.random.default_rng(30).standard_normal((40, 8)).astype(np.float32)
    with quarry.Client(authed.address) as anon:
        assert anon.health() == "SERVING"  # health needs no token
        with pytest.raises(quarry.Unauthenticated) as e:
            anon.list_collections()
        assert e.value.code is grpc.StatusCode.UNAUTHENTICATED and "bearer token" in e.value.message
    with quarry.Client(authed.address, token="wrong-token-0123456789") as bad:
        with pytest.raises(quarry.Unauthenticated):
            bad.list_collections()
    with quarry.Client(authed.address, token=ADMIN) as admin:
        admin.create_collection("sec", 8)
        admin.upsert("sec", np.arange(20), v[:20])
        assert admin.bulk_upsert("sec", np.arange(20, 40), v[20:], batch=7).count == 20
    monkeypatch.setenv("QUARRY_TOKEN", READ)  # the default token
    with quarry.Client(authed.address) as reader:
        assert [c.name for c in reader.list_collections()] == ["sec"]
        assert reader.search("sec", v[3], k=1).ids[0] == 3
        assert reader.get("sec", [39]).records[0].id == 39
        assert reader.stats().collections[0].vector_count == 40
        for write in (
            lambda: reader.upsert("sec", [1], v[:1]),
            lambda: reader.bulk_upsert("sec", [1], v[:1]),
            lambda: reader.delete("sec", [1]),
            lambda: reader.create_collection("other", 8),
            lambda: reader.drop_collection("sec"),
            lambda: reader.compact("sec"),
        ):
            with pytest.raises(quarry.PermissionDenied) as pd:
                write()
            assert pd.value.code is grpc.StatusCode.PERMISSION_DENIED and "admin" in pd.value.message


@pytest.mark.asyncio
async def test_tokens_async(authed: Quarryd) -> None:
    async with quarry.AsyncClient(authed.address, token="") as anon:
        with pytest.raises(quarry.Unauthenticated):
            await anon.list_collections()
    async with quarry.AsyncClient(authed.address, token=READ) as reader:
        with pytest.raises(quarry.PermissionDenied):
            await reader.bulk_upsert("sec", [1], np.zeros((1, 8), dtype=np.float32))



@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    out = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["bash", str(REPO / "ops" / "pair-certs.sh"), str(out), "server=DNS:localhost,IP:127.0.0.1", "client=DNS:client"],
        check=True, capture_output=True, env={"DAYS": "2", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    return out


def test_tls(certs: Path, tmp_path: Path) -> None:
    cfg = f'tls_cert = "{certs / "server.crt"}"\ntls_key = "{certs / "server.key"}"\n'
    q = start_quarryd(tmp_path / "tls", cfg, root_certificates=str(certs / "ca.crt"), tls=True)
    try:
        with quarry.Client(f"https://{q.address}", token="", root_certificates=str(certs / "ca.crt")) as c:
            assert c.tls
            c.create_collection("t", 4)
            assert c.search("t", [0, 0, 0, 1], k=1).ids.size == 0
        ca = (certs / "ca.crt").read_bytes()
        with quarry.Client(q.address, tls=True, token="", root_certificates=ca, server_name="localhost") as c:
            assert [x.name for x in c.list_collections()] == ["t"]
        # An untrusted server certificate, and plaintext to a TLS port, fail.
        with quarry.Client(f"https://{q.address}", token="", timeout=5) as c:
            with pytest.raises(quarry.Unavailable):
                c.list_collections()
        with quarry.Client(q.address, token="", timeout=5) as c:
            with pytest.raises(quarry.Unavailable):
                c.list_collections()
    finally:
        assert q.stop() == 0


def test_tls_client_certificate(certs: Path, tmp_path: Path) -> None:
    cfg = (
        f'tls_cert = "{certs / "server.crt"}"\ntls_key = "{certs / "server.key"}"\n'
        f'tls_ca = "{certs / "ca.crt"}"\ntls_require_client_cert = true\n'
    )
    mine = dict(
        root_certificates=str(certs / "ca.crt"), private_key=str(certs / "client.key"),
        certificate_chain=str(certs / "client.crt"),
    )
    q = start_quarryd(tmp_path / "mtls", cfg, tls=True, **mine)
    try:
        with quarry.Client(f"https://{q.address}", token="", **mine) as c:
            assert c.list_collections() == []
        with quarry.Client(f"https://{q.address}", token="", timeout=5, root_certificates=str(certs / "ca.crt")) as c:
            with pytest.raises(quarry.QuarryError) as e:
                c.list_collections()
            print("no client certificate:", repr(e.value))
            assert isinstance(e.value, quarry.Unavailable)
        with pytest.raises(ValueError, match="both"):
            quarry.Client(f"https://{q.address}", private_key=str(certs / "client.key"))
    finally:
        assert q.stop() == 0
