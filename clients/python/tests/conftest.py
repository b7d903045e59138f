"""Fixtures: the real `vectorwise` binary serving a small index on a free port.

The binary is $VECTORWISE_BIN, by default the checkout's target/release/vectorwise
(`cargo build --release`). One session-wide dataset (2000 x 32, `vectorwise
generate`) and index (`vectorwise build`) live in a temporary directory; the
server runs with efSearch 2048 >= n, so HNSW search visits every vector and its
answers are exact, which lets tests compare with brute force.

`vectorwise build` calibrates the index (a recall table per k) by default, so
that index is calibrated too. The search-profile tests use a second one, a
quantised scan over 10000 x 64 (`PROFILE_N`, `PROFILE_DIM`): on data this small a
graph is near exact at every setting and the three profiles resolve to the same
one, while the scan's profiles differ. A third, uncalibrated index (`--no-calibrate`)
shows what a server without a table reports.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from vectorwise import VectorWiseClient
from vectorwise.local import LocalServer, build_index

REPO = Path(__file__).resolve().parents[3]
N, DIM = 2000, 32
PROFILE_N, PROFILE_DIM = 10_000, 64


@dataclass
class Dataset:
    vectors_path: Path
    index_path: Path
    vectors: np.ndarray


@pytest.fixture(scope="session")
def binary() -> Path:
    path = Path(os.environ.get("VECTORWISE_BIN", REPO / "target" / "release" / "vectorwise"))
    if not path.is_file():
        pytest.fail(
            f"no vectorwise binary at {path}: run `cargo build --release` or set VECTORWISE_BIN"
        )
    return path


@pytest.fixture(scope="session")
def dataset(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("data")
    vectors_path, index_path = root / "vectors.npy", root / "index.vwi"
    subprocess.run(
        [
            binary,
            "generate",
            "--n",
            str(N),
            "--dim",
            str(DIM),
            "--seed",
            "42",
            "--out",
            vectors_path,
        ],
        check=True,
        capture_output=True,
    )
    # An HNSW graph, whatever `--method auto` would pick: with efSearch >= n its
    # search visits every vector, so answers are exact.
    build_index(
        vectors_path, index_path, binary=binary, extra_args=["--method", "hnsw", "--metric", "cosine"]
    )
    return Dataset(vectors_path, index_path, np.load(vectors_path))


@pytest.fixture(scope="session")
def server(binary: Path, dataset: Dataset) -> Iterator[LocalServer]:
    with LocalServer(dataset.index_path, binary=binary, extra_args=["--ef-search", "2048"]) as s:
        yield s
    # A clean exit on SIGTERM (LocalServer.stop) is part of what is checked.


def _generate(binary: Path, out: Path, n: int, dim: int) -> np.ndarray:
    cmd = [binary, "generate", "--n", str(n), "--dim", str(dim), "--seed", "42", "--out", out]
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    vectors: np.ndarray = np.load(out)
    return vectors


@pytest.fixture(scope="session")
def profile_dataset(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """10000 x 64 demo vectors in a calibrated quantised-scan index (a second or two)."""
    root = tmp_path_factory.mktemp("profiles")
    vectors_path, index_path = root / "vectors.npy", root / "index.vwi"
    vectors = _generate(binary, vectors_path, PROFILE_N, PROFILE_DIM)
    build_index(vectors_path, index_path, binary=binary, extra_args=["--method", "scan", "--metric", "cosine"])
    return Dataset(vectors_path, index_path, vectors)


@pytest.fixture(scope="session")
def profile_server(binary: Path, profile_dataset: Dataset) -> Iterator[LocalServer]:
    """The calibrated scan index with the server's default profile (`balanced`, explicit
    so that a VECTORWISE_PROFILE in the caller's environment changes nothing)."""
    with LocalServer(
        profile_dataset.index_path, binary=binary, extra_args=["--profile", "balanced"]
    ) as s:
        yield s


@pytest.fixture(scope="session")
def uncalibrated_server(binary: Path, dataset: Dataset) -> Iterator[LocalServer]:
    """The 2000 x 32 data indexed without a calibration, `high_accuracy` by default
    (set through VECTORWISE_PROFILE)."""
    index_path = dataset.index_path.with_name("uncalibrated.vwi")
    build_index(
        dataset.vectors_path,
        index_path,
        binary=binary,
        extra_args=["--method", "hnsw", "--metric", "cosine", "--no-calibrate"],
    )
    with LocalServer(index_path, binary=binary, env={"VECTORWISE_PROFILE": "high_accuracy"}) as s:
        yield s


@pytest.fixture(params=[True, False], ids=["binary", "json"])
def client(server: LocalServer, request: pytest.FixtureRequest) -> Iterator[VectorWiseClient]:
    """A client sending searches in binary (its default), and one sending JSON: every
    test that uses it holds for both."""
    with VectorWiseClient(
        server.url, timeout=10.0, retries=2, backoff=0.01, binary=request.param
    ) as c:
        yield c


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CountingTransport(httpx.HTTPTransport):
    """The real network transport, recording each request's path and outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except httpx.TransportError as e:
            self.calls.append((request.url.path, type(e).__name__))
            raise
        self.calls.append((request.url.path, response.status_code))
        return response

    def paths(self) -> list[str]:
        return [p for p, _ in self.calls]


def exact_knn(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force as the server defines it: squared L2 from the unit-length query."""
    q = np.asarray(query, dtype=np.float64)
    q = q / np.linalg.norm(q)
    d = ((vectors.astype(np.float64) - q) ** 2).sum(axis=1)
    ids = np.argsort(d, kind="stable")[:k]
    return ids, d[ids]
