"""Shared helpers for the side-by-side benchmark: file formats, /proc readers,
recall, cache directories and child processes with per-child peak RSS.

Imports only numpy and the standard library, so both the driver (bench.py)
and the search/build worker (worker.py) can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CACHE_ROOT = Path(os.environ.get("QUARRY_BENCH_CACHE", Path.home() / ".cache" / "quarry-bench"))
PAGE = 4096


def log(*args) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- formats


def read_bin_header(path: str | Path) -> tuple[int, int]:
    """(n, d) of a big-ann .fbin / .ibin file."""
    with open(path, "rb") as f:
        n, d = np.frombuffer(f.read(8), dtype=np.uint32)
    return int(n), int(d)


def read_fbin(path: str | Path, mmap: bool = False, max_rows: int | None = None) -> np.ndarray:
    """Row-major f32 matrix of a .fbin file (u32 n, u32 d, data)."""
    n, d = read_bin_header(path)
    if max_rows is not None:
        n = min(n, max_rows)
    if mmap:
        return np.memmap(path, dtype=np.float32, mode="r", offset=8, shape=(n, d))
    with open(path, "rb") as f:
        f.seek(8)
        a = np.fromfile(f, dtype=np.float32, count=n * d)
    return a.reshape(n, d)


def read_ibin(path: str | Path, max_rows: int | None = None) -> np.ndarray:
    """Row-major u32 ids of a .ibin ground-truth file (u32 n, u32 k, ids)."""
    n, k = read_bin_header(path)
    if max_rows is not None:
        n = min(n, max_rows)
    with open(path, "rb") as f:
        f.seek(8)
        a = np.fromfile(f, dtype=np.uint32, count=n * k)
    return a.reshape(n, k).astype(np.int64)


def write_fbin(path: str | Path, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a, dtype=np.float32)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        np.array(a.shape, dtype=np.uint32).tofile(f)
        a.tofile(f)
    tmp.rename(path)


def write_ibin(path: str | Path, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a, dtype=np.uint32)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        np.array(a.shape, dtype=np.uint32).tofile(f)
        a.tofile(f)
    tmp.rename(path)


def recall_at_k(found: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Mean |found[:, :k] ∩ gt[:, :k]| / k over queries."""
    found = np.asarray(found)[:, :k]
    hits = 0
    for f, g in zip(found, gt[:, :k]):
        hits += len(set(int(x) for x in f if x >= 0) & set(int(x) for x in g))
    return hits / (k * len(gt))


# ---------------------------------------------------------------- /proc


def proc_read_bytes(pid: int | str = "self") -> int | None:
    """read_bytes of /proc/<pid>/io: bytes this process (all its threads,
    including io_uring/libaio workers) caused to be read from the block
    layer. O_DIRECT reads count; page-cache hits do not."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def proc_status_kb(field: str, pid: int | str = "self") -> int | None:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rss_bytes(pid: int | str = "self") -> int | None:
    kb = proc_status_kb("VmRSS", pid)
    return None if kb is None else kb * 1024


def percentile(xs, p: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), p)) if len(xs) else float("nan")


# ---------------------------------------------------------------- cache keys


def dataset_key(name: str, base: Path) -> dict:
    n, d = read_bin_header(base)
    st = base.stat()
    key = {"name": name, "n": n, "d": d, "size": st.st_size, "mtime": int(st.st_mtime)}
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    key["hash"] = h
    key["tag"] = f"{name}-{h}"
    return key


def build_dir(system: str, ds_key: dict, params_tag: str) -> Path:
    return CACHE_ROOT / system / f"{ds_key['tag']}-{params_tag}"


def dir_size(path: Path, exclude=()) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and p.name not in exclude and p.name != "build.json":
            total += p.stat().st_size
    return total


# ---------------------------------------------------------------- child processes


class CommandLog:
    """Every command the benchmark ran, for the report."""

    def __init__(self) -> None:
        self.cmds: list[str] = []

    def add(self, cmd, env_extra: dict | None = None) -> str:
        s = " ".join(shlex.quote(str(c)) for c in cmd)
        if env_extra:
            s = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env_extra.items()) + " " + s
        self.cmds.append(s)
        log("$", s)
        return s


def run_measured(cmd, log_path: Path | None = None, env_extra: dict | None = None) -> dict:
    """Run `cmd` to completion; return wall time, exit code and the child's own
    peak RSS (ru_maxrss from wait4 on that child, which covers the child and
    its waited-for descendants only, not earlier children of this process).
    stdout/stderr go to log_path (or are inherited)."""
    env = dict(os.environ)
    if env_extra:
        env.update({k: str(v) for k, v in env_extra.items()})
    out = open(log_path, "wb") if log_path else None
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT if out else None, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if out:
        out.close()
    return {
        "returncode": p.returncode,
        "wall_s": wall,
        "peak_rss_bytes": ru.ru_maxrss * 1024,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
    }


class ProcPoller:
    """Poll /proc/<pid>/io and VmRSS of a running child every `interval`
    seconds, keeping the last values seen (a dead child's counters are gone,
    so the last sample is within one interval of its end)."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.last_read_bytes: int | None = None
        self.max_rss: int = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> tuple[int | None, int | None]:
        rb = proc_read_bytes(self.pid)
        rss = rss_bytes(self.pid)
        if rb is not None:
            self.last_read_bytes = rb
        if rss is not None:
            self.max_rss = max(self.max_rss, rss)
        return rb, rss

    def stop(self) -> None:
        self._stop.set()
        self._t.join()
