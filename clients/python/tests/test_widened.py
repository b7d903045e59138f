"""Widened searches against the real server: ``SearchInfo.widened``.

A query unlike the queries an index was calibrated with is searched more widely
to keep the recall promise, and the answer says so (``x-vectorwise-widened`` on
a single search, ``x-vectorwise-widened-queries`` on a collection batch). The
fixture is a calibrated HNSW graph over clustered data (`vectorwise generate
--kind clustered`, 40 clusters; `vectorwise build` calibrates it on leave-one-out
rows): random unit vectors lie between the clusters, unlike every calibration
query, and are widened; held-out rows of the same clusters are like the data and
are not. The served index is the collection ``default`` too, searched here as a
collection.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import CountingTransport

from vectorwise import BatchResult, VectorWiseClient
from vectorwise.local import LocalServer, build_index

N, HELD, DIM, CLUSTERS = 6000, 200, 32, 40
Q = 100  # queries of each kind


@pytest.fixture(scope="module")
def clustered(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The calibrated graph over the first ``N`` rows; returns its path and the
    ``HELD`` rows left out (same clusters, other points)."""
    root = tmp_path_factory.mktemp("widened")
    every, vectors, index = root / "every.npy", root / "vectors.npy", root / "index.vwi"
    cmd = [binary, "generate", "--kind", "clustered", "--clusters", str(CLUSTERS)]
    cmd += ["--n", str(N + HELD), "--dim", str(DIM), "--seed", "7", "--out", every]
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    rows = np.load(every)
    np.save(vectors, rows[:N])
    build_index(
        vectors, index, binary=binary, extra_args=["--method", "hnsw", "--metric", "cosine"]
    )
    return index, rows[N:]


@pytest.fixture(scope="module")
def widening_server(binary: Path, clustered: tuple[Path, np.ndarray]) -> Iterator[LocalServer]:
    # The default profile named, so that a VECTORWISE_PROFILE in the environment changes nothing.
    with LocalServer(clustered[0], binary=binary, extra_args=["--profile", "balanced"]) as s:
        yield s


@pytest.fixture(params=[True, False], ids=["binary", "json"])
def wclient(
    widening_server: LocalServer, request: pytest.FixtureRequest
) -> Iterator[VectorWiseClient]:
    with VectorWiseClient(
        widening_server.url, timeout=30.0, retries=2, backoff=0.01, binary=request.param
    ) as c:
        yield c


def random_unit(n: int, seed: int) -> np.ndarray:
    """Unit vectors in random directions: unlike the clustered data."""
    q = np.random.default_rng(seed).standard_normal((n, DIM))
    unit: np.ndarray = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return unit


def like_the_data(clustered: tuple[Path, np.ndarray]) -> np.ndarray:
    return clustered[1][:Q]


def interleaved(clustered: tuple[Path, np.ndarray]) -> np.ndarray:
    """Even rows random (unlike the data), odd rows held out (like it)."""
    out = np.empty((2 * Q, DIM), dtype=np.float32)
    out[0::2], out[1::2] = random_unit(Q, 11), like_the_data(clustered)
    return out


def assert_split_by_kind(widened: list[bool] | np.ndarray, what: str) -> None:
    """Of interleaved queries: >= 90 % of the random (even) rows widened, <= 10 % of
    the data-like (odd) ones."""
    flags = np.asarray(widened, dtype=bool)
    assert flags.shape == (2 * Q,)
    random, like = int(flags[0::2].sum()), int(flags[1::2].sum())
    assert random >= 0.9 * Q, f"{what}: {random} of {Q} random unit queries widened"
    assert like <= 0.1 * Q, f"{what}: {like} of {Q} queries like the data widened"


def test_the_fixture_is_calibrated(wclient: VectorWiseClient) -> None:
    stats = wclient.stats()
    assert stats["calibration"] is not None and stats["default_profile"] == "balanced"


@pytest.mark.parametrize("collection", ["default", None], ids=["collection", "served_index"])
def test_single_searches_say_whether_they_were_widened(
    wclient: VectorWiseClient, clustered: tuple[Path, np.ndarray], collection: str | None
) -> None:
    queries = interleaved(clustered)
    answers = [wclient.search(q, k=10, collection=collection) for q in queries]
    assert all(len(a) == 10 and a.used.profile == "balanced" for a in answers)
    assert_split_by_kind([a.used.widened for a in answers], f"single searches ({collection})")
    # A widened answer still says what it searched with besides.
    widened = next(a.used for a in answers if a.used.widened)
    assert widened and widened.method == "hnsw" and widened.expected_recall is not None


def test_a_collection_batch_says_which_queries_were_widened(
    wclient: VectorWiseClient, clustered: tuple[Path, np.ndarray]
) -> None:
    queries = interleaved(clustered)
    batch = wclient.search_batch(queries, k=10, collection="default")
    assert len(batch) == 2 * Q and batch.ids.shape == (2 * Q, 10)
    assert_split_by_kind(batch.widened, "one batch request")
    assert batch.widened.tolist() == [r.used.widened for r in batch]
    assert batch.used.widened and batch.consistent
    # The same queries one by one are widened alike (the server decides per query).
    singles = [wclient.search(q, k=10, collection="default").used.widened for q in queries]
    assert batch.widened.tolist() == singles
    # A batch of data-like queries only: none widened, or nearly.
    calm = wclient.search_batch(like_the_data(clustered), k=10, collection="default")
    assert calm.widened.sum() <= 0.1 * Q


@pytest.mark.parametrize("binary_bodies", [True, False], ids=["binary", "json"])
def test_a_batch_split_into_several_requests_maps_widened_rows_back(
    widening_server: LocalServer, clustered: tuple[Path, np.ndarray], binary_bodies: bool
) -> None:
    queries = interleaved(clustered)
    with VectorWiseClient(widening_server.url, timeout=30.0, binary=binary_bodies) as vw:
        whole = vw.search_batch(queries, k=10, collection="default")
    transport = CountingTransport()
    # 7 rows a request: 29 requests, most starting on an odd row, so indices taken
    # as positions in the matrix (not from the request's first row) would flag the
    # wrong kind of query.
    with VectorWiseClient(
        widening_server.url, timeout=30.0, binary=binary_bodies, batch_size=7, transport=transport
    ) as vw:
        split = vw.search_batch(queries, k=10, collection="default")
    assert transport.paths().count("/collections/default/search/batch") == 29
    assert len(split) == 2 * Q
    assert_split_by_kind(split.widened, "a batch sent in requests of 7")
    assert split.widened.tolist() == whole.widened.tolist()
    assert np.array_equal(split.ids, whole.ids)


def test_the_served_index_batch_says_once_default_was_written_to(
    binary: Path, clustered: tuple[Path, np.ndarray]
) -> None:
    """``/search/batch`` answers from the collection ``default`` once it was written to,
    and then names its widened queries (on the pristine index file it does not say)."""
    queries = interleaved(clustered)
    server = LocalServer(clustered[0], binary=binary, extra_args=["--profile", "balanced"])
    with server as s, VectorWiseClient(s.url, timeout=30.0, batch_size=64) as vw:
        assert vw.upsert("default", [N + 1_000_000], clustered[1][-1:]) == 1
        batch = vw.search_batch(queries, k=10)
    assert isinstance(batch, BatchResult) and len(batch) == 2 * Q
    assert_split_by_kind(batch.widened, "/search/batch on the written default, requests of 64")
