"""Fixtures: a real quarryd started once per session on free loopback
ports with its own temporary data directory.

The binary is $QUARRYD, else <repo>/target/release/quarryd (the repository
root is found from this file's location).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest

import quarry

REPO = Path(__file__).resolve().parents[3]
QUARRYD = Path(os.environ.get("QUARRYD") or REPO / "target" / "release" / "quarryd")


def free_port() -> int:
    """A TCP port nothing listens on right now (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Quarryd:
    """A running quarryd."""

    proc: subprocess.Popen
    address: str
    data_dir: Path
    log: Path
    unix_socket: Optional[Path]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> int:
        """SIGTERM, then wait (SIGKILL after 20 s). Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


class StartFailed(Exception):
    """quarryd exited before serving; ``log`` holds its output."""

    def __init__(self, log: str) -> None:
        super().__init__(log)
        self.log = log


def start_quarryd(tmp: Path, extra_config: str = "", unix: bool = False, **probe: Any) -> Quarryd:
    """Start quarryd over ``tmp`` and wait until its health check says SERVING
    (asked with a ``quarry.Client`` made with ``probe``: TLS settings).
    Raises StartFailed with its log if it exits first."""
    if not QUARRYD.is_file():
        pytest.fail(f"quarryd binary not found at {QUARRYD}: build it first (cargo build --release) or set QUARRYD")
    tmp.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(3):  # a port picked free may be taken before quarryd binds it
        port, mport = free_port(), free_port()
        sock = tmp / "quarryd.sock" if unix else None
        cfg = tmp / f"quarryd-{attempt}.toml"
        lines = [
            f'listen = "127.0.0.1:{port}"',
            f'metrics_listen = "127.0.0.1:{mport}"',
            f'data_dir = "{tmp / "data"}"',
            "shards = 2",
            'log = "warn"',
        ]
        if sock:
            lines.append(f'listen_unix = "{sock}"')
        cfg.write_text("\n".join(lines) + "\n" + extra_config)
        log = tmp / f"quarryd-{attempt}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env["NO_COLOR"] = "1"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(QUARRYD), "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        q = Quarryd(proc, f"127.0.0.1:{port}", tmp / "data", log, sock)
        deadline = time.monotonic() + 30
        c = quarry.Client(q.address, token="", timeout=2, **probe)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                try:
                    if c.health(timeout=1) == "SERVING":
                        return q
                except quarry.QuarryError:
                    pass
                time.sleep(0.05)
        finally:
            c.close()
        last = q.log_tail()
        q.stop()
        if "address in use" not in last.lower() and "addrinuse" not in last.lower():
            raise StartFailed(last)
    raise StartFailed(last)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quarryd]:
    """One quarryd for the session (default limits: max_batch 1024, 16 MiB messages)."""
    q = start_quarryd(tmp_path_factory.mktemp("quarryd"), unix=True)
    yield q
    code = q.stop()
    assert code == 0, f"quarryd exited {code} on SIGTERM:\n{q.log_tail()}"


@pytest.fixture
def client(server: Quarryd) -> Iterator[quarry.Client]:
    """A sync client of the session's server."""
    with quarry.Client(server.address, token="") as c:
        yield c


_names = itertools.count()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A collection name unique to the test."""
    base = request.node.name.split("[")[0].replace("test_", "")[:40]
    return f"{base}-{next(_names)}".replace("_", "-")


def write_fbin(path: Path, vectors: np.ndarray) -> None:
    """The .fbin format: int32 n, int32 dim, then n*dim little-endian float32."""
    v = np.ascontiguousarray(vectors, dtype="<f4")
    with open(path, "wb") as f:
        f.write(np.array(v.shape, dtype="<i4").tobytes())
        f.write(v.tobytes())
