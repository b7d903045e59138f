"""Filtered search and payload indexes through the client, against the real server.

Every filtered answer is checked against brute force over the points the test
wrote: `passes` below decides each point from the filter's JSON by the
server's rules (crates/store/src/filter.rs), written again here and
independent of `vectorwise.filters`; then numpy ranks the points that pass.
The same filters run on four collections: points in memory or sealed into
index segments (some deleted), without payload indexes or with them (declared
half-way through the writes, so both the build and the write path fill them).
"""

from __future__ import annotations

import json
import math
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
    CollectionBatchResult,
    CollectionNotFound,
    ConflictError,
    FilterInfo,
    NotFound,
    SearchInfo,
    ValidationError,
    VectorWiseClient,
)
from vectorwise.filters import (
    MAX_ANY,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_HAS_ID,
    Condition,
    Filter,
    HasId,
    IsEmpty,
    Match,
    MatchAny,
    Range,
)
from vectorwise.local import LocalServer

DIM = 8
N = 400
TOPICS = ["news", "sport", "tech", "food"]
# Python ints and floats alike: 3 and 3.0 are different JSON to `match`.
PRICES: list[Any] = [1, 2.5, 3, 3.0, 4.5, 7, -1.5]
INDEXES = [
    ("topic", "keyword"),
    ("n", "integer"),
    ("price", "float"),
    ("flag", "bool"),
    ("tags", "keyword"),
    ("meta.source", "keyword"),
    ("items.name", "keyword"),
    ("maybe", "keyword"),
]


# -- the reference: the server's rules, from the JSON -------------------------


def values(payload: dict[str, Any] | None, key: str) -> list[Any]:
    """The leaves at a dotted key: arrays walked into, one level flattened, nulls left out."""
    out: list[Any] = []

    def walk(v: Any, parts: list[str]) -> None:
        if not parts:
            if isinstance(v, list):
                out.extend(x for x in v if x is not None)
            elif v is not None:
                out.append(v)
        elif isinstance(v, dict):
            if parts[0] in v:
                walk(v[parts[0]], parts[1:])
        elif isinstance(v, list):
            for x in v:
                if isinstance(x, dict):
                    walk(x, parts)

    if payload is not None:
        walk(payload, [p[:-2] if p.endswith("[]") else p for p in key.split(".")])
    return out


def same_json(want: Any, v: Any) -> bool:
    """`match`: a string equals a string, an integer an integer, a bool a bool."""
    if isinstance(want, bool) or isinstance(v, bool):
        return type(want) is bool and type(v) is bool and want == v
    if isinstance(want, int):
        return type(v) is int and v == want
    return isinstance(want, str) and isinstance(v, str) and want == v


def in_range(r: dict[str, float], x: float) -> bool:
    return (
        ("gt" not in r or x > r["gt"])
        and ("gte" not in r or x >= r["gte"])
        and ("lt" not in r or x < r["lt"])
        and ("lte" not in r or x <= r["lte"])
    )


def holds(c: dict[str, Any], pid: int, payload: dict[str, Any] | None) -> bool:
    if "has_id" in c:
        return pid in c["has_id"]
    if "is_empty" in c:
        return not values(payload, c["is_empty"]["key"])
    if "match" in c:
        m = c["match"]
        wanted = m["any"] if "any" in m else [m["value"]]
        return any(same_json(w, v) for v in values(payload, c["key"]) for w in wanted)
    if "range" in c:
        return any(
            isinstance(v, (int, float)) and not isinstance(v, bool) and in_range(c["range"], v)
            for v in values(payload, c["key"])
        )
    return passes(c, pid, payload)  # a nested filter


def passes(f: dict[str, Any], pid: int, payload: dict[str, Any] | None) -> bool:
    return (
        all(holds(c, pid, payload) for c in f.get("must") or [])
        and (not f.get("should") or any(holds(c, pid, payload) for c in f["should"]))
        and not any(holds(c, pid, payload) for c in f.get("must_not") or [])
    )


def keys_of(f: dict[str, Any]) -> set[str]:
    """The keys of every match / range / is_empty condition, nested ones too,
    as the server names them (``a[].b`` is the key ``a.b``)."""
    out: set[str] = set()
    for c in [*(f.get("must") or []), *(f.get("should") or []), *(f.get("must_not") or [])]:
        if "is_empty" in c:
            out.add(c["is_empty"]["key"].replace("[]", ""))
        elif "key" in c:
            out.add(c["key"].replace("[]", ""))
        elif "has_id" not in c:
            out |= keys_of(c)
    return out


# -- the data -------------------------------------------------------------------


def make_payload(i: int, rng: np.random.Generator) -> dict[str, Any] | None:
    if i % 23 == 0:
        return None  # no payload: every key is empty
    p: dict[str, Any] = {
        "topic": TOPICS[int(rng.integers(4))],
        "n": int(rng.integers(-3, 7)),
        "price": PRICES[int(rng.integers(len(PRICES)))],
        "flag": bool(rng.integers(2)),
        "tags": [t for t in "abcd" if rng.random() < 0.35],  # [] is empty too
    }
    if i % 5:
        p["meta"] = {"source": "wiki" if i % 3 else "web", "year": 2000 + i % 25}
    if i % 7 == 0:
        p["items"] = [{"name": "x"}, {"name": ["y", "z"] if i % 2 else "w"}]
    if i % 4 == 1:
        p["maybe"] = None
    elif i % 4 == 2:
        p["maybe"] = "v"
    return p


class Data:
    def __init__(self) -> None:
        rng = np.random.default_rng(11)
        self.ids = np.arange(N, dtype=np.int64) * 3 + 1000  # ids are not rows
        self.vectors = rng.standard_normal((N, DIM)).astype(np.float32)
        self.payloads = [make_payload(i, rng) for i in range(N)]
        self.live = np.ones(N, dtype=bool)
        self.queries = rng.standard_normal((4, DIM)).astype(np.float32)

    def allowed(self, f: dict[str, Any]) -> np.ndarray:
        ok = [passes(f, int(pid), p) for pid, p in zip(self.ids.tolist(), self.payloads)]
        return np.asarray(ok, dtype=bool) & self.live

    def expected(self, f: dict[str, Any], q: np.ndarray, k: int) -> np.ndarray:
        """Ids of the k nearest points that pass (squared L2, float64), nearest first."""
        rows = np.flatnonzero(self.allowed(f))
        d = ((self.vectors[rows].astype(np.float64) - q.astype(np.float64)) ** 2).sum(axis=1)
        return self.ids[rows[np.argsort(d, kind="stable")[:k]]]


# -- the server and its collections ----------------------------------------------


@pytest.fixture(scope="module")
def filter_server(
    binary: Path, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    data_dir = tmp_path_factory.mktemp("filters")
    with LocalServer(dataset.index_path, binary=binary, data_dir=data_dir) as s:
        yield s


@pytest.fixture
def vw(filter_server: LocalServer) -> Iterator[VectorWiseClient]:
    with VectorWiseClient(filter_server.url, retries=2, backoff=0.01) as c:
        yield c


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[-64:]


class Coll:
    def __init__(self, name: str, data: Data, indexed: bool, sealed: bool) -> None:
        self.name, self.data, self.indexed, self.sealed = name, data, indexed, sealed


def _wait_sealed(vw: VectorWiseClient, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        segs = vw.collection_info(name)["segments"]
        sealed = sum(s["points"] for s in segs if s["kind"] == "sealed")
        if sealed >= N // 2 and not any(s["kind"] == "frozen" for s in segs):
            return
        assert time.monotonic() < deadline, segs
        time.sleep(0.05)


@pytest.fixture(
    scope="module",
    params=[(False, False), (True, False), (False, True), (True, True)],
    ids=["memory", "memory-indexed", "sealed", "sealed-indexed"],
)
def coll(request: pytest.FixtureRequest, filter_server: LocalServer) -> Coll:
    indexed, sealed = request.param
    name = f"c_{'i' if indexed else 'u'}_{'s' if sealed else 'm'}"
    data = Data()
    with VectorWiseClient(filter_server.url) as vw:
        vw.create_collection(name, DIM, metric="l2", seal_points=100 if sealed else None)
        half = N // 2
        vw.upsert(name, data.ids[:half], data.vectors[:half], data.payloads[:half], batch_size=64)
        if indexed:
            for field, kind in INDEXES:
                assert vw.create_payload_index(name, field, kind) is True
        vw.upsert(name, data.ids[half:], data.vectors[half:], data.payloads[half:], batch_size=64)
        if sealed:
            _wait_sealed(vw, name)
            gone = data.ids[::10]
            assert vw.delete(name, gone) == len(gone)
            data.live[::10] = False
    return Coll(name, data, indexed, sealed)


# -- every condition, and combinations ------------------------------------------------

IDS = (np.arange(N, dtype=np.int64) * 3 + 1000).tolist()


def m(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "match": {"value": value}}


def r(key: str, **bounds: float) -> dict[str, Any]:
    return {"key": key, "range": bounds}


# name: (the typed filter, the JSON it stands for, written out here, and the keys no
# index of INDEXES answers: they are read from payloads even when indexed)
CASES: dict[str, tuple[Filter | Condition, dict[str, Any], set[str]]] = {
    "match_keyword": (Filter(must=[Match("topic", "news")]), {"must": [m("topic", "news")]}, set()),
    "match_integer": (Filter(must=[Match("n", 3)]), {"must": [m("n", 3)]}, set()),
    # A float index holds no `match`; 3 matches the stored integer 3, not 3.0.
    "match_integer_not_float": (
        Filter(must=[Match("price", 3)]),
        {"must": [m("price", 3)]},
        {"price"},
    ),
    "match_bool": (Filter(must=[Match("flag", False)]), {"must": [m("flag", False)]}, set()),
    "match_in_array": (Filter(must=[Match("tags", "c")]), {"must": [m("tags", "c")]}, set()),
    "match_dotted": (
        Filter(must=[Match("meta.source", "web")]),
        {"must": [m("meta.source", "web")]},
        set(),
    ),
    "match_array_of_objects": (
        Filter(must=[Match("items.name", "y")]),
        {"must": [m("items.name", "y")]},
        set(),
    ),
    # The same key written `items[].name`: the same key, so the same index.
    "match_brackets": (
        Filter(must=[Match("items[].name", "w")]),
        {"must": [m("items[].name", "w")]},
        set(),
    ),
    "match_any": (
        Filter(must=[MatchAny("topic", ["news", "tech"])]),
        {"must": [{"key": "topic", "match": {"any": ["news", "tech"]}}]},
        set(),
    ),
    "match_any_array": (
        Filter(must=[MatchAny("tags", ("a", "d"))]),
        {"must": [{"key": "tags", "match": {"any": ["a", "d"]}}]},
        set(),
    ),
    "match_any_integers": (
        Filter(must=[MatchAny("n", [-3, 0, 6])]),
        {"must": [{"key": "n", "match": {"any": [-3, 0, 6]}}]},
        set(),
    ),
    "range_float": (
        Filter(must=[Range("price", gte=2.5, lt=4.5)]),
        {"must": [r("price", gte=2.5, lt=4.5)]},
        set(),
    ),
    "range_integer": (
        Filter(must=[Range("n", gt=0, lte=4)]),
        {"must": [r("n", gt=0, lte=4)]},
        set(),
    ),
    "range_one_bound": (
        Filter(must=[Range("price", lte=-1.5)]),
        {"must": [r("price", lte=-1.5)]},
        set(),
    ),
    "range_unindexed_key": (
        Filter(must=[Range("meta.year", gte=2020)]),
        {"must": [r("meta.year", gte=2020)]},
        {"meta.year"},
    ),
    "has_id": (
        Filter(must=[HasId(IDS[5:300:7])]),
        {"must": [{"has_id": IDS[5:300:7]}]},
        set(),
    ),
    "is_empty_missing": (
        Filter(must=[IsEmpty("meta.source")]),
        {"must": [{"is_empty": {"key": "meta.source"}}]},
        set(),
    ),
    "is_empty_list": (
        Filter(must=[IsEmpty("tags")]),
        {"must": [{"is_empty": {"key": "tags"}}]},
        set(),
    ),
    "is_empty_null": (
        Filter(must=[IsEmpty("maybe")]),
        {"must": [{"is_empty": {"key": "maybe"}}]},
        set(),
    ),
    "should": (
        Filter(should=[Match("topic", "food"), Range("n", gte=5)]),
        {"should": [m("topic", "food"), r("n", gte=5)]},
        set(),
    ),
    "must_not": (
        Filter(must_not=[Match("topic", "news"), IsEmpty("tags")]),
        {"must_not": [m("topic", "news"), {"is_empty": {"key": "tags"}}]},
        set(),
    ),
    "all_three": (
        Filter(
            must=[Range("price", gt=1)],
            should=[Match("flag", True), MatchAny("tags", ["b"])],
            must_not=[HasId(IDS[::4]), Match("meta.source", "wiki")],
        ),
        {
            "must": [r("price", gt=1)],
            "should": [m("flag", True), {"key": "tags", "match": {"any": ["b"]}}],
            "must_not": [{"has_id": IDS[::4]}, m("meta.source", "wiki")],
        },
        set(),
    ),
    "nested": (
        Filter(
            should=[
                Filter(must=[Match("topic", "sport"), Match("flag", True)]),
                Filter(must=[Match("topic", "tech")], must_not=[Range("n", lt=2)]),
            ],
            must_not=[Filter(must=[IsEmpty("meta.source"), Match("n", 0)])],
        ),
        {
            "should": [
                {"must": [m("topic", "sport"), m("flag", True)]},
                {"must": [m("topic", "tech")], "must_not": [r("n", lt=2)]},
            ],
            "must_not": [{"must": [{"is_empty": {"key": "meta.source"}}, m("n", 0)]}],
        },
        set(),
    ),
    # One condition is the filter of must=[it].
    "a_single_condition": (Range("n", gte=4), {"must": [r("n", gte=4)]}, set()),
    "empty": (Filter(), {}, set()),
    "nothing_matches": (
        Filter(must=[Match("topic", "gardening")]),
        {"must": [m("topic", "gardening")]},
        set(),
    ),
    "match_any_of_none": (
        Filter(must=[MatchAny("topic", [])]),
        {"must": [{"key": "topic", "match": {"any": []}}]},
        set(),
    ),
    "contradiction": (
        Filter(must=[Match("flag", True)], must_not=[Match("flag", True)]),
        {"must": [m("flag", True)], "must_not": [m("flag", True)]},
        set(),
    ),
}


def test_typed_filters_serialise_to_the_servers_json() -> None:
    for f, fj, _ in CASES.values():
        assert (f.to_dict() if isinstance(f, Filter) else {"must": [f.to_dict()]}) == fj
        assert json.loads(json.dumps(fj)) == fj  # plain JSON


@pytest.mark.parametrize("case", list(CASES))
def test_filtered_search_is_brute_force_over_the_points_that_pass(
    vw: VectorWiseClient, coll: Coll, case: str
) -> None:
    f, fj, slow = CASES[case]
    data = coll.data
    allowed = data.allowed(fj)
    live = int(data.live.sum())
    for k in (1, 10, 100):
        for q in data.queries[:2]:
            hits = vw.search(
                q, k=k, collection=coll.name, filter=f, with_payload=True, recall_target=1.0
            )
            want = data.expected(fj, q, k)
            np.testing.assert_array_equal(hits.ids, want, err_msg=f"{case} k={k}")
            assert len(hits) == min(k, int(allowed.sum()))
            rows = (hits.ids - 1000) // 3
            assert hits.payloads == [data.payloads[r] for r in rows]
            info = hits.used.filter
            assert isinstance(info, FilterInfo)
            assert info.allowed == int(allowed.sum())
            assert info.selectivity == pytest.approx(allowed.sum() / live, abs=1e-6)
            # Keys read from payloads: every key without an index; with them,
            # only those no index can answer.
            assert set(info.unindexed) == (slow & keys_of(fj) if coll.indexed else keys_of(fj))
            if coll.sealed:
                assert info.paths and set(info.paths) <= {"exact", "sq8", "scan", "graph"}
            else:
                assert info.paths == ("exact",)  # memory segments only


@pytest.mark.parametrize("case", ["all_three", "nested", "match_any_array", "has_id"])
def test_a_dict_filter_is_the_same_as_the_typed_one(
    vw: VectorWiseClient, coll: Coll, case: str
) -> None:
    f, fj, _ = CASES[case]
    q = coll.data.queries[2]
    typed = vw.search(q, k=20, collection=coll.name, filter=f, recall_target=1.0)
    plain = vw.search(q, k=20, collection=coll.name, filter=fj, recall_target=1.0)
    np.testing.assert_array_equal(typed.ids, plain.ids)
    np.testing.assert_array_equal(typed.ids, coll.data.expected(fj, q, 20))
    assert typed.used.filter == plain.used.filter


def test_batch_search_with_a_filter(filter_server: LocalServer, coll: Coll) -> None:
    f = Filter(must=[MatchAny("topic", ["sport", "food"])], must_not=[IsEmpty("tags")])
    fj = {
        "must": [{"key": "topic", "match": {"any": ["sport", "food"]}}],
        "must_not": [{"is_empty": {"key": "tags"}}],
    }
    data = coll.data
    transport = CountingTransport()
    queries = np.vstack([data.queries, data.vectors[:7]])  # 11 rows
    with VectorWiseClient(filter_server.url, batch_size=4, transport=transport) as vw:
        batch = vw.search_batch(
            queries, k=8, collection=coll.name, filter=f, with_payload=True, recall_target=1.0
        )
    assert isinstance(batch, CollectionBatchResult)
    # Split into three requests (4 + 4 + 3 rows), each carrying the filter.
    assert transport.paths().count(f"/collections/{coll.name}/search/batch") == 3
    assert batch.ids.shape == (11, 8)
    for row, q in enumerate(queries):
        np.testing.assert_array_equal(batch.ids[row], data.expected(fj, q, 8), err_msg=str(row))
    assert batch.payloads is not None
    assert all(p is not None and passes(fj, 0, p) for row in batch.payloads for p in row)
    assert all(r.used.filter is not None for r in batch)
    assert batch.used.filter is not None and batch.used.filter.allowed == data.allowed(fj).sum()
    assert batch.consistent


def test_a_filter_too_long_for_a_url_goes_as_json(filter_server: LocalServer, coll: Coll) -> None:
    # 10,000 ids (the server's limit): far past what a query string carries.
    ids = [int(i) for i in coll.data.ids[:20]] + list(range(10**9, 10**9 + 9_980))
    fj = {"must": [{"has_id": ids}]}
    q = coll.data.queries[1]
    transport = CountingTransport()
    with VectorWiseClient(filter_server.url, transport=transport) as vw:
        assert vw.binary
        # Before: httpx.InvalidURL ("URL too long") from the binary form's query string.
        hits = vw.search(q, k=5, collection=coll.name, filter=HasId(ids), recall_target=1.0)
        batch = vw.search_batch(
            coll.data.queries, k=5, collection=coll.name, filter=HasId(ids), recall_target=1.0
        )
        assert vw.binary, "short requests still go in binary"
    np.testing.assert_array_equal(hits.ids, coll.data.expected(fj, q, 5))
    for row, query in enumerate(coll.data.queries):
        np.testing.assert_array_equal(batch.ids[row], coll.data.expected(fj, query, 5))
    assert [status for _, status in transport.calls] == [200, 200], transport.calls


def test_a_filter_that_matches_nothing_returns_no_hits(vw: VectorWiseClient, coll: Coll) -> None:
    nothing: list[Condition | dict[str, Any]] = [
        Match("topic", "nope"),
        Filter(must=[HasId([1, 2, 3])]),
        {"must": [{"has_id": []}]},
    ]
    for f in nothing:
        hits = vw.search(coll.data.queries[0], k=10, collection=coll.name, filter=f)
        assert len(hits) == 0 and hits.ids.shape == (0,) and hits.distances.shape == (0,)
        assert hits.used.filter is not None
        assert (hits.used.filter.allowed, hits.used.filter.selectivity) == (0, 0.0)
        batch = vw.search_batch(coll.data.queries, k=10, collection=coll.name, filter=f)
        assert batch.ids.shape == (4, 0) and [len(r) for r in batch] == [0] * 4


def test_a_search_without_a_filter_reports_none(vw: VectorWiseClient, coll: Coll) -> None:
    hits = vw.search(coll.data.queries[0], k=5, collection=coll.name)
    assert hits.used.filter is None
    everything = vw.search(coll.data.queries[0], k=5, collection=coll.name, filter=Filter())
    assert everything.used.filter is not None
    assert everything.used.filter.allowed == int(coll.data.live.sum())
    assert everything.used.filter.selectivity == 1.0


def test_approximate_filtered_paths_answer_only_points_that_pass(
    vw: VectorWiseClient, name: str
) -> None:
    """Past 2048 allowed points a sealed segment leaves exact search for a filtered
    scan: every hit still passes, distances are exact, and recall stays high."""
    rng = np.random.default_rng(5)
    n, dim = 8000, 16
    centres = rng.standard_normal((20, dim))
    vectors = (centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, dim))).astype(
        np.float32
    )
    topics = rng.integers(0, 4, n)
    vw.create_collection(name, dim, metric="l2", seal_points=4000)
    vw.upsert(name, np.arange(n), vectors, [{"t": int(t)} for t in topics])
    deadline = time.monotonic() + 60
    while (
        sum(s["points"] for s in vw.collection_info(name)["segments"] if s["kind"] == "sealed") < n
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    f = Filter(must=[MatchAny("t", [0, 1, 2])])
    rows = np.flatnonzero(topics != 3)
    recalls = []
    for q in vectors[rng.integers(0, n, 30)] + 0.05:
        hits = vw.search(q, k=10, collection=name, filter=f, profile="high_accuracy")
        assert hits.used.filter is not None
        assert hits.used.filter.allowed == len(rows)
        assert "exact" not in hits.used.filter.paths, hits.used.filter
        assert len(hits) == 10 and all(topics[i] != 3 for i in hits.ids)
        d = ((vectors[hits.ids].astype(np.float64) - q) ** 2).sum(axis=1)
        np.testing.assert_allclose(hits.distances, d, rtol=1e-3, atol=1e-3)
        assert np.all(np.diff(hits.distances) >= 0)
        exact = rows[np.argsort(((vectors[rows].astype(np.float64) - q) ** 2).sum(axis=1))[:10]]
        recalls.append(len(set(hits.ids.tolist()) & set(exact.tolist())) / 10)
    assert np.mean(recalls) >= 0.9, recalls


# -- indexes keep up with writes ------------------------------------------------------


def test_indexed_filters_follow_upserts_and_deletes(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, 2, metric="l2")
    assert vw.create_payload_index(name, "topic", "keyword") is True  # before any point
    vw.upsert(name, [1, 2, 3], [[0, 0], [1, 0], [2, 0]], [{"topic": "a"}, {"topic": "b"}, None])
    f = Match("topic", "a")

    def found() -> list[int]:
        hits = vw.search([0.0, 0.0], k=10, collection=name, filter=f)
        assert hits.used.filter is not None and hits.used.filter.unindexed == ()
        return [int(i) for i in hits.ids]

    assert found() == [1]
    vw.upsert(name, [2, 3], [[1, 0], [2, 0]], [{"topic": "a"}, {"topic": ["x", "a"]}])
    assert found() == [1, 2, 3]
    vw.upsert(name, [1], [[0, 0]], [{"topic": "b"}])  # replaced: no longer "a"
    assert found() == [2, 3]
    vw.delete(name, [2])
    assert found() == [3]


# -- payload indexes ----------------------------------------------------------------


def test_payload_index_create_same_conflict_drop(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, DIM)
    assert vw.collection_info(name)["payload_indexes"] == []
    assert vw.create_payload_index(name, "topic", "keyword") is True  # 201
    assert vw.create_payload_index(name, "topic", "keyword") is False  # 200: the same again
    assert vw.create_payload_index(name, "meta.year", "integer") is True
    with pytest.raises(ConflictError) as e:
        vw.create_payload_index(name, "topic", "integer")
    assert e.value.status == 409
    assert e.value.detail == "`topic` already has a payload index of type keyword; delete it first"
    assert vw.collection_info(name)["payload_indexes"] == [
        {"field": "topic", "type": "keyword"},
        {"field": "meta.year", "type": "integer"},
    ]

    assert vw.drop_payload_index(name, "topic") is True
    with pytest.raises(NotFound) as nf:
        vw.drop_payload_index(name, "topic")
    assert not isinstance(nf.value, CollectionNotFound)
    assert nf.value.status == 404 and nf.value.detail == "`topic` has no payload index"
    assert vw.drop_payload_index(name, "topic", missing_ok=True) is False
    assert vw.collection_info(name)["payload_indexes"] == [
        {"field": "meta.year", "type": "integer"}
    ]
    # Another type once the old one is gone; keys with `[]` travel percent-encoded.
    assert vw.create_payload_index(name, "topic", "bool") is True
    assert vw.create_payload_index(name, "items[].name", "keyword") is True
    assert vw.drop_payload_index(name, "items[].name") is True
    assert {i["field"] for i in vw.collection_info(name)["payload_indexes"]} == {
        "meta.year",
        "topic",
    }


def test_payload_index_on_a_missing_collection(vw: VectorWiseClient, name: str) -> None:
    with pytest.raises(CollectionNotFound):
        vw.create_payload_index(name, "topic", "keyword")
    with pytest.raises(CollectionNotFound):
        vw.drop_payload_index(name, "topic", missing_ok=True)


def test_payload_indexes_survive_a_restart(binary: Path, dataset: Dataset, tmp_path: Path) -> None:
    data = Data()
    server = LocalServer(dataset.index_path, binary=binary, data_dir=tmp_path)
    with server, VectorWiseClient(server.url) as vw:
        vw.create_collection("kept", DIM, metric="l2")
        vw.upsert("kept", data.ids, data.vectors, data.payloads)
        vw.create_payload_index("kept", "topic", "keyword")
    again = LocalServer(dataset.index_path, binary=binary, data_dir=tmp_path)
    with again, VectorWiseClient(again.url) as vw:
        assert vw.collection_info("kept")["payload_indexes"] == [
            {"field": "topic", "type": "keyword"}
        ]
        hits = vw.search(data.queries[0], k=5, collection="kept", filter=Match("topic", "tech"))
        np.testing.assert_array_equal(
            hits.ids, data.expected({"must": [m("topic", "tech")]}, data.queries[0], 5)
        )
        assert hits.used.filter is not None and hits.used.filter.unindexed == ()


@pytest.mark.parametrize(
    ("field", "kind", "loc"),
    [
        ("topic", "text", ["body", "type"]),
        ("topic", 1, ["body", "type"]),
        ("a..b", "keyword", ["body", "field"]),
        ("", "keyword", ["body", "field"]),
        ("a[0]", "keyword", ["body", "field"]),
        (7, "keyword", ["body", "field"]),
    ],
)
def test_a_bad_payload_index_is_refused_as_the_server_would(
    filter_server: LocalServer, name: str, field: Any, kind: Any, loc: list[Any]
) -> None:
    with VectorWiseClient(filter_server.url) as vw:
        vw.create_collection(name, DIM)
        with pytest.raises(ValidationError) as mine:
            vw.create_payload_index(name, field, kind)
    with VectorWiseClient(filter_server.url, validate=False) as vw:
        with pytest.raises(ValidationError) as theirs:
            vw.create_payload_index(name, field, kind)
        assert vw.collection_info(name)["payload_indexes"] == []
    assert mine.value.status is None and theirs.value.status == 422
    assert [e["loc"] for e in theirs.value.errors] == [loc]
    ours, server = mine.value.errors[0], theirs.value.errors[0]
    assert (ours["loc"], ours["type"], ours["msg"]) == (
        server["loc"],
        server["type"],
        server["msg"],
    )


# -- mistakes ---------------------------------------------------------------------

# (the typed helper that refuses it, the same thing as JSON for the server)
MISTAKES: list[tuple[Callable[[], object], dict[str, Any]]] = [
    (lambda: Match("a", 1.5), {"key": "a", "match": {"value": 1.5}}),  # type: ignore[arg-type]
    (lambda: Match("a", 2**63), {"key": "a", "match": {"value": 2**63}}),
    (lambda: Match("a", None), {"key": "a", "match": {"value": None}}),  # type: ignore[arg-type]
    (lambda: Match("a", [1]), {"key": "a", "match": {"value": [1]}}),  # type: ignore[arg-type]
    (lambda: MatchAny("a", "xy"), {"key": "a", "match": {"any": "xy"}}),
    (lambda: MatchAny("a", ["x", 0.5]), {"key": "a", "match": {"any": ["x", 0.5]}}),  # type: ignore[list-item]
    (
        lambda: MatchAny("a", ["x"] * (MAX_ANY + 1)),
        {"key": "a", "match": {"any": ["x"] * (MAX_ANY + 1)}},
    ),
    (lambda: Range("a"), {"key": "a", "range": {}}),
    (lambda: Range("a", gte="x"), {"key": "a", "range": {"gte": "x"}}),  # type: ignore[arg-type]
    (lambda: Range("a", gt=True), {"key": "a", "range": {"gt": True}}),
    (lambda: Match("", 1), {"key": "", "match": {"value": 1}}),
    (lambda: Match("a..b", 1), {"key": "a..b", "match": {"value": 1}}),
    (lambda: Match("a.", 1), {"key": "a.", "match": {"value": 1}}),
    (lambda: Match("a[0]", 1), {"key": "a[0]", "match": {"value": 1}}),
    (lambda: Match("é" * 129, 1), {"key": "é" * 129, "match": {"value": 1}}),
    (lambda: Match(5, 1), {"key": 5, "match": {"value": 1}}),  # type: ignore[arg-type]
    (lambda: IsEmpty("a..b"), {"is_empty": {"key": "a..b"}}),
    (lambda: HasId([-1]), {"has_id": [-1]}),
    (lambda: HasId([3, 2**63]), {"has_id": [3, 2**63]}),
    (lambda: HasId([True]), {"has_id": [True]}),
    (lambda: HasId("1"), {"has_id": "1"}),
    (lambda: HasId(["not-a-uuid"]), {"has_id": ["not-a-uuid"]}),
    (
        lambda: HasId([1, "550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716"]),
        {"has_id": [1, "550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716"]},
    ),
    (lambda: HasId([1.5]), {"has_id": [1.5]}),  # type: ignore[list-item]
    (lambda: HasId([0] * (MAX_HAS_ID + 1)), {"has_id": [0] * (MAX_HAS_ID + 1)}),
    (lambda: Filter(must="x"), {"must": "x"}),  # type: ignore[arg-type]
    (lambda: Filter(should=[Filter()] * (MAX_CONDITIONS + 1)), {"should": [{}] * 65}),
    (lambda: Filter(must=[3]), {"must": [3]}),  # type: ignore[list-item]
]


def _nest(levels: int) -> tuple[Filter, dict[str, Any]]:
    f, j = Filter(), dict[str, Any]()
    for _ in range(levels - 1):
        f, j = Filter(must_not=[f]), {"must_not": [j]}
    return f, j


@pytest.mark.parametrize("mistake", range(len(MISTAKES) + 1))
def test_the_typed_filters_refuse_what_the_server_refuses(
    vw: VectorWiseClient, name: str, mistake: int
) -> None:
    """Same ``type`` and ``msg``; the client's ``loc`` is where the server's ends."""
    if mistake < len(MISTAKES):
        make, raw = MISTAKES[mistake]
    else:  # one level too deep
        deepest, raw = _nest(MAX_DEPTH)
        assert deepest.to_dict() == raw  # 8 levels are fine

        def make() -> object:
            return Filter(must=[deepest])

        raw = {"must": [raw]}
    with pytest.raises(ValidationError) as mine:
        make()
    assert mine.value.status is None and isinstance(mine.value, ValueError)
    ours = mine.value.errors
    assert len(ours) == 1

    is_filter = not ({"key", "has_id", "is_empty"} & raw.keys())
    sent = raw if is_filter else {"must": [raw]}
    prefix = ["body", "filter"] if is_filter else ["body", "filter", "must", 0]
    vw.create_collection(name, DIM)
    with pytest.raises(ValidationError) as theirs:
        vw.search(np.ones(DIM), k=3, collection=name, filter=sent)
    assert theirs.value.status == 422
    server = theirs.value.errors
    assert [(prefix + e["loc"], e["type"], e["msg"]) for e in ours] == [
        (e["loc"], e["type"], e["msg"]) for e in server
    ]
    assert ".".join(map(str, server[0]["loc"])) in str(theirs.value)


def test_a_422_names_the_condition_in_a_batch_too(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, DIM)
    bad = {"must": [{"key": "a", "match": {"value": 1}}], "should": [{"key": "p", "range": {}}]}
    with pytest.raises(ValidationError) as e:
        vw.search_batch(np.ones((3, DIM)), k=2, collection=name, filter=bad)
    assert e.value.status == 422
    assert [x["loc"] for x in e.value.errors] == [["body", "filter", "should", 0, "range"]]
    assert "body.filter.should.0.range" in str(e.value)


def test_bad_filters_are_refused_before_sending() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent {request.url}")

    with VectorWiseClient("http://vw.test", transport=httpx.MockTransport(refuse)) as vw:
        q = np.ones(4)
        calls: list[tuple[Callable[[], object], str]] = [
            (lambda: vw.search(q, k=1, filter=Match("a", 1)), "collection"),
            (lambda: vw.search_batch(q[None, :], k=1, filter={"must": []}), "collection"),
            (lambda: vw.search(q, k=1, collection="c", filter=[Match("a", 1)]), "dict"),  # type: ignore[call-overload]
            (
                lambda: vw.search(
                    q, k=1, collection="c", filter={"must": [{"has_id": [math.nan]}]}
                ),
                "JSON",
            ),
        ]
        for call, words in calls:
            with pytest.raises(ValidationError, match=words) as e:
                call()
            assert e.value.status is None
            assert e.value.errors[0]["loc"] == ["body", "filter"]
        with pytest.raises(ValidationError) as e:
            vw.create_payload_index("c", "topic", "string")
        assert e.value.errors[0]["loc"] == ["body", "type"]


def test_numpy_values_are_sent_as_json(vw: VectorWiseClient, name: str) -> None:
    vw.create_collection(name, 2, metric="l2")
    vw.upsert(name, [1, 2, 3], [[0, 0], [1, 0], [2, 0]], [{"n": 1}, {"n": 2}, {"n": 3.5}])
    typed = Filter(
        should=[Match("n", np.int64(1)), Range("n", gte=np.float32(3.5)), HasId(np.array([2]))]
    )
    assert typed.to_dict() == {
        "should": [
            {"key": "n", "match": {"value": 1}},
            {"key": "n", "range": {"gte": 3.5}},
            {"has_id": [2]},
        ]
    }
    assert vw.search([0.0, 0.0], k=5, collection=name, filter=typed).ids.tolist() == [1, 2, 3]
    plain = {"must": [{"key": "n", "match": {"any": np.array([2, 1])}}]}
    assert vw.search([0.0, 0.0], k=5, collection=name, filter=plain).ids.tolist() == [1, 2]


def test_filter_info_from_headers() -> None:
    h = {
        "X-VectorWise-Filter-Selectivity": "0.250000",
        "x-vectorwise-filter-allowed": "25",
        "x-vectorwise-filter-paths": "sq8,scan",
        "x-vectorwise-filter-unindexed": "meta.year,topic",
        "x-vectorwise-method": "exact",
    }
    info = SearchInfo.from_headers(h)
    assert info.filter == FilterInfo(0.25, 25, ("sq8", "scan"), ("meta.year", "topic"))
    assert FilterInfo.from_headers({"x-vectorwise-method": "exact"}) is None
    assert SearchInfo.from_headers({}).filter is None and not SearchInfo.from_headers({})


# -- UUID ids -------------------------------------------------------------------

U1 = "550e8400-e29b-41d4-a716-446655440000"
U2 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
U3 = "00000000-0000-0000-0000-000000000001"  # uuid.UUID(int=1): not the point 1


def test_has_id_takes_uuids_beside_ints() -> None:
    """uuid.UUID objects and any string form uuid.UUID reads, kept and sent as the
    server writes them (hyphenated, lower case); ints as before; one id alone too."""
    f = HasId([uuid.UUID(U1), 7, U2.upper(), "{" + U1 + "}", np.int64(3), "urn:uuid:" + U3])
    assert f.ids == (U1, 7, U2, U1, 3, U3)
    assert f.to_dict() == {"has_id": [U1, 7, U2, U1, 3, U3]}
    assert HasId(uuid.UUID(U2)).ids == (U2,)  # type: ignore[arg-type]
    assert HasId(U2.replace("-", "")).ids == (U2,)
    assert HasId(np.array([U1, U2.upper()])).ids == (U1, U2)
    assert Filter(must_not=[HasId([U1, 1])]).to_dict() == {"must_not": [{"has_id": [U1, 1]}]}
    for bad, loc in (
        (["zz"], ["has_id", 0]),
        ([U1, U1[:-1]], ["has_id", 1]),
        ([uuid.UUID(U1).bytes], ["has_id", 0]),
        ([None], ["has_id", 0]),
    ):
        with pytest.raises(ValidationError) as e:
            HasId(bad)  # type: ignore[arg-type]
        assert e.value.status is None
        assert [(x["loc"], x["type"]) for x in e.value.errors] == [(loc, "value_error")]
        assert "or UUID strings" in e.value.errors[0]["msg"]
    with pytest.raises(ValidationError) as e:
        HasId("zz")  # a string that is no UUID is not a list of ids either
    assert e.value.errors[0]["loc"] == ["has_id"] and e.value.errors[0]["type"] == "list_type"


def test_has_id_with_uuids_against_the_server(vw: VectorWiseClient, name: str) -> None:
    """Points with int and UUID ids in one collection; has_id naming either kind (typed
    or as a dict, in any UUID form) lets exactly those through, in memory and sealed."""
    vw.create_collection(name, 2, metric="l2", seal_points=100)
    ids: list[Any] = [1, 2, 3, uuid.UUID(U1), U2.upper(), "{" + U3 + "}"]
    canonical: list[Any] = [1, 2, 3, U1, U2, U3]
    xs = np.array([[i, 0.0] for i in range(6)], dtype=np.float32)  # point i at distance i^2
    assert vw.upsert(name, ids, xs, [{"i": i} for i in range(6)]) == 6
    q = np.zeros(2, dtype=np.float32)

    def found(f: Any) -> list[Any]:
        hits = vw.search(q, k=10, collection=name, filter=f)
        assert hits.used.filter is not None and hits.used.filter.allowed == len(hits)
        return hits.point_ids

    assert found(HasId([uuid.UUID(U3), 2, U1.upper()])) == [2, U1, U3]
    assert found(HasId([U2])) == [U2]
    assert found(HasId([1])) == [1]  # the int 1, not the UUID ...0001
    assert found(HasId([uuid.UUID(int=1)])) == [U3]
    assert found(Filter(must_not=[HasId([U1, 1, U2])])) == [2, 3, U3]
    assert found({"must": [{"has_id": ["{" + U2.upper() + "}", 3, U1.replace("-", "")]}]}) == [
        3,
        U1,
        U2,
    ]
    assert found(HasId([str(uuid.uuid4()), 99])) == []
    # Sealed into an index segment (seal_points=100), the same.
    more = np.array([[10.0 + i, 5.0] for i in range(200)], dtype=np.float32)
    vw.upsert(name, range(100, 300), more)
    deadline = time.monotonic() + 30
    while not any(s["kind"] == "sealed" for s in vw.collection_info(name)["segments"]):
        assert time.monotonic() < deadline, "not sealed"
        time.sleep(0.05)
    assert found(HasId([U3, 2, U1, 150])) == [2, U1, U3, 150]
    assert found(Filter(must=[HasId(canonical)], must_not=[HasId([U2])])) == [1, 2, 3, U1, U3]
