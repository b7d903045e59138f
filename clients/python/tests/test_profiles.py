"""Search profiles, recall targets and fixed depths against the real server.

`profile_server` serves a calibrated quantised scan (10000 x 64, see conftest.py),
where the three profiles resolve to different settings; `server` is the exact
2000 x 32 HNSW fixture (`--ef-search 2048`); `uncalibrated_server` an index built
with `--no-calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import DIM, PROFILE_DIM, CountingTransport, Dataset, exact_knn

from vectorwise import (
    MAX_EF_SEARCH,
    PROFILES,
    SearchInfo,
    ValidationError,
    VectorWiseClient,
)
from vectorwise.local import LocalServer

RNG = np.random.default_rng(99)


def queries(n: int, dim: int = PROFILE_DIM) -> np.ndarray:
    return RNG.standard_normal((n, dim)).astype(np.float32)


@pytest.fixture
def pclient(profile_server: LocalServer) -> Iterator[VectorWiseClient]:
    with VectorWiseClient(profile_server.url, retries=2, backoff=0.01) as c:
        yield c


def calibrated(stats: Any, profile: str, k: int) -> dict[str, Any]:
    [entry] = [
        p for p in stats["calibration"]["profiles"] if p["profile"] == profile and p["k"] == k
    ]
    return dict(entry)


# -- /stats ----------------------------------------------------------------


def test_stats_report_the_calibration_and_the_monitor(pclient: VectorWiseClient) -> None:
    stats = pclient.stats()
    assert stats["default_profile"] == "balanced"
    assert stats["format_version"] >= 3
    cal = stats["calibration"]
    assert cal is not None
    assert cal["source"] == "leave_one_out" and cal["queries"] > 0 and cal["seconds"] >= 0
    ks = sorted({p["k"] for p in cal["profiles"]})
    assert 10 in ks
    for k in ks:
        assert {p["profile"] for p in cal["profiles"] if p["k"] == k} == set(PROFILES)
    for p in cal["profiles"]:
        assert p["recall_target"] == PROFILES[p["profile"]]
        assert p["method"] in ("scan", "exact")
        # A profile is the cheapest setting whose calibrated recall meets its promise.
        assert p["expected_recall"] >= p["recall_target"]
    assert {t["k"] for t in cal["table"]} == set(ks)
    assert all(
        0.0 <= t["recall_p10"] <= 1.0 and 0.0 <= t["recall_mean"] <= 1.0 for t in cal["table"]
    )
    assert any(t["setting"] == "exact" and t["recall_mean"] == 1.0 for t in cal["table"])
    monitor = stats["recall_monitor"]
    assert 0.0 <= monitor["sample_rate"] <= 1.0
    assert isinstance(monitor["profiles"], list)
    assert {"sampled", "dropped", "evaluated", "cpu_share"} <= set(monitor)


def test_the_exact_fixture_index_is_calibrated_too(client: VectorWiseClient) -> None:
    stats = client.stats()
    assert stats["calibration"] is not None
    assert stats["default_profile"] == "ef_search"  # served with --ef-search 2048


# -- what each search used -------------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_profile_reports_its_calibrated_setting(
    pclient: VectorWiseClient, profile: str
) -> None:
    k = 10
    entry = calibrated(pclient.stats(), profile, k)
    hits = pclient.search(queries(1)[0], k=k, profile=profile)
    used = hits.used
    assert used.profile == profile
    assert used.recall_target == PROFILES[profile]
    assert used.method == entry["method"]
    assert used.setting == entry["setting"]
    assert used.expected_recall == pytest.approx(entry["expected_recall"], abs=1e-4)
    assert used.expected_recall is not None and used.recall_target is not None
    assert used.expected_recall >= used.recall_target
    if used.method == "scan":
        assert used.setting is not None
        rerank = int(used.setting.removeprefix("rerank="))
        assert used.ef_search == rerank * k
    else:
        assert used.exact and used.ef_search is None
    # The batch endpoint reports the same, for every row.
    batch = pclient.search_batch(queries(5), k=k, profile=profile)
    assert batch.used == used
    assert all(r.used == used for r in batch) and batch.consistent


def test_higher_profiles_search_deeper(pclient: VectorWiseClient) -> None:
    q = queries(1)[0]
    used = [pclient.search(q, k=10, profile=p).used for p in PROFILES]
    depth = [u.ef_search if u.ef_search is not None else float("inf") for u in used]
    assert depth == sorted(depth)
    expected = [u.expected_recall or 0.0 for u in used]
    assert expected == sorted(expected)


def test_no_setting_gets_the_server_default(pclient: VectorWiseClient) -> None:
    used = pclient.search(queries(1)[0], k=10).used
    assert used == pclient.search(queries(1)[0], k=10, profile="balanced").used
    assert used.profile == pclient.stats()["default_profile"] == "balanced"


def test_recall_target_one_is_exact_search(
    pclient: VectorWiseClient, profile_dataset: Dataset
) -> None:
    qs = queries(20)
    batch = pclient.search_batch(qs, k=10, recall_target=1.0)
    assert batch.used == SearchInfo(
        profile="recall_target",
        method="exact",
        setting="exact",
        ef_search=None,
        recall_target=1.0,
        expected_recall=1.0,
    )
    for q, row in zip(qs, batch):
        ids, dists = exact_knn(profile_dataset.vectors, q, 10)
        np.testing.assert_array_equal(row.ids, ids)
        np.testing.assert_allclose(row.distances, dists, rtol=1e-4, atol=1e-5)
    single = pclient.search(qs[0], k=10, recall_target=1)
    np.testing.assert_array_equal(single.ids, batch[0].ids)
    assert single.used.exact


def test_a_recall_target_gets_a_setting_that_meets_it(pclient: VectorWiseClient) -> None:
    used = pclient.search(queries(1)[0], k=10, recall_target=0.97).used
    assert used.profile == "recall_target" and used.recall_target == 0.97
    assert used.expected_recall is not None and used.expected_recall >= 0.97


def test_ef_search_is_a_fixed_depth(pclient: VectorWiseClient, client: VectorWiseClient) -> None:
    # The scan re-ranks ceil(ef_search / k) candidates per neighbour.
    used = pclient.search(queries(1)[0], k=10, ef_search=np.int64(200)).used
    assert (used.profile, used.method, used.setting, used.ef_search) == (
        "ef_search",
        "scan",
        "rerank=20",
        200,
    )
    assert used.recall_target is None and used.expected_recall is not None
    # A graph index: the beam width itself.
    used = client.search(queries(1, DIM)[0], k=10, ef_search=50.0).used  # type: ignore[call-overload]
    assert (used.profile, used.method, used.setting, used.ef_search) == (
        "ef_search",
        "hnsw",
        "ef=50",
        50,
    )
    # That server's default is its --ef-search.
    used = client.search(queries(1, DIM)[0], k=10).used
    assert (used.profile, used.setting, used.recall_target) == ("ef_search", "ef=2048", None)


def test_batches_sent_as_several_requests_report_each(profile_server: LocalServer) -> None:
    transport = CountingTransport()
    with VectorWiseClient(profile_server.url, batch_size=16, transport=transport) as vw:
        batch = vw.search_batch(queries(40), k=5, profile="high_accuracy")
    assert transport.paths() == ["/search/batch"] * 3
    assert batch.consistent and batch.used.profile == "high_accuracy"
    assert all(r.used == batch.used for r in batch)


def test_an_uncalibrated_index_promises_nothing_but_exactness(
    uncalibrated_server: LocalServer,
) -> None:
    with VectorWiseClient(uncalibrated_server.url) as vw:
        stats = vw.stats()
        assert stats["calibration"] is None
        assert stats["default_profile"] == "high_accuracy"  # from VECTORWISE_PROFILE
        used = vw.search(queries(1, DIM)[0], k=10).used
        assert used.profile == "high_accuracy" and used.recall_target == 0.99
        assert used.expected_recall is None  # no table: no expectation
        assert used.method == "hnsw" and used.ef_search is not None
        exact = vw.search(queries(1, DIM)[0], k=10, recall_target=1.0).used
        assert exact.exact and exact.expected_recall == 1.0


# -- invalid settings: refused before sending, and by the server alike ------

BAD: list[tuple[dict[str, Any], list[Any], str]] = [
    ({"profile": "balanced", "ef_search": 64}, ["body"], "value_error"),
    ({"recall_target": 0.9, "ef_search": 64}, ["body"], "value_error"),
    ({"profile": "fast"}, ["body", "profile"], "enum"),
    ({"profile": "Balanced"}, ["body", "profile"], "enum"),
    ({"profile": 3}, ["body", "profile"], "enum"),
    ({"recall_target": 0}, ["body", "recall_target"], "greater_than"),
    ({"recall_target": -0.5}, ["body", "recall_target"], "greater_than"),
    ({"recall_target": 1.01}, ["body", "recall_target"], "less_than_equal"),
    ({"recall_target": "high"}, ["body", "recall_target"], "float_parsing"),
    ({"recall_target": True}, ["body", "recall_target"], "float_type"),
    ({"ef_search": 0}, ["body", "ef_search"], "greater_than_equal"),
    ({"ef_search": MAX_EF_SEARCH + 1}, ["body", "ef_search"], "less_than_equal"),
    ({"ef_search": 12.5}, ["body", "ef_search"], "int_from_float"),
    ({"ef_search": "64"}, ["body", "ef_search"], "int_type"),
    ({"ef_search": "lots"}, ["body", "ef_search"], "int_parsing"),
]


def _ids(case: tuple[dict[str, Any], list[Any], str]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in case[0].items())


@pytest.mark.parametrize("case", BAD, ids=[_ids(c) for c in BAD])
def test_invalid_settings_are_refused_as_the_server_would(
    profile_server: LocalServer, case: tuple[dict[str, Any], list[Any], str]
) -> None:
    settings, loc, kind = case
    q = queries(2)
    transport = CountingTransport()
    with VectorWiseClient(profile_server.url, transport=transport) as vw:
        calls: tuple[Callable[[], object], ...] = (
            lambda: vw.search(q[0], k=5, **settings),
            lambda: vw.search_batch(q, k=5, **settings),
        )
        for call in calls:
            with pytest.raises(ValueError, match="invalid search setting") as info:
                call()
            assert isinstance(info.value, ValidationError) and info.value.status is None
            [mine] = info.value.errors
            assert (mine["loc"], mine["type"]) == (loc, kind)
    assert transport.calls == []  # nothing was sent
    # The same settings sent as they are: the server's 422 says the same.
    with VectorWiseClient(profile_server.url, validate=False) as raw:
        for call in (
            lambda: raw.search(q[0], k=5, **settings),
            lambda: raw.search_batch(q, k=5, **settings),
        ):
            with pytest.raises(ValidationError) as server_info:
                call()
            assert server_info.value.status == 422
            [theirs] = server_info.value.errors
            assert (theirs["loc"], theirs["type"], theirs["msg"]) == (loc, kind, mine["msg"])


def test_the_server_message_surfaces_in_the_error(profile_server: LocalServer) -> None:
    raw = VectorWiseClient(profile_server.url, validate=False)
    with raw, pytest.raises(ValidationError) as info:
        raw.search(queries(1)[0], k=5, profile="balanced", recall_target=0.9)
    assert info.value.status == 422
    assert "at most one of profile, recall_target and ef_search" in str(info.value)
    assert "(got profile, recall_target)" in str(info.value)


def test_valid_edge_values_are_accepted(pclient: VectorWiseClient) -> None:
    q = queries(1)[0]
    assert pclient.search(q, k=5, ef_search=1).used.profile == "ef_search"
    assert pclient.search(q, k=5, ef_search=MAX_EF_SEARCH).used.ef_search is not None
    assert pclient.search(q, k=5, recall_target=1e-6).used.profile == "recall_target"
    assert pclient.search(q, k=5, recall_target=np.float32(0.95)).used.recall_target == 0.95
    # None is "not given", as the server treats null.
    assert pclient.search(q, k=5, profile=None, ef_search=None).used.profile == "balanced"
