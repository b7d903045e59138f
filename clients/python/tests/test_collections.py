"""The collections API through the client, against the real server.

One server for the module, on a fresh data directory; each test works in its
own collection (named after the test). The restart test runs its own servers
on a data directory it keeps. A few answers the real server cannot be made to
give on demand (507, a smaller --max-batch) use httpx.MockTransport at the end.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import CountingTransport, Dataset

from vectorwise import (
    ClientError,
    CollectionBatchResult,
    CollectionInfo,
    CollectionNotFound,
    CollectionSearchResult,
    ConflictError,
    InsufficientStorage,
    NotFound,
    Point,
    SearchResult,
    ValidationError,
    VectorWiseClient,
)
from vectorwise.local import LocalServer

DIM = 16


@pytest.fixture(scope="module")
def collections_server(
    binary: Path, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """A server of its own, its collections in a fresh directory (kept until the session ends)."""
    data_dir = tmp_path_factory.mktemp("collections")
    with LocalServer(dataset.index_path, binary=binary, data_dir=data_dir) as s:
        yield s


@pytest.fixture
def vw(collections_server: LocalServer) -> Iterator[VectorWiseClient]:
    with VectorWiseClient(collections_server.url, retries=2, backoff=0.01) as c:
        yield c


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A collection name unique to the test (the server allows A-Z a-z 0-9 _ -, 64 at most)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[-64:]


def points(n: int, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ids (uint64, far from 0..n so rows and ids differ) and float32 vectors."""
    rng = np.random.default_rng(seed)
    ids = (np.arange(n, dtype=np.uint64) * np.uint64(7)) + np.uint64(2**40)
    return ids, rng.standard_normal((n, dim)).astype(np.float32)


def brute_force(vectors: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Distances as the server defines them, in float64."""
    x, q = vectors.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    d: np.ndarray = -(x @ q) if metric == "ip" else ((x - q) ** 2).sum(axis=1)
    return d


# -- collections ------------------------------------------------------------


def test_collections_are_created_listed_inspected_and_deleted(
    vw: VectorWiseClient, name: str
) -> None:
    info = vw.create_collection(name, dimension=DIM)
    assert info["name"] == name
    assert (info["dimension"], info["metric"], info["points"]) == (DIM, "cosine", 0)
    assert info["seal_points"] > 0 and info["max_payload_bytes"] > 0

    again = vw.create_collection(name, DIM, metric="cosine")  # same settings: 200, not an error
    assert again["name"] == name
    assert {"name": name, "points": 0} in vw.list_collections()
    assert vw.collection_info(name)["dimension"] == DIM

    assert vw.delete_collection(name) is True
    assert name not in [c["name"] for c in vw.list_collections()]
    with pytest.raises(CollectionNotFound) as e:
        vw.collection_info(name)
    assert e.value.status == 404 and name in e.value.detail
    with pytest.raises(CollectionNotFound):
        vw.delete_collection(name)
    assert vw.delete_collection(name, missing_ok=True) is False


def test_settings_are_sent(vw: VectorWiseClient, name: str) -> None:
    info = vw.create_collection(
        name, np.int64(3), metric="l2", seal_points=500, max_payload_bytes=1024
    )
    assert (info["dimension"], info["metric"], info["seal_points"], info["max_payload_bytes"]) == (
        3,
        "l2",
        500,
        1024,
    )


def test_other_settings_are_a_typed_conflict(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, DIM, metric="l2")
    with pytest.raises(ConflictError) as e:
        vw.create_collection(name, DIM, metric="ip")
    assert isinstance(e.value, ClientError)
    assert e.value.status == 409
    assert "metric l2, asked ip" in e.value.detail
    with pytest.raises(ConflictError):
        vw.create_collection(name, DIM + 1, metric="l2")
    assert vw.collection_info(name)["metric"] == "l2"  # unchanged


def test_a_missing_collection_is_a_typed_404(vw: VectorWiseClient, name: str) -> None:
    q = np.ones(DIM, dtype=np.float32)
    calls: list[Callable[[], object]] = [
        lambda: vw.collection_info(name),
        lambda: vw.upsert(name, [1], q[None, :]),
        lambda: vw.delete(name, [1]),
        lambda: vw.get(name, [1]),
        lambda: vw.retrieve(name, 1),
        lambda: vw.search(q, k=3, collection=name),
        lambda: vw.search_batch(q[None, :], k=3, collection=name),
    ]
    for call in calls:
        with pytest.raises(CollectionNotFound) as e:
            call()
        assert isinstance(e.value, NotFound)
        assert e.value.status == 404
        assert e.value.detail == f"collection `{name}` does not exist"


# -- points -----------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_upserted_points_are_searched_with_their_payloads(
    vw: VectorWiseClient, name: str, metric: str
) -> None:
    ids, vectors = points(300)
    payloads = [{"row": i, "tag": f"t{i % 5}", "score": np.float32(i / 2)} for i in range(300)]
    vw.create_collection(name, DIM, metric=metric)
    assert vw.upsert(name, ids, vectors, payloads) == 300
    assert vw.collection_info(name)["points"] == 300

    for row in (0, 17, 299):
        hits = vw.search(vectors[row], k=10, collection=name, with_payload=True)
        assert isinstance(hits, CollectionSearchResult)
        assert hits.ids.dtype == np.int64 and hits.distances.dtype == np.float32
        expected = brute_force(vectors, vectors[row], metric)
        order = np.argsort(expected, kind="stable")[:10]
        np.testing.assert_array_equal(hits.ids, ids[order].astype(np.int64))
        np.testing.assert_allclose(hits.distances, expected[order], rtol=1e-4, atol=1e-4)
        if metric != "ip":  # under ip the nearest point need not be the query itself
            assert hits.ids[0] == ids[row]
        assert hits.payloads is not None and len(hits.payloads) == 10
        assert hits.payloads[0] == {
            "row": int(order[0]),
            "tag": f"t{order[0] % 5}",
            "score": float(order[0]) / 2,
        }
        assert hits.vectors is None


def test_search_leaves_payloads_and_vectors_out_unless_asked(
    vw: VectorWiseClient, name: str
) -> None:
    ids, vectors = points(20)
    vw.create_collection(name, DIM, metric="l2")
    vw.upsert(name, ids, vectors, [None if i % 2 else {"i": i} for i in range(20)])
    plain = vw.search(vectors[1], k=3, collection=name)
    assert plain.payloads is None and plain.vectors is None
    full = vw.search(vectors[1], k=3, collection=name, with_payload=True, with_vector=True)
    assert full.payloads is not None and full.payloads[0] is None  # point 1 has no payload
    assert full.vectors is not None and full.vectors.shape == (3, DIM)
    np.testing.assert_array_equal(full.vectors[0], vectors[1])


def test_search_batch_in_a_collection(collections_server: LocalServer, name: str) -> None:
    ids, vectors = points(100)
    transport = CountingTransport()
    with VectorWiseClient(collections_server.url, batch_size=8, transport=transport) as vw:
        vw.create_collection(name, DIM, metric="l2")
        vw.upsert(name, ids, vectors, [{"row": i} for i in range(100)])
        batch = vw.search_batch(vectors[:20], k=5, collection=name, with_payload=True)
    assert isinstance(batch, CollectionBatchResult)
    assert transport.paths().count(f"/collections/{name}/search/batch") == 3  # 8 + 8 + 4 rows
    assert batch.ids.shape == (20, 5) and batch.distances.shape == (20, 5)
    np.testing.assert_array_equal(batch.ids[:, 0], ids[:20].astype(np.int64))
    assert batch.payloads is not None
    assert [p[0] for p in batch.payloads] == [{"row": i} for i in range(20)]
    assert isinstance(batch[3], CollectionSearchResult) and batch[3].payloads == batch.payloads[3]
    with VectorWiseClient(collections_server.url) as vw:
        assert len(vw.search_batch(np.zeros((0, DIM)), k=5, collection=name)) == 0


def test_upsert_splits_into_batches_and_locates_a_bad_point(
    collections_server: LocalServer, name: str
) -> None:
    ids, vectors = points(250)
    transport = CountingTransport()
    with VectorWiseClient(collections_server.url, transport=transport) as vw:
        vw.create_collection(name, DIM)  # cosine: a zero vector is refused
        assert vw.upsert(name, ids.tolist(), vectors.tolist(), batch_size=100) == 250
        assert transport.paths().count(f"/collections/{name}/points") == 3

        vectors[150] = 0.0
        with pytest.raises(ValidationError) as e:
            vw.upsert(name, ids + np.uint64(1), vectors, batch_size=100)
        assert e.value.status == 422
        # Counted in the caller's input, not in the request that carried it.
        assert e.value.errors[0]["loc"] == ["body", "points", 150, "vector"]
        # The first request (points 0..99) was written before the refusal.
        assert vw.collection_info(name)["points"] == 350


def test_deleted_points_are_never_returned(vw: VectorWiseClient, name: str) -> None:
    ids, vectors = points(60)
    vw.create_collection(name, DIM, metric="l2")
    vw.upsert(name, ids, vectors, [{"row": i} for i in range(60)])
    gone = ids[::6]
    assert vw.delete(name, gone) == 10
    assert vw.delete(name, gone) == 0  # idempotent: nothing left to delete
    assert vw.delete(name, int(ids[1])) == 1  # one id is fine too
    gone = np.append(gone, ids[1])

    batch = vw.search_batch(vectors, k=60, collection=name)
    assert not np.isin(batch.ids, gone.astype(np.int64)).any()
    assert batch.ids.shape == (60, 49)  # k=60, but 49 live points
    for row in (0, 1, 6):
        assert ids[row] not in vw.search(vectors[row], k=5, collection=name).ids
        assert vw.retrieve(name, int(ids[row])) is None
    assert [p.id for p in vw.get(name, ids[:8])] == [int(i) for i in ids[[2, 3, 4, 5, 7]]]
    assert vw.collection_info(name)["points"] == 49


def test_get_and_retrieve(vw: VectorWiseClient, name: str) -> None:
    ids, vectors = points(10)
    vw.create_collection(name, DIM, metric="l2")
    vw.upsert(name, ids, vectors, [{"row": i} if i != 4 else None for i in range(10)])

    asked = [int(ids[5]), 12345, int(ids[4]), int(ids[0])]
    got = vw.get(name, np.array(asked, dtype=np.int64))
    assert [p.id for p in got] == [asked[0], asked[2], asked[3]]  # order asked; missing left out
    assert all(isinstance(p, Point) for p in got)
    assert got[0].payload == {"row": 5} and got[1].payload is None
    assert got[0].vector is not None and got[0].vector.dtype == np.float32
    np.testing.assert_array_equal(got[0].vector, vectors[5])  # float32 round trip, bit for bit

    bare = vw.get(name, asked, with_vector=False, with_payload=False)
    assert [(p.vector, p.payload) for p in bare] == [(None, None)] * 3
    assert vw.get(name, []) == []

    point = vw.retrieve(name, int(ids[7]))
    assert point is not None and point.id == ids[7] and point.payload == {"row": 7}
    np.testing.assert_array_equal(point.vector, vectors[7])
    assert vw.retrieve(name, 12345) is None


def test_an_existing_id_is_replaced(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, 2, metric="cosine")
    vw.upsert(name, [5], [[1.0, 0.0]], [{"v": 1}])
    vw.upsert(name, [5], [[0.0, 3.0]], [{"v": 2}])
    point = vw.retrieve(name, 5)
    assert point is not None and point.payload == {"v": 2}
    # Cosine collections store unit vectors.
    np.testing.assert_allclose(np.asarray(point.vector), [0.0, 1.0])
    assert vw.collection_info(name)["points"] == 1


def test_reads_follow_writes(vw: VectorWiseClient, name: str) -> None:
    """Every upsert is visible to the very next search and read (no refresh, no wait)."""
    rng = np.random.default_rng(1)
    vw.create_collection(name, DIM, metric="l2")
    for i in range(60):
        v = rng.standard_normal(DIM).astype(np.float32)
        assert vw.upsert(name, [i], v[None, :], [{"i": i}]) == 1
        hits = vw.search(v, k=1, collection=name, with_payload=True)
        assert (hits.ids.tolist(), hits.payloads) == ([i], [{"i": i}]), f"write {i}"
        if i % 10 == 0:
            assert vw.delete(name, [i]) == 1
            assert i not in vw.search(v, k=3, collection=name).ids
    assert vw.collection_info(name)["points"] == 54


# -- errors -----------------------------------------------------------------


def test_server_422s_surface_as_validation_errors_naming_the_field(
    vw: VectorWiseClient, name: str
) -> None:
    vw.create_collection(name, 4, metric="cosine", max_payload_bytes=64)
    cases: list[tuple[Callable[[], object], list[object]]] = [
        (lambda: vw.create_collection(name + "x", 0), ["body", "dimension"]),
        (lambda: vw.create_collection(name + "x", 4, metric="dot"), ["body", "metric"]),
        (lambda: vw.create_collection(name + "x", 4, seal_points=1), ["body", "seal_points"]),
        (lambda: vw.create_collection("no spaces", 4), ["path", "name"]),
        (lambda: vw.upsert(name, [1, 2], np.ones((2, 3))), ["body", "points", 0, "vector"]),
        (lambda: vw.upsert(name, [1], [[0, 0, 0, 0]]), ["body", "points", 0, "vector"]),
        (
            lambda: vw.upsert(name, [1, 2], np.ones((2, 4)), [None, {"s": "x" * 100}]),
            ["body", "points", 1, "payload"],
        ),
        (lambda: vw.search(np.ones(4), k=0, collection=name), ["body", "k"]),
        (lambda: vw.search(np.zeros(4), k=1, collection=name), ["body", "vector"]),
    ]
    for call, loc in cases:
        with pytest.raises(ValidationError) as e:
            call()
        assert e.value.status == 422, loc
        assert isinstance(e.value, ValueError)
        assert [err["loc"] for err in e.value.errors] == [loc]
        assert ".".join(map(str, loc)) in str(e.value)
    with pytest.raises(ValidationError) as e:  # the wrong dimension of a query is a 400
        vw.search(np.ones(3), k=1, collection=name)
    assert e.value.status == 400 and "expected 4" in e.value.detail


@pytest.mark.parametrize(
    ("ids", "vectors", "payloads", "loc", "words"),
    [
        ([[1, 2]], np.ones((2, 4)), None, ["body", "points"], "1-D"),
        (np.array([1.0, 2.0]), np.ones((2, 4)), None, ["body", "points"], "integers"),
        ([1, 2, 3], np.ones((2, 4)), None, ["body", "points"], "3 ids but 2 vectors"),
        ([1], np.ones(4), None, ["body", "points"], "2-D"),
        ([1, -2], np.ones((2, 4)), None, ["body", "points", 1, "id"], "0 to 2**63 - 1"),
        (
            np.array([2**64 - 1], dtype=np.uint64),
            np.ones((1, 4)),
            None,
            ["body", "points", 0, "id"],
            "2**63",
        ),
        ([1, 2], [[1, 2, 3, 4], [1, 2]], None, ["body", "points"], "2-D"),
        (
            [1, 2],
            [[1, 2, 3, 4], [1, 2, np.nan, 4]],
            None,
            ["body", "points", 1, "vector", 2],
            "finite",
        ),
        ([1, 2], np.ones((2, 4)), {"a": 1}, ["body", "points"], "one dict"),
        ([1, 2], np.ones((2, 4)), [{"a": 1}], ["body", "points"], "2 ids but 1 payloads"),
        ([1, 2], np.ones((2, 4)), [{"a": 1}, [2]], ["body", "points", 1, "payload"], "dict"),
        (
            [1, 2],
            np.ones((2, 4)),
            [{"a": 1}, {"b": float("nan")}],
            ["body", "points", 1, "payload"],
            "JSON",
        ),
        (
            [1, 2],
            np.ones((2, 4)),
            [{"a": object()}, None],
            ["body", "points", 0, "payload"],
            "JSON",
        ),
    ],
)
def test_bad_input_is_refused_before_sending(
    ids: object, vectors: object, payloads: object, loc: list[object], words: str
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent {request.url}")

    with VectorWiseClient("http://vw.test", transport=httpx.MockTransport(refuse)) as vw:
        with pytest.raises(ValidationError) as e:
            vw.upsert("c", ids, vectors, payloads)  # type: ignore[arg-type]
        assert isinstance(e.value, ValueError)
        assert e.value.status is None
        assert e.value.errors[0]["loc"] == loc
        assert words in str(e.value)
        assert vw.upsert("c", [], []) == 0  # nothing to send
        assert vw.upsert("c", np.zeros(0, dtype=np.int64), np.zeros((0, 4))) == 0
        with pytest.raises(ValueError, match="batch_size"):
            vw.upsert("c", [1], [[1.0]], batch_size=0)
        with pytest.raises(ValidationError, match="non-empty"):
            vw.collection_info("")
        with pytest.raises(ValidationError, match="integers"):
            vw.get("c", ["a"])
        with pytest.raises(ValidationError, match="1-D"):
            vw.delete("c", [[1]])


# -- UUID ids ------------------------------------------------------------------

U1 = "550e8400-e29b-41d4-a716-446655440000"
U2 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
U3 = "00000000-0000-0000-0000-000000000001"  # uuid.UUID(int=1): not the point 1
U4 = "f47ac10b-58cc-4372-a567-0e02b2c3d479"


def uuid_points(n: int) -> tuple[list[Any], list[Any], np.ndarray]:
    """``n`` points, ids alternating int / UUID (the UUIDs given as uuid.UUID objects and
    as strings in each form uuid.UUID reads), the same ids as the server writes them,
    and float32 vectors."""
    rng = np.random.default_rng(5)
    given: list[Any] = []
    canonical: list[Any] = []
    for i in range(n):
        if i % 2 == 0:
            given.append(i * 11)
            canonical.append(i * 11)
            continue
        u = uuid.UUID(int=(i * 0x9E3779B97F4A7C15) << 40 | i)
        forms = [u, str(u).upper(), u.hex, "{" + str(u) + "}", u.urn, str(u)]
        given.append(forms[(i // 2) % len(forms)])
        canonical.append(str(u))
    return given, canonical, rng.standard_normal((n, DIM)).astype(np.float32)


def test_uuid_ids_beside_int_ids(vw: VectorWiseClient, name: str) -> None:
    """Upsert, get, retrieve, search (single and batch) and delete with int and UUID ids
    in one collection; UUIDs come back hyphenated in lower case, ints as ints."""
    given, canonical, vectors = uuid_points(40)
    vw.create_collection(name, DIM, metric="l2")
    assert vw.upsert(name, given, vectors, [{"row": i} for i in range(40)]) == 40
    assert vw.collection_info(name)["points"] == 40

    # get / retrieve, by any form of the id.
    asked = [given[3], 12345, canonical[2], uuid.UUID(canonical[5]), str(uuid.uuid4())]
    got = vw.get(name, asked)
    assert [p.id for p in got] == [canonical[3], canonical[2], canonical[5]]
    assert [type(p.id) for p in got] == [str, int, str]
    assert [p.payload for p in got] == [{"row": 3}, {"row": 2}, {"row": 5}]
    np.testing.assert_array_equal(got[0].vector, vectors[3])  # bit for bit
    point = vw.retrieve(name, canonical[7].upper())
    assert point is not None and point.id == canonical[7] and point.payload == {"row": 7}
    point = vw.retrieve(name, uuid.UUID(canonical[9]))
    assert point is not None and point.id == canonical[9]
    assert vw.retrieve(name, str(uuid.uuid4())) is None

    # search: hits' ids are ints and UUID strings, in brute force's order.
    order = np.argsort(brute_force(vectors, vectors[1], "l2"), kind="stable")[:10]
    hits = vw.search(vectors[1], k=10, collection=name, with_payload=True)
    assert hits.point_ids == [canonical[i] for i in order]
    assert hits.point_ids[0] == canonical[1]
    assert [i for i, _ in hits] == hits.point_ids
    assert hits.payloads == [{"row": int(i)} for i in order]
    with pytest.raises(ValueError, match=r"UUID id .* `point_ids`"):
        hits.ids  # noqa: B018
    only_int = vw.search(vectors[0], k=1, collection=name)
    assert only_int.ids.tolist() == [0] and only_int.point_ids == [0]

    batch = vw.search_batch(vectors[:6], k=3, collection=name)
    assert [row[0] for row in batch.point_ids] == canonical[:6]
    assert batch.distances.shape == (6, 3)
    with pytest.raises(ValueError, match=r"row \d+, hit \d+ has the UUID id"):
        batch.ids  # noqa: B018

    # A UUID written again in another form is the same point: replaced.
    vw.upsert(name, [canonical[1].upper()], vectors[1:2] + 1, [{"row": "again"}])
    assert vw.collection_info(name)["points"] == 40
    point = vw.retrieve(name, canonical[1])
    assert point is not None and point.payload == {"row": "again"}

    # delete by any form; deleted points are never returned.
    gone = [uuid.UUID(canonical[1]), canonical[3].upper(), 0, str(uuid.uuid4())]
    assert vw.delete(name, gone) == 3
    assert vw.delete(name, gone) == 0
    assert vw.delete(name, canonical[5]) == 1  # one id
    left = [c for c in canonical if c not in (canonical[1], canonical[3], 0, canonical[5])]
    assert vw.collection_info(name)["points"] == len(left) == 36
    assert [p.id for p in vw.get(name, canonical)] == left
    batch = vw.search_batch(vectors, k=40, collection=name)
    assert all(sorted(map(str, row)) == sorted(map(str, left)) for row in batch.point_ids)


def test_an_int_and_a_uuid_never_name_the_same_point(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, 2, metric="l2")
    vw.upsert(name, [1, uuid.UUID(int=1)], [[0.0, 0.0], [1.0, 0.0]], [{"k": "int"}, {"k": "uuid"}])
    assert vw.collection_info(name)["points"] == 2
    assert [(p.id, p.payload) for p in vw.get(name, [U3, 1])] == [
        (U3, {"k": "uuid"}),
        (1, {"k": "int"}),
    ]
    assert list(vw.search([0.0, 0.0], k=2, collection=name)) == [(1, 0.0), (U3, 1.0)]
    assert vw.delete(name, [U3]) == 1
    point = vw.retrieve(name, 1)
    assert point is not None and point.payload == {"k": "int"}


def test_a_bad_uuid_is_refused_before_sending_where_the_server_would(
    collections_server: LocalServer, vw: VectorWiseClient, name: str
) -> None:
    """The client's refusal has the ``loc`` and ``type`` of the server's 422 for the same
    request (sent here as raw JSON), with ``status`` None, and nothing is written."""
    vw.create_collection(name, 2, metric="l2")
    bad = [7, U1, "550e8400-e29b-41d4-a716-44665544000z"]
    cases: list[tuple[Callable[[], object], str, str, dict[str, Any], list[object]]] = [
        (
            lambda: vw.upsert(name, bad, np.ones((3, 2))),
            "PUT",
            "points",
            {"points": [{"id": i, "vector": [1.0, 1.0]} for i in bad]},
            ["body", "points", 2, "id"],
        ),
        (lambda: vw.delete(name, bad), "POST", "points/delete", {"ids": bad}, ["body", "ids", 2]),
        (lambda: vw.get(name, bad), "POST", "points/get", {"ids": bad}, ["body", "ids", 2]),
    ]
    for call, method, route, raw, loc in cases:
        with pytest.raises(ValidationError) as mine:
            call()
        assert mine.value.status is None and isinstance(mine.value, ValueError)
        response = httpx.request(
            method, f"{collections_server.url}/collections/{name}/{route}", json=raw
        )
        assert response.status_code == 422, response.text
        theirs = response.json()["detail"]
        assert [(e["loc"], e["type"]) for e in theirs] == [(loc, "uuid_parsing")]
        assert [(e["loc"], e["type"]) for e in mine.value.errors] == [(loc, "uuid_parsing")]
        assert ".".join(map(str, loc)) in str(mine.value)
    with pytest.raises(ValidationError) as e:
        vw.retrieve(name, "not-a-uuid")
    assert e.value.errors[0]["loc"] == ["path", "id"]
    assert vw.collection_info(name)["points"] == 0


def test_the_served_index_refuses_a_uuid_point_in_its_integer_answer(
    binary: Path, dataset: Dataset, tmp_path: Path
) -> None:
    """The demo's /search answers int64 ids only: once the collection `default` holds a
    UUID point that a search would return, the server's 409 is a ConflictError naming
    the point; the collection search answers it."""
    server = LocalServer(dataset.index_path, binary=binary, data_dir=tmp_path)
    with server, VectorWiseClient(server.url) as vw:
        dim = vw.stats()["dimension"]
        q = np.ones(dim, dtype=np.float32)
        vw.upsert("default", [U4], q[None, :])
        with pytest.raises(ConflictError, match=U4) as e:
            vw.search(q, k=3)
        assert e.value.status == 409
        with pytest.raises(ConflictError, match=U4):
            vw.search_batch(q[None, :], k=3)
        hits = vw.search(q, k=3, collection="default")
        assert hits.point_ids[0] == U4 and all(type(i) is int for i in hits.point_ids[1:])


# -- durability ---------------------------------------------------------------


def sealed(info: CollectionInfo) -> bool:
    return any(seg["kind"] == "sealed" for seg in info["segments"])


def test_points_survive_a_restart(binary: Path, dataset: Dataset, tmp_path: Path) -> None:
    """Stop the server and start another on the same data directory: everything is there,
    whether it was still in the log or already sealed into an index segment."""
    ids, vectors = points(300, seed=3)
    payloads = [{"row": i} for i in range(300)]
    name = "kept"
    server = LocalServer(dataset.index_path, binary=binary, data_dir=tmp_path)
    with server, VectorWiseClient(server.url) as vw:
        vw.create_collection(name, DIM, metric="l2", seal_points=200)
        vw.upsert(name, ids[:250], vectors[:250], payloads[:250], batch_size=64)
        deadline = time.monotonic() + 30
        while not sealed(vw.collection_info(name)):  # the optimiser seals in the background
            assert time.monotonic() < deadline, vw.collection_info(name)
            time.sleep(0.05)
        vw.upsert(name, ids[250:], vectors[250:], payloads[250:])  # stays in the log
        assert vw.delete(name, ids[:5]) == 5  # points of the sealed segment
    assert server.stop() is None  # already stopped, cleanly
    assert (tmp_path / name).is_dir()  # the data directory given is kept

    again = LocalServer(dataset.index_path, binary=binary, data_dir=tmp_path)
    with again, VectorWiseClient(again.url) as vw:
        assert {"name": name, "points": 295} in vw.list_collections()
        info = vw.collection_info(name)
        assert (info["dimension"], info["metric"], info["seal_points"]) == (DIM, "l2", 200)
        assert sealed(info)
        batch = vw.search_batch(vectors, k=1, collection=name, with_payload=True, recall_target=1.0)
        np.testing.assert_array_equal(batch.ids[5:, 0], ids[5:].astype(np.int64))
        assert batch.payloads is not None
        assert [p[0] for p in batch.payloads[5:]] == payloads[5:]
        assert not np.isin(batch.ids, ids[:5].astype(np.int64)).any()
        assert vw.retrieve(name, int(ids[0])) is None
        point = vw.retrieve(name, int(ids[299]))
        assert point is not None and point.payload == {"row": 299}
        np.testing.assert_array_equal(point.vector, vectors[299])


# -- the demo search is unchanged ----------------------------------------------


def test_search_without_a_collection_is_the_served_index(vw: VectorWiseClient) -> None:
    dim = vw.stats()["dimension"]
    hits = vw.search(np.ones(dim), k=3)
    assert type(hits) is SearchResult
    batch = vw.search_batch(np.ones((2, dim)), k=3)
    assert not isinstance(batch, CollectionBatchResult)


# -- answers the real server gives only in trouble -------------------------------


def scripted(
    *answers: httpx.Response, binary: bool = True
) -> tuple[VectorWiseClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(queue)

    vw = VectorWiseClient(
        "http://vw.test", transport=httpx.MockTransport(handle), backoff=0, binary=binary
    )
    vw._sleep = lambda _: None
    return vw, seen


def test_a_full_disk_is_a_typed_507() -> None:
    vw, seen = scripted(httpx.Response(507, json={"detail": "Internal server error"}))
    with pytest.raises(InsufficientStorage) as e:
        vw.upsert("c", [1], [[1.0, 2.0]])
    assert e.value.status == 507
    assert len(seen) == 1  # a form's 507 is not asked again as JSON


def form_ids(request: httpx.Request) -> list[Any]:
    """The ``ids`` part of an upsert form."""
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    part = rb'name="ids"\r\nContent-Type: application/json\r\n\r\n(.*?)\r\n'
    m = re.search(part, request.content)
    assert m
    ids: list[Any] = json.loads(m[1])
    return ids


@pytest.mark.parametrize("binary", [True, False], ids=["form", "json"])
def test_upsert_follows_the_servers_smaller_limit(binary: bool) -> None:
    too_long = {
        "detail": [
            {
                # A form's ids are its list, a JSON body's points.
                "loc": ["body", "ids" if binary else "points"],
                "msg": "List should have at most 3 items",
                "type": "too_long",
                "ctx": {"max_length": 3},
            }
        ]
    }
    vw, seen = scripted(
        httpx.Response(422, json=too_long),
        httpx.Response(200, json={"upserted": 3}),
        httpx.Response(200, json={"upserted": 2}),
        binary=binary,
    )
    assert vw.upsert("c", range(5), np.ones((5, 2)), batch_size=10) == 5
    if binary:
        assert [form_ids(r) for r in seen] == [[0, 1, 2, 3, 4], [0, 1, 2], [3, 4]]
    else:
        sizes = [len(json.loads(r.content)["points"]) for r in seen]
        assert sizes == [5, 3, 2]
        assert json.loads(seen[1].content)["points"][0] == {"id": 0, "vector": [1.0, 1.0]}
    assert vw.batch_size == 1024  # the search batch size is not the upsert's


def test_a_503_on_a_write_is_retried() -> None:
    vw, seen = scripted(
        httpx.Response(503, json={"detail": "busy"}, headers={"retry-after": "0"}),
        httpx.Response(200, json={"upserted": 1}),
    )
    assert vw.upsert("c", [1], [[1.0]]) == 1
    assert len(seen) == 2 and seen[0].content == seen[1].content


def test_names_are_sent_percent_encoded() -> None:
    vw, seen = scripted(httpx.Response(404, json={"detail": "collection `a/b` does not exist"}))
    with pytest.raises(CollectionNotFound):
        vw.collection_info("a/b")
    assert seen[0].url.raw_path == b"/collections/a%2Fb"
