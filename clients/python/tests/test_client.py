"""The client against the real server (see conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DIM, CountingTransport, Dataset, N, exact_knn

import vectorwise
from vectorwise import (
    BatchResult,
    ClientError,
    PayloadTooLarge,
    SearchResult,
    ServiceUnavailable,
    TransportError,
    ValidationError,
    VectorWiseClient,
    VectorWiseError,
)
from vectorwise.local import LocalServer

RNG = np.random.default_rng(1234)


def queries(n: int) -> np.ndarray:
    return RNG.standard_normal((n, DIM)).astype(np.float32)


# -- health and stats ------------------------------------------------------


def test_health(client: VectorWiseClient) -> None:
    assert client.health() == {"service": "VectorWise", "status": "healthy", "vectors_indexed": N}


def test_stats(client: VectorWiseClient, dataset: Dataset) -> None:
    stats = client.stats()
    assert stats["total_vectors"] == N
    assert stats["dimension"] == DIM
    assert stats["index_type"] == "HNSW"
    assert stats["metric"] == "cosine"
    assert stats["hnsw_efSearch"] == 2048
    assert stats["max_k"] == 100
    assert Path(stats["index_path"]) == dataset.index_path


def test_wait_until_ready_returns_health(client: VectorWiseClient) -> None:
    assert client.wait_until_ready(timeout=1)["status"] == "healthy"


# -- single search ---------------------------------------------------------


def test_search_equals_brute_force(client: VectorWiseClient, dataset: Dataset) -> None:
    for q in queries(20):
        hits = client.search(q, k=10)
        ids, dists = exact_knn(dataset.vectors, q, 10)
        np.testing.assert_array_equal(hits.ids, ids)
        np.testing.assert_allclose(hits.distances, dists, rtol=1e-4, atol=1e-5)


def test_search_result_types(client: VectorWiseClient) -> None:
    hits = client.search(queries(1)[0], k=7)
    assert isinstance(hits, SearchResult)
    assert hits.ids.dtype == np.int64 and hits.ids.shape == (7,)
    assert hits.distances.dtype == np.float32 and hits.distances.shape == (7,)
    assert np.all(np.diff(hits.distances) >= 0)
    assert len(hits) == 7
    assert [i for i, _ in hits] == hits.ids.tolist()


def test_list_tuple_and_other_dtypes_give_the_same_answer(client: VectorWiseClient) -> None:
    q = queries(1)[0]
    expected = client.search(q, k=10).ids
    for variant in (q.tolist(), tuple(q.tolist()), q.astype(np.float64), q.astype(np.float16)):
        got = client.search(variant, k=10).ids
        # float16 rounds the query, which may swap near-ties: compare as sets there.
        assert set(got.tolist()) == set(expected.tolist())
    np.testing.assert_array_equal(client.search(q.tolist(), k=10).ids, expected)


def test_integer_query_and_scaling(client: VectorWiseClient) -> None:
    q = np.arange(1, DIM + 1)
    np.testing.assert_array_equal(client.search(q, k=5).ids, client.search(q * 3.5, k=5).ids)


def test_search_max_k(client: VectorWiseClient) -> None:
    assert len(client.search(queries(1)[0], k=100)) == 100


def test_search_an_indexed_vector_finds_itself(client: VectorWiseClient, dataset: Dataset) -> None:
    hits = client.search(dataset.vectors[123], k=1)
    assert hits.ids.tolist() == [123]
    assert hits.distances[0] == pytest.approx(0.0, abs=1e-5)


# -- batch search ----------------------------------------------------------


def test_batch_equals_singles(server: LocalServer) -> None:
    transport = CountingTransport()
    with VectorWiseClient(server.url, batch_fallback=False, transport=transport) as vw:
        qs = queries(50)
        batch = vw.search_batch(qs, k=10)
        assert transport.calls == [("/search/batch", 200)]
        assert isinstance(batch, BatchResult) and len(batch) == 50
        for q, r in zip(qs, batch):
            single = vw.search(q, k=10)
            np.testing.assert_array_equal(r.ids, single.ids)
            np.testing.assert_array_equal(r.distances, single.distances)


def test_batch_matrices(client: VectorWiseClient, dataset: Dataset) -> None:
    qs = queries(12)
    batch = client.search_batch(qs, k=8)
    assert batch.ids.shape == (12, 8) and batch.ids.dtype == np.int64
    assert batch.distances.shape == (12, 8) and batch.distances.dtype == np.float32
    for q, ids in zip(qs, batch.ids):
        np.testing.assert_array_equal(ids, exact_knn(dataset.vectors, q, 8)[0])
    assert batch[-1].ids.tolist() == batch.ids[-1].tolist()
    assert len(batch[2:5]) == 3


def test_batch_accepts_lists(client: VectorWiseClient) -> None:
    qs = queries(4)
    np.testing.assert_array_equal(
        client.search_batch(qs.tolist(), k=5).ids, client.search_batch(qs, k=5).ids
    )


def test_empty_batch_sends_nothing(server: LocalServer) -> None:
    transport = CountingTransport()
    with VectorWiseClient(server.url, transport=transport) as vw:
        result = vw.search_batch(np.zeros((0, DIM)), k=5)
    assert len(result) == 0 and result.ids.shape == (0, 0)
    assert transport.calls == []


def test_batch_is_split_by_batch_size(server: LocalServer) -> None:
    qs = queries(30)
    transport = CountingTransport()
    with VectorWiseClient(server.url, batch_size=7, transport=transport) as vw:
        split = vw.search_batch(qs, k=5)
    assert transport.paths() == ["/search/batch"] * 5  # 7+7+7+7+2
    with VectorWiseClient(server.url) as vw:
        np.testing.assert_array_equal(split.ids, vw.search_batch(qs, k=5).ids)


@pytest.mark.parametrize(("use_binary", "requests"), [(False, 5), (True, 2)])
def test_batch_is_split_by_body_size(server: LocalServer, use_binary: bool, requests: int) -> None:
    qs = queries(20)
    transport = CountingTransport()
    # A row of 32 numbers is about 400 bytes of JSON (about 4 rows per request),
    # 128 bytes in binary (12 rows per request beside the 128-byte .npy header).
    vw = VectorWiseClient(server.url, max_body_bytes=1800, transport=transport, binary=use_binary)
    with vw:
        split = vw.search_batch(qs, k=5)
    with VectorWiseClient(server.url) as vw:
        whole = vw.search_batch(qs, k=5)
    assert len(transport.calls) >= requests
    assert all(status == 200 for _, status in transport.calls)
    np.testing.assert_array_equal(split.ids, whole.ids)


def test_batch_larger_than_the_server_limit_is_split(server: LocalServer) -> None:
    # The client's batch size (2000) is over the server's (1024): the server's
    # 422 too_long tells the client its limit, and the client re-splits.
    qs = queries(1500)
    transport = CountingTransport()
    with VectorWiseClient(server.url, batch_size=2000, transport=transport) as vw:
        result = vw.search_batch(qs, k=3)
        assert vw.batch_size == 1024
    assert [s for _, s in transport.calls] == [422, 200, 200]
    assert result.ids.shape == (1500, 3)


def test_batch_over_the_server_body_limit_is_split(binary: Path, dataset: Dataset) -> None:
    # A server with a 20 kB body limit: 200 rows (~80 kB) get 413, and the
    # client halves its request size until they fit.
    qs = queries(200)
    transport = CountingTransport()
    server = LocalServer(dataset.index_path, binary=binary, extra_args=["--body-limit", "20000"])
    with server, VectorWiseClient(server.url, transport=transport) as vw:
        result = vw.search_batch(qs, k=3)
        assert vw.max_body_bytes < 20000
    statuses = [status for _, status in transport.calls]
    refused = statuses.count(413)
    assert refused >= 1
    assert statuses == [413] * refused + [200] * (len(statuses) - refused)
    assert result.ids.shape == (200, 3)


# -- errors ----------------------------------------------------------------


def test_wrong_dimension_is_a_validation_error(client: VectorWiseClient) -> None:
    with pytest.raises(ValidationError) as info:
        client.search([0.1, 0.2, 0.3], k=5)
    e = info.value
    assert e.status == 400
    assert e.detail == f"query_vector has 3 dimensions, expected {DIM}"
    assert isinstance(e, VectorWiseError) and isinstance(e, ValueError)
    assert e.errors == [{"msg": e.detail}]


@pytest.mark.parametrize(
    ("k", "kind"), [(0, "greater_than"), (-3, "greater_than"), (101, "less_than_equal")]
)
def test_bad_k_is_422_with_pydantic_detail(client: VectorWiseClient, k: int, kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        client.search(queries(1)[0], k=k)
    assert info.value.status == 422
    [error] = info.value.detail
    assert error["loc"] == ["body", "k"] and error["type"] == kind
    assert "body.k" in str(info.value)


def test_zero_vector_is_refused_by_the_server(client: VectorWiseClient) -> None:
    with pytest.raises(ValidationError) as info:
        client.search(np.zeros(DIM), k=3)
    assert info.value.status == 422
    assert info.value.errors[0]["loc"] == ["body", "query_vector"]


def test_non_finite_and_malformed_input_is_refused_before_sending(server: LocalServer) -> None:
    transport = CountingTransport()
    with VectorWiseClient(server.url, transport=transport) as vw:
        q = queries(1)[0]
        q[5] = np.nan
        with pytest.raises(ValidationError) as info:
            vw.search(q)
        assert info.value.status is None
        assert info.value.errors[0]["loc"] == ["body", "query_vector", 5]
        m = queries(4)
        m[3, 7] = np.inf
        with pytest.raises(ValidationError) as info:
            vw.search_batch(m)
        assert info.value.errors[0]["loc"] == ["body", "query_vectors", 3, 7]
        with pytest.raises(ValidationError):
            vw.search(queries(2))  # 2-D to search
        with pytest.raises(ValidationError):
            vw.search_batch(queries(1)[0])  # 1-D to search_batch
        with pytest.raises(ValidationError):
            vw.search_batch([[1.0, 2.0], [3.0]])  # ragged
        with pytest.raises(ValidationError):
            vw.search(["a", "b"])  # type: ignore[list-item]
    assert transport.calls == []


def test_batch_errors_name_the_query_in_the_whole_matrix(server: LocalServer) -> None:
    qs = queries(50)
    qs[41] = 0.0
    # Row 41 is row 9 of the third request.
    vw = VectorWiseClient(server.url, batch_size=16)
    with vw, pytest.raises(ValidationError) as info:
        vw.search_batch(qs, k=5)
    assert info.value.status == 422
    assert [e["loc"] for e in info.value.errors] == [["body", "query_vectors", 41]]
    assert "query_vectors.41" in str(info.value)


def test_batch_wrong_dimension_names_the_query(server: LocalServer) -> None:
    vw = VectorWiseClient(server.url, batch_size=2)
    with vw, pytest.raises(ValidationError) as info:
        vw.search_batch(np.ones((5, DIM + 1)), k=5)
    assert info.value.status == 400
    assert info.value.detail == f"query_vectors[0] has {DIM + 1} dimensions, expected {DIM}"


def test_batch_bad_k_is_422(client: VectorWiseClient) -> None:
    with pytest.raises(ValidationError) as info:
        client.search_batch(queries(3), k=0)
    assert info.value.errors[0]["loc"] == ["body", "k"]


def test_body_over_the_server_limit_is_413(client: VectorWiseClient) -> None:
    with pytest.raises(PayloadTooLarge) as info:
        client.search(queries(20_000).ravel(), k=1)  # ~7 MB of JSON > 4 MiB
    assert info.value.status == 413
    assert isinstance(info.value, ClientError)


# -- retries ---------------------------------------------------------------


def test_connection_errors_are_retried_then_raised(free_port: int) -> None:
    transport = CountingTransport()
    vw = VectorWiseClient(
        f"http://127.0.0.1:{free_port}", retries=3, backoff=0.01, transport=transport
    )
    started = time.monotonic()
    with vw, pytest.raises(TransportError) as info:
        vw.search(queries(1)[0])
    assert time.monotonic() - started < 2.0
    assert [outcome for _, outcome in transport.calls] == ["ConnectError"] * 4
    assert "4 attempt(s)" in str(info.value)
    assert info.value.status is None


def test_no_retries_means_one_attempt(free_port: int) -> None:
    transport = CountingTransport()
    vw = VectorWiseClient(f"http://127.0.0.1:{free_port}", retries=0, transport=transport)
    with vw, pytest.raises(TransportError):
        vw.health()
    assert len(transport.calls) == 1


def test_loading_server_503_then_ready(binary: Path, tmp_path: Path) -> None:
    """A first-run build: 503 while it builds, retried, then answers."""
    index = tmp_path / "index.vwi"
    args = [
        "--auto-build",
        "--vectors",
        str(tmp_path / "v.npy"),
        "--dataset-n",
        "4000",
        "--dataset-dim",
        "16",
    ]
    with LocalServer(index, binary=binary, extra_args=args, wait_ready=False) as server:
        transport = CountingTransport()
        with VectorWiseClient(
            server.url, retries=200, backoff=0.02, backoff_max=0.05, transport=transport
        ) as vw:
            first = vw.health()
            hits = vw.search(np.ones(16), k=3)
        assert first["status"] in ("loading", "healthy")
        assert len(hits) == 3
        statuses = [s for p, s in transport.calls if p == "/search"]
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}


def test_loading_server_503_exhausts_retries(binary: Path, tmp_path: Path) -> None:
    index = tmp_path / "index.vwi"
    # Big enough to be still building when the test ends; SIGTERM stops the build.
    args = [
        "--auto-build",
        "--vectors",
        str(tmp_path / "v.npy"),
        "--dataset-n",
        "300000",
        "--dataset-dim",
        "64",
    ]
    server = LocalServer(index, binary=binary, extra_args=args, wait_ready=False)
    with server, VectorWiseClient(server.url, retries=2, backoff=0.01) as vw:
        assert vw.health() == {
            "service": "VectorWise",
            "status": "loading",
            "vectors_indexed": 0,
        }
        with pytest.raises(ServiceUnavailable) as info:
            vw.search(np.ones(64), k=3)
        assert info.value.status == 503
        assert info.value.detail == "Index not loaded yet"
        with pytest.raises(ServiceUnavailable):
            vw.stats()
        with pytest.raises(ServiceUnavailable):
            vw.wait_until_ready(timeout=0.2)


# -- the package -----------------------------------------------------------


def test_context_manager_closes_the_pool(server: LocalServer) -> None:
    with VectorWiseClient(server.url) as vw:
        vw.health()
    assert vw._http.is_closed


def test_package_metadata() -> None:
    from importlib import resources

    assert resources.files("vectorwise").joinpath("py.typed").is_file()
    assert vectorwise.__version__
    assert set(vectorwise.__all__) <= set(dir(vectorwise))
