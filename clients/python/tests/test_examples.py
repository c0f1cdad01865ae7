"""The examples run as scripts against the session's quarryd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import quarry
from conftest import Quarryd

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(Path(quarry.__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_load_npy(server: Quarryd, tmp_path: Path) -> None:
    path = tmp_path / "vecs.npy"
    np.save(path, np.random.default_rng(40).standard_normal((2500, 24)).astype(np.float32))
    out = run(str(EXAMPLES / "load_npy.py"), str(path), "--server", server.address, "--collection", "ex-upsert")
    assert "ex-upsert: 2500 vectors" in out and "5/5 queries found their own row first" in out
    out = run(str(EXAMPLES / "load_npy.py"), str(path), "--server", server.address, "--collection", "ex-build",
              "--build", "--first-id", "1000", "--queries", "3")
    assert "ex-build: 2500 vectors, 1 segments" in out and "3/3 queries found their own row first" in out
    assert out.splitlines()[1].startswith("row 1000: 1000:")


def test_filter_by_payload(server: Quarryd) -> None:
    out = run(str(EXAMPLES / "filter_by_payload.py"), "--server", server.address, "--collection", "ex-filter")
    lines = out.splitlines()
    target = lines[0].split("item ")[1].split()[0]
    assert "are kitchen at <= 50.0" in lines[1]
    first = lines[2].split()
    assert first[1] == target and first[5] == "kitchen" and float(first[6]) <= 50.0
    with quarry.Client(server.address, token="") as c:
        assert "ex-filter" not in [x.name for x in c.list_collections()]  # dropped without --keep
