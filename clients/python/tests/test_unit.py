"""Client behaviour the real server cannot be made to show on demand (an
overload's Retry-After, 5xx, an older server without /search/batch, garbled
answers) or not exactly when wanted (a 429's Retry-After), against scripted
answers from httpx.MockTransport."""

from __future__ import annotations

import io
import json
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from vectorwise import (
    AuthenticationError,
    BatchResult,
    ClientError,
    CollectionBatchResult,
    CollectionSearchResult,
    ConflictError,
    NotFound,
    PermissionDenied,
    RateLimited,
    SearchInfo,
    SearchResult,
    ServerError,
    ServiceUnavailable,
    UnexpectedResponse,
    ValidationError,
    VectorWiseClient,
)
from vectorwise._client import _encode_row
from vectorwise.errors import parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]


def hits(k: int = 2) -> dict[str, list[float]]:
    return {"indices": list(range(k)), "distances": [0.5 * i for i in range(k)]}


class Script:
    """Answers requests from a list of responses (or a function), recording them."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers: Iterator[httpx.Response | Handler] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self.answers)
        return answer(request) if callable(answer) else answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def bodies_from(self, first: int) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests[first:]]


def client(script: Script, **kwargs: object) -> tuple[VectorWiseClient, list[float]]:
    """A client of scripted answers; JSON requests unless ``binary=True`` (the binary
    ones are tested at the end)."""
    kwargs.setdefault("binary", False)
    vw = VectorWiseClient("http://vw.test", transport=httpx.MockTransport(script), **kwargs)  # type: ignore[arg-type]
    sleeps: list[float] = []
    vw._sleep = sleeps.append
    return vw, sleeps


def test_options_pass_through_to_the_body() -> None:
    script = Script(
        httpx.Response(200, json=hits()), httpx.Response(200, json={"results": [hits()]})
    )
    # validate=False: sent as given, even settings the server would refuse
    # (the default client refuses these three at once before sending).
    vw, _ = client(script, validate=False)
    vw.search([1, 2], k=2, ef_search=np.int64(256), profile="fast", recall_target=0.95)
    vw.search_batch([[1, 2]], k=2, ef_search=128)
    first, second = script.bodies()
    assert first == {
        "k": 2,
        "ef_search": 256,
        "profile": "fast",
        "recall_target": 0.95,
        "query_vector": [1.0, 2.0],
    }
    assert second == {"k": 2, "ef_search": 128, "query_vectors": [[1.0, 2.0]]}
    assert script.requests[0].headers["content-type"] == "application/json"
    assert script.requests[1].url.path == "/search/batch"


def test_options_cannot_replace_the_query() -> None:
    vw, _ = client(Script())
    with pytest.raises(TypeError):
        vw.search([1.0], k=1, query_vector=[2.0])


def test_float32_values_go_out_exactly() -> None:
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    x[:3] = [1e-38, -3.4e38, 0.0]
    back = np.array(json.loads(_encode_row(x.tolist())), dtype=np.float32)
    np.testing.assert_array_equal(back, x)


def test_503_retry_after_is_honoured() -> None:
    busy = httpx.Response(
        503,
        json={"detail": "Too many pending searches, retry later"},
        headers={"Retry-After": "0.25"},
    )
    script = Script(busy, busy, httpx.Response(200, json=hits()))
    vw, sleeps = client(script, retries=3, backoff=0.001)
    assert len(vw.search([1.0, 2.0], k=2)) == 2
    assert len(script.requests) == 3
    assert sleeps == [0.25, 0.25]


def test_503_retries_run_out() -> None:
    busy = httpx.Response(
        503, json={"detail": "Too many pending searches, retry later"}, headers={"Retry-After": "1"}
    )
    vw, sleeps = client(Script(busy, busy, busy), retries=2, backoff=0.001)
    with pytest.raises(ServiceUnavailable) as info:
        vw.search([1.0], k=1)
    assert info.value.retry_after == 1.0
    assert info.value.detail == "Too many pending searches, retry later"
    assert isinstance(info.value, ServerError)
    assert sleeps == [1.0, 1.0]


def test_retry_after_longer_than_backoff_max_is_raised_at_once() -> None:
    busy = httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "120"})
    vw, sleeps = client(Script(busy), retries=5, backoff_max=10)
    with pytest.raises(ServiceUnavailable) as info:
        vw.search([1.0], k=1)
    assert info.value.retry_after == 120
    assert sleeps == []


def test_backoff_grows_exponentially_and_is_capped() -> None:
    loading = httpx.Response(503, json={"detail": "Index not loaded yet"})
    vw, sleeps = client(Script(*[loading] * 6), retries=5, backoff=0.1, backoff_max=0.5)
    with pytest.raises(ServiceUnavailable):
        vw.stats()
    bases = [0.1, 0.2, 0.4, 0.5, 0.5]  # jitter keeps each wait within [base/2, base]
    assert all(b / 2 <= s <= b for s, b in zip(sleeps, bases)), sleeps


def test_500_is_a_server_error_and_not_retried() -> None:
    script = Script(httpx.Response(500, json={"detail": "Internal server error"}))
    vw, _ = client(script, retries=3)
    with pytest.raises(ServerError) as info:
        vw.search([1.0], k=1)
    assert not isinstance(info.value, ServiceUnavailable)
    assert (info.value.status, info.value.detail) == (500, "Internal server error")
    assert len(script.requests) == 1


def test_502_from_a_proxy_is_retried() -> None:
    script = Script(httpx.Response(502, text="Bad Gateway"), httpx.Response(200, json=hits()))
    vw, _ = client(script, retries=1)
    assert len(vw.search([1.0], k=2)) == 2


def test_read_timeouts_are_retried() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    script = Script(timeout, httpx.Response(200, json=hits()))
    vw, sleeps = client(script, retries=1)
    assert len(vw.search([1.0], k=2)) == 2
    assert len(sleeps) == 1


def test_garbled_answers_are_unexpected_responses() -> None:
    vw, _ = client(Script(httpx.Response(200, text="<html>proxy</html>")))
    with pytest.raises(UnexpectedResponse):
        vw.search([1.0], k=1)
    vw, _ = client(Script(httpx.Response(200, json={"indices": [1, 2], "distances": [0.1]})))
    with pytest.raises(UnexpectedResponse):
        vw.search([1.0], k=2)
    vw, _ = client(Script(httpx.Response(200, json={"results": [hits()]})))
    with pytest.raises(UnexpectedResponse):
        vw.search_batch([[1.0], [2.0]], k=2)  # two queries, one result


def test_health_reports_loading_without_raising() -> None:
    loading = {"service": "VectorWise", "status": "loading", "vectors_indexed": 0}
    script = Script(httpx.Response(503, json=loading), httpx.Response(503, json=loading))
    vw, sleeps = client(script, retries=3)
    assert vw.health() == loading
    assert sleeps == []  # a health check reports the state now; it does not wait
    failed = {"service": "VectorWise", "status": "unavailable", "vectors_indexed": 0}
    vw, _ = client(Script(httpx.Response(503, json=failed)))
    with pytest.raises(ServiceUnavailable):
        vw.wait_until_ready(timeout=5)


def test_older_server_without_batch_falls_back_to_singles() -> None:
    script = Script(
        httpx.Response(404, json={"detail": "Not Found"}),
        *[httpx.Response(200, json=hits()) for _ in range(3)],
        *[httpx.Response(200, json=hits()) for _ in range(2)],
    )
    vw, _ = client(script)
    with pytest.warns(RuntimeWarning, match="no POST /search/batch"):
        assert len(vw.search_batch(np.ones((3, 4)), k=2)) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; the next batch goes straight to /search
        assert vw.search_batch(np.ones((2, 4)), k=2).ids.shape == (2, 2)
    paths = [r.url.path for r in script.requests]
    assert paths == ["/search/batch"] + ["/search"] * 5


def test_fallback_errors_name_the_batch_row() -> None:
    bad = {"detail": [{"loc": ["body", "query_vector"], "msg": "zero", "type": "value_error"}]}
    script = Script(
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(200, json=hits()),
        httpx.Response(422, json=bad),
    )
    vw, _ = client(script)
    with pytest.warns(RuntimeWarning), pytest.raises(ValidationError) as info:
        vw.search_batch(np.ones((3, 4)), k=2)
    assert info.value.errors[0]["loc"] == ["body", "query_vectors", 1]


def test_no_fallback_raises_not_found() -> None:
    vw, _ = client(Script(httpx.Response(404, json={"detail": "Not Found"})), batch_fallback=False)
    with pytest.raises(NotFound) as info:
        vw.search_batch(np.ones((3, 4)), k=2)
    assert info.value.status == 404


def test_batch_chunks_keep_order_and_relocate_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["query_vectors"])
        return httpx.Response(200, json={"results": [hits() for _ in range(n)]})

    bad = {"detail": [{"loc": ["body", "query_vectors", 1, 0], "msg": "bad", "type": "x"}]}
    script = Script(answer, answer, httpx.Response(422, json=bad))
    vw, _ = client(script, batch_size=4)
    with pytest.raises(ValidationError) as info:
        vw.search_batch(np.arange(1, 41, dtype=np.float32).reshape(10, 4), k=2)
    assert info.value.errors[0]["loc"] == ["body", "query_vectors", 9, 0]  # 8 + 1
    sent = [b["query_vectors"] for b in script.bodies()]
    assert [len(s) for s in sent] == [4, 4, 2]
    assert [row[0] for s in sent for row in s] == [1.0 + 4 * i for i in range(10)]


def test_batch_dimension_message_names_the_matrix_row() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["query_vectors"])
        return httpx.Response(200, json={"results": [hits() for _ in range(n)]})

    msg = {"detail": "query_vectors[1] has 5 dimensions, expected 4"}
    vw, _ = client(Script(answer, httpx.Response(400, json=msg)), batch_size=3)
    with pytest.raises(ValidationError) as info:
        vw.search_batch(np.ones((6, 5)), k=2)
    assert info.value.detail == "query_vectors[4] has 5 dimensions, expected 4"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-2", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="retries"):
        VectorWiseClient(retries=-1)
    with pytest.raises(ValueError, match="batch_size"):
        VectorWiseClient(batch_size=0)
    vw = VectorWiseClient("http://localhost:8000/")
    assert vw.url == "http://localhost:8000"
    vw.close()


# -- search settings and what the server used ---------------------------------

USED = {
    "x-vectorwise-profile": "high_accuracy",
    "x-vectorwise-method": "scan",
    "x-vectorwise-setting": "rerank=96",
    "x-vectorwise-ef-search": "960",
    "x-vectorwise-recall-target": "0.99",
    "x-vectorwise-expected-recall": "0.9912",
}


def test_search_settings_go_in_the_body_checked_and_converted() -> None:
    script = Script(*[httpx.Response(200, json=hits()) for _ in range(4)])
    vw, _ = client(script)
    vw.search([1, 2], k=2, profile="low_latency")
    vw.search([1, 2], k=2, recall_target=np.float32(0.95))
    vw.search([1, 2], k=2, ef_search=128.0)  # type: ignore[call-overload]
    vw.search([1, 2], k=2, profile=None, recall_target=None, ef_search=None)
    assert [{k: v for k, v in b.items() if k != "query_vector"} for b in script.bodies()] == [
        {"k": 2, "profile": "low_latency"},
        {"k": 2, "recall_target": 0.95},
        {"k": 2, "ef_search": 128},
        {"k": 2},
    ]


def test_the_default_client_refuses_what_the_server_would() -> None:
    vw, _ = client(Script())  # any request would fail: the script has no answers
    with pytest.raises(ValidationError) as info:
        vw.search([1, 2], k=2, ef_search=np.int64(256), profile="fast", recall_target=0.95)
    assert info.value.status is None and isinstance(info.value, ValueError)
    assert info.value.errors[0]["loc"] == ["body"]
    assert "(got profile, recall_target, ef_search)" in str(info.value)
    with pytest.raises(ValueError, match=r"body\.recall_target: .* greater than 0 \(got 0\.0\)"):
        vw.search_batch([[1, 2]], recall_target=0.0)
    with pytest.raises(ValueError, match="finite"):
        vw.search([1, 2], recall_target=float("nan"))
    with pytest.raises(
        ValueError, match=r"'low_latency', 'balanced' or 'high_accuracy' \(got 'x'\)"
    ):
        vw.search([1, 2], profile="x")


def test_used_comes_from_the_headers() -> None:
    script = Script(
        httpx.Response(200, json=hits(), headers=USED),
        httpx.Response(200, json=hits()),  # an older server: no headers
        httpx.Response(200, json=hits(), headers={"x-vectorwise-ef-search": "lots"}),
    )
    vw, _ = client(script)
    used = vw.search([1, 2], k=2).used
    assert used == SearchInfo("high_accuracy", "scan", "rerank=96", 960, 0.99, 0.9912)
    assert used and not used.exact
    old = vw.search([1, 2], k=2)
    assert old.used == SearchInfo() and not old.used
    assert old.used.profile is None and old.used.expected_recall is None
    assert vw.search([1, 2], k=2).used.ef_search is None  # unparseable: absent
    # SearchResult keeps its two-field constructor.
    r = SearchResult(np.zeros(1, np.int64), np.zeros(1, np.float32))
    assert r.used == SearchInfo()


def test_batch_used_per_request() -> None:
    other = {**USED, "x-vectorwise-profile": "balanced"}
    script = Script(
        httpx.Response(200, json={"results": [hits(), hits()]}, headers=USED),
        httpx.Response(200, json={"results": [hits()]}, headers=other),
    )
    vw, _ = client(script, batch_size=2)
    batch = vw.search_batch([[1, 2]] * 3, k=2)
    assert [r.used.profile for r in batch] == ["high_accuracy", "high_accuracy", "balanced"]
    assert batch.used.profile == "high_accuracy" and not batch.consistent
    assert BatchResult([]).used == SearchInfo() and BatchResult([]).consistent


def test_widened_comes_from_its_header() -> None:
    script = Script(
        httpx.Response(200, json=hits(), headers={**USED, "x-vectorwise-widened": "true"}),
        httpx.Response(200, json=hits(), headers=USED),  # not widened: no header
        httpx.Response(200, json=hits(), headers={"X-VectorWise-Widened": "TRUE"}),
        httpx.Response(200, json=hits(), headers={"x-vectorwise-widened": "false"}),
        httpx.Response(200, json=hits()),  # an older server
    )
    vw, _ = client(script)
    first = vw.search([1, 2], k=2).used
    assert first.widened and first.profile == "high_accuracy"
    assert first == SearchInfo(
        "high_accuracy", "scan", "rerank=96", 960, 0.99, 0.9912, widened=True
    )
    assert [vw.search([1, 2], k=2).used.widened for _ in range(4)] == [False, True, False, False]
    # widened alone makes an answer that reported something; nothing reported stays falsy.
    assert SearchInfo(widened=True) and not SearchInfo() and SearchInfo().widened is False
    # A single answer's header says nothing of a batch's rows, and vice versa.
    assert SearchInfo.from_headers({"x-vectorwise-widened-queries": "0"}).widened is False
    rows = SearchInfo.for_batch({"x-vectorwise-widened": "true"}, 2)
    assert [r.widened for r in rows] == [False, False]
    rows = SearchInfo.for_batch({"x-vectorwise-widened-queries": "0, 3,x,-1,9"}, 4)
    assert [r.widened for r in rows] == [True, False, False, True]
    # Ranges (runs of widened queries), clipped to the request's rows.
    rows = SearchInfo.for_batch({"x-vectorwise-widened-queries": "1-3,5, 6-999999999"}, 8)
    assert [r.widened for r in rows] == [False, True, True, True, False, True, True, True]


def widened_answer(rows: int, listed: str | None, collection: bool) -> httpx.Response:
    """A batch answer of ``rows`` results, ``listed`` as its ``x-vectorwise-widened-queries``."""
    item: Any = {"hits": [{"id": 1, "distance": 0.5}]} if collection else hits()
    headers = {**USED} if listed is None else {**USED, "x-vectorwise-widened-queries": listed}
    return httpx.Response(200, json={"results": [item] * rows}, headers=headers)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("collection", [None, "c"], ids=["demo", "collection"])
def test_a_split_batch_maps_widened_indices_to_the_callers_rows(
    binary: bool, collection: str | None
) -> None:
    # 8 rows in requests of 3: rows 0-2, 3-5, 6-7. Each request's indices count from
    # its own first row; the last request has 2 rows, so its "2" names no row.
    script = Script(
        widened_answer(3, "0,2", collection is not None),
        widened_answer(3, None, collection is not None),
        widened_answer(2, "1,2", collection is not None),
    )
    vw, _ = client(script, batch_size=3, binary=binary)
    batch = vw.search_batch(np.ones((8, 2)), k=2, collection=collection)
    assert len(script.requests) == 3 and len(batch) == 8
    assert [r.used.widened for r in batch] == [True, False, True, False, False, False, False, True]
    assert batch.widened.tolist() == [r.used.widened for r in batch]
    assert batch.widened.dtype == np.bool_ and batch.widened.mean() == 3 / 8
    # The rest of each row's SearchInfo is its request's, and widened does not make
    # the requests disagree; batch.used says whether any row was widened.
    assert batch.consistent and all(r.used.profile == "high_accuracy" for r in batch)
    assert batch.used.widened and batch.used.setting == "rerank=96"


def test_a_batch_without_the_header_has_no_widened_rows() -> None:
    script = Script(httpx.Response(200, json={"results": [hits()] * 3}, headers=USED))
    vw, _ = client(script)
    batch = vw.search_batch(np.ones((3, 2)), k=2)
    assert batch.widened.tolist() == [False] * 3 and not batch.used.widened
    assert BatchResult([]).widened.shape == (0,) and not BatchResult([]).used.widened


def test_fallback_singles_report_used() -> None:
    script = Script(
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(200, json=hits(), headers=USED),
    )
    vw, _ = client(script)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        batch = vw.search_batch([[1, 2]], k=2, profile="high_accuracy")
    assert batch.used.setting == "rerank=96"
    assert script.bodies()[1]["profile"] == "high_accuracy"


def test_429_retry_after_is_honoured_like_503() -> None:
    over = httpx.Response(
        429,
        json={"detail": "Rate limit exceeded: too many searches from this client"},
        headers={"Retry-After": "2"},
    )
    script = Script(over, httpx.Response(200, json=hits()))
    vw, sleeps = client(script, retries=3, backoff=0.001)
    assert len(vw.search([1.0, 2.0], k=2)) == 2
    assert len(script.requests) == 2
    assert sleeps == [2.0]


def test_429_retries_run_out_as_rate_limited() -> None:
    over = httpx.Response(429, json={"detail": "Rate limit exceeded"}, headers={"Retry-After": "1"})
    vw, sleeps = client(Script(over, over), retries=1, backoff=0.001)
    with pytest.raises(RateLimited) as info:
        vw.search([1.0], k=1)
    assert info.value.status == 429
    assert info.value.retry_after == 1.0
    assert isinstance(info.value, ClientError)
    assert sleeps == [1.0]
    # Longer than the caller allows to wait: raised at once.
    long = httpx.Response(
        429, json={"detail": "Rate limit exceeded"}, headers={"Retry-After": "60"}
    )
    vw, sleeps = client(Script(long), retries=5, backoff_max=10)
    with pytest.raises(RateLimited):
        vw.search([1.0], k=1)
    assert sleeps == []


def test_the_api_key_is_sent_and_401_403_are_typed_and_not_retried() -> None:
    script = Script(
        httpx.Response(200, json=hits()),
        httpx.Response(
            401, json={"detail": "Invalid API key"}, headers={"WWW-Authenticate": "Bearer"}
        ),
        httpx.Response(403, json={"detail": "This key's role does not allow this request"}),
    )
    vw, sleeps = client(script, api_key="vw_secret", retries=3)
    vw.search([1.0, 2.0], k=2)
    assert script.requests[0].headers["authorization"] == "Bearer vw_secret"
    with pytest.raises(AuthenticationError) as denied:
        vw.search([1.0, 2.0], k=2)
    assert denied.value.detail == "Invalid API key"
    with pytest.raises(PermissionDenied):
        vw.search([1.0, 2.0], k=2)
    assert len(script.requests) == 3 and sleeps == []
    # No key given: no Authorization header.
    plain = Script(httpx.Response(200, json=hits()))
    vw, _ = client(plain)
    vw.search([1.0], k=2)
    assert "authorization" not in plain.requests[0].headers


# -- binary bodies ---------------------------------------------------------


def npy_rows(request: httpx.Request) -> np.ndarray:
    import io

    assert request.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(request.content), allow_pickle=False)


def test_searches_go_in_binary_with_the_fields_in_the_query_string() -> None:
    script = Script(
        httpx.Response(200, json=hits()),
        httpx.Response(200, json={"results": [hits(), hits()]}),
        httpx.Response(200, json={"hits": [{"id": 1, "distance": 0.5, "payload": {"a": 1}}]}),
    )
    vw, _ = client(script, binary=True)
    q = np.array([1.0, 0.5, -2.0], dtype=np.float64)
    vw.search(q, k=2, recall_target=np.float32(0.95))
    vw.search_batch([[1, 2, 3], [4, 5, 6]], k=2, profile="high_accuracy")
    vw.search(q, k=1, collection="c", with_payload=True, filter={"must": []})
    single, batch, coll = script.requests
    assert single.headers["content-type"] == "application/octet-stream"
    assert single.url.path == "/search"
    assert dict(single.url.params) == {"k": "2", "recall_target": "0.95"}
    assert np.frombuffer(single.content, dtype="<f4").tolist() == [1.0, 0.5, -2.0]
    assert dict(batch.url.params) == {"k": "2", "profile": "high_accuracy"}
    rows = npy_rows(batch)
    assert rows.dtype == np.dtype("<f4") and rows.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert coll.url.path == "/collections/c/search"
    assert dict(coll.url.params) == {
        "k": "1",
        "filter": '{"must":[]}',
        "with_payload": "true",
        "with_vector": "false",
    }


def test_options_a_query_string_cannot_carry_exactly_go_as_json() -> None:
    # The server reads "10" in a query string as the number 10; JSON's "10" is refused.
    script = Script(httpx.Response(200, json=hits()), httpx.Response(200, json=hits()))
    vw, _ = client(script, binary=True, validate=False)
    vw.search([1, 2], k=2, ef_search="64")  # type: ignore[arg-type]
    vw.search([1, 2], k=2, nested={"a": [1]})
    assert [r.headers["content-type"] for r in script.requests] == ["application/json"] * 2
    assert script.bodies()[0]["ef_search"] == "64"


def test_a_refused_binary_search_is_repeated_as_json_for_its_exact_error() -> None:
    binary_refusal = {"detail": [{"loc": ["query", "k"], "msg": "m", "type": "greater_than"}]}
    json_refusal = {"detail": [{"loc": ["body", "k"], "msg": "m", "type": "greater_than"}]}
    script = Script(
        httpx.Response(422, json=binary_refusal), httpx.Response(422, json=json_refusal)
    )
    vw, _ = client(script, binary=True)
    with pytest.raises(ValidationError) as e:
        vw.search([1, 2], k=0)
    assert e.value.errors[0]["loc"] == ["body", "k"]
    kinds = [r.headers["content-type"] for r in script.requests]
    assert kinds == ["application/octet-stream", "application/json"]
    assert vw.binary, "a refusal of the request's content keeps binary on"


def test_keys_and_budgets_are_not_asked_twice() -> None:
    script = Script(httpx.Response(401, json={"detail": "Invalid API key"}))
    vw, _ = client(script, binary=True)
    with pytest.raises(AuthenticationError):
        vw.search([1, 2], k=1)
    assert len(script.requests) == 1


def test_a_server_without_binary_bodies_gets_json_from_then_on() -> None:
    old = {
        "detail": [
            {
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "type": "model_attributes_type",
            }
        ]
    }
    script = Script(
        httpx.Response(422, json=old),
        httpx.Response(200, json=hits()),
        httpx.Response(200, json={"results": [hits()]}),
    )
    vw, _ = client(script, binary=True)
    assert vw.search([1, 2], k=2).ids.tolist() == [0, 1]
    assert not vw.binary
    vw.search_batch([[1, 2]], k=2)
    kinds = [r.headers["content-type"] for r in script.requests]
    assert kinds == ["application/octet-stream", "application/json", "application/json"]


def test_a_binary_batch_follows_the_servers_limits_and_hands_over_to_json() -> None:
    too_long = {
        "detail": [
            {"loc": ["body"], "msg": "m", "type": "too_long", "ctx": {"max_length": 2}}
        ]
    }
    zero = {"detail": [{"loc": ["body", "query_vectors", 1], "msg": "zero", "type": "value_error"}]}

    def answer(n: int) -> Handler:
        return lambda request: httpx.Response(200, json={"results": [hits()] * n})

    script = Script(
        httpx.Response(422, json=too_long),  # 5 rows: the server takes 2
        answer(2),  # rows 0-1
        httpx.Response(422, json=zero),  # rows 2-3, binary: refused
        httpx.Response(422, json=zero),  # rows 2-3, JSON: the error, located in the matrix
    )
    vw, _ = client(script, binary=True)
    with pytest.raises(ValidationError) as e:
        vw.search_batch(np.ones((5, 2)), k=2)
    assert e.value.errors[0]["loc"] == ["body", "query_vectors", 3]
    assert vw.batch_size == 2
    assert [len(npy_rows(r)) for r in script.requests[:3]] == [5, 2, 2]
    assert script.requests[3].headers["content-type"] == "application/json"
    assert len(script.bodies_from(3)[0]["query_vectors"]) == 2


# -- upserts as forms ----------------------------------------------------------

FORM = "multipart/form-data"
JSON = "application/json"
MODEL_ATTRIBUTES = {
    "detail": [
        {
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "type": "model_attributes_type",
        }
    ]
}


def kinds(script: Script) -> list[str]:
    return [r.headers["content-type"].split(";")[0] for r in script.requests]


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(422, json=MODEL_ATTRIBUTES),
        httpx.Response(415, text="Unsupported Media Type"),
    ],
    ids=["422", "415"],
)
def test_a_server_without_forms_gets_json_upserts_from_then_on(refusal: httpx.Response) -> None:
    script = Script(
        refusal,
        httpx.Response(200, json={"upserted": 2}),
        httpx.Response(200, json={"upserted": 1}),
        httpx.Response(200, json=hits()),
    )
    vw, _ = client(script, binary=True)
    assert vw.upsert("c", [1, 2], np.ones((2, 3)), [{"a": 1}, None]) == 2
    assert vw.upsert("c", [3], np.ones((1, 3))) == 1
    vw.search([1, 2, 3], k=2)
    assert kinds(script) == [FORM, JSON, JSON, "application/octet-stream"]
    assert json.loads(script.requests[1].content) == {
        "points": [
            {"id": 1, "vector": [1, 1, 1], "payload": {"a": 1}},
            {"id": 2, "vector": [1, 1, 1]},
        ]
    }
    assert vw.binary, "searches stay binary: only forms were refused"


def test_a_server_without_binary_searches_gets_json_upserts() -> None:
    script = Script(
        httpx.Response(422, json=MODEL_ATTRIBUTES),
        httpx.Response(200, json=hits()),
        httpx.Response(200, json={"upserted": 1}),
    )
    vw, _ = client(script, binary=True)
    vw.search([1, 2], k=2)
    assert vw.upsert("c", [1], np.ones((1, 2))) == 1
    assert kinds(script) == ["application/octet-stream", JSON, JSON]


@pytest.mark.parametrize(
    ("server_loc", "loc"),
    [
        (["body", "ids", 3], ["body", "points", 13, "id"]),
        (["body", "vectors", 2], ["body", "points", 12, "vector"]),
        (["body", "vectors", 2, 7], ["body", "points", 12, "vector", 7]),
        (["body", "payloads", 0], ["body", "points", 10, "payload"]),
    ],
)
def test_a_forms_refusal_is_located_in_the_callers_input(
    server_loc: list[object], loc: list[object]
) -> None:
    refusal = {"detail": [{"loc": server_loc, "msg": "m", "type": "value_error"}]}
    script = Script(httpx.Response(200, json={"upserted": 10}), httpx.Response(422, json=refusal))
    vw, _ = client(script, binary=True)
    with pytest.raises(ValidationError) as e:
        vw.upsert("c", range(20), np.ones((20, 8)), batch_size=10)
    assert e.value.status == 422
    assert e.value.errors == [{"loc": loc, "msg": "m", "type": "value_error"}]
    assert ".".join(map(str, loc)) in str(e.value)
    assert kinds(script) == [FORM, FORM]  # located: not asked again as JSON


def test_a_form_refused_as_a_whole_part_is_repeated_as_json() -> None:
    msg = "Value error, 6 vectors for 3 ids: one row per id"
    shape = {"detail": [{"loc": ["body", "vectors"], "msg": msg, "type": "value_error"}]}
    located = {"loc": ["body", "points", 0, "vector"], "msg": "m", "type": "value_error"}
    dimension = {"detail": [located]}
    script = Script(
        httpx.Response(200, json={"upserted": 2}),
        httpx.Response(422, json=shape),
        httpx.Response(422, json=dimension),
    )
    vw, _ = client(script, binary=True)
    with pytest.raises(ValidationError) as e:
        vw.upsert("c", range(5), np.ones((5, 4)), batch_size=2)
    assert e.value.errors[0]["loc"] == ["body", "points", 2, "vector"]  # counted from point 0
    assert kinds(script) == [FORM, FORM, JSON]
    assert [p["id"] for p in script.bodies_from(2)[0]["points"]] == [2, 3]
    assert vw.binary and vw._forms


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 503, 507])
def test_answers_json_would_get_too_are_not_asked_twice(status: int) -> None:
    detail = "collection `c` does not exist" if status == 404 else "no"
    script = Script(httpx.Response(status, json={"detail": detail}))
    vw, _ = client(script, binary=True, retries=0)
    with pytest.raises(ClientError if status < 500 else ServerError) as e:
        vw.upsert("c", [1], [[1.0]])
    assert e.value.status == status and kinds(script) == [FORM]


def form_ids(request: httpx.Request) -> list[Any]:
    part = rb'name="ids"\r\nContent-Type: application/json\r\n\r\n(.*?)\r\n'
    m = re.search(part, request.content)
    assert m, request.content[:300]
    ids: list[Any] = json.loads(m[1])
    return ids


def test_forms_keep_under_max_body_bytes() -> None:
    def upserted(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"upserted": len(form_ids(request))})

    script = Script(*[upserted] * 100)
    vw, _ = client(script, binary=True, max_body_bytes=3000)
    assert vw.upsert("c", range(100), np.ones((100, 32)), [{"i": i} for i in range(100)]) == 100
    assert [i for r in script.requests for i in form_ids(r)] == list(range(100))
    sizes = [len(r.content) for r in script.requests]
    # Full up to one point (~140 bytes: its row, id and payload), never over.
    assert max(sizes) <= 3000 and min(sizes[:-1]) > 3000 - 160, sizes


# -- UUID point ids -----------------------------------------------------------------

U1 = "550e8400-e29b-41d4-a716-446655440000"
U2 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def refuse_all(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"sent {request.url}")


def test_uuid_ids_go_out_hyphenated_in_lower_case_beside_ints() -> None:
    """uuid.UUID objects and every string form uuid.UUID reads, mixed with ints (Python's
    and numpy's) in one list: each UUID is sent as the server writes it, each int as a
    JSON number, in the order given."""
    given: list[object] = [
        uuid.UUID(U1),
        7,
        U2.upper(),
        np.int64(2**63 - 1),
        "{" + U1 + "}",
        "urn:uuid:" + U2,
        U1.replace("-", ""),
    ]
    sent = [U1, 7, U2, 2**63 - 1, U1, U2, U1]
    script = Script(
        httpx.Response(200, json={"upserted": 4}),
        httpx.Response(200, json={"deleted": 2}),
        httpx.Response(200, json={"points": []}),
        httpx.Response(200, json={"deleted": 1}),
    )
    vw, _ = client(script)
    assert vw.upsert("c", given, np.ones((7, 2))) == 4
    assert vw.delete("c", given) == 2
    assert vw.get("c", given) == []
    assert vw.delete("c", uuid.UUID(U2)) == 1  # one id, as one int is
    upsert, delete, get, one = script.bodies()
    assert [p["id"] for p in upsert["points"]] == sent
    assert delete["ids"] == sent and get["ids"] == sent and one["ids"] == [U2]
    # Only UUIDs, as strings or a numpy string array: no ints to keep apart.
    script = Script(
        httpx.Response(200, json={"deleted": 0}), httpx.Response(200, json={"deleted": 0})
    )
    vw, _ = client(script)
    vw.delete("c", np.array([U1.upper(), U2]))
    vw.delete("c", (U2, 3))
    assert [b["ids"] for b in script.bodies()] == [[U1, U2], [U2, 3]]


def test_int_ids_go_out_as_before() -> None:
    script = Script(
        httpx.Response(200, json={"deleted": 0}), httpx.Response(200, json={"upserted": 2})
    )
    vw, _ = client(script)
    vw.delete("c", np.array([1, 2**63 - 1], dtype=np.uint64))
    vw.upsert("c", np.array([3, 4], dtype=np.int32), np.ones((2, 1)))
    assert script.requests[0].content == b'{"ids":[1,9223372036854775807]}'
    assert script.requests[1].content == (
        b'{"points":[{"id":3,"vector":[1]},{"id":4,"vector":[1]}]}'
    )


@pytest.mark.parametrize(
    ("bad", "kind", "words"),
    [
        ("550e8400-e29b-41d4-a716-44665544000", "uuid_parsing", "not a UUID"),  # 31 digits
        ("550e8400-e29b-41d4-a716-44665544000g", "uuid_parsing", "not a UUID"),
        ("42", "uuid_parsing", "not a UUID"),  # a string, even of digits, is no int
        ("", "uuid_parsing", "not a UUID"),
        (True, "int_type", "not an integer or a UUID"),
        (1.5, "int_type", "not an integer or a UUID"),
        (None, "int_type", "not an integer or a UUID"),
        (uuid.UUID(U1).bytes, "int_type", "not an integer or a UUID"),
        (-1, "greater_than_equal", "0 to 2**63 - 1"),
        (2**63, "less_than_equal", "0 to 2**63 - 1"),
    ],
)
def test_a_bad_id_among_uuids_is_located_as_the_server_would(
    bad: object, kind: str, words: str
) -> None:
    ids = [U1, 5, bad]
    with VectorWiseClient("http://vw.test", transport=httpx.MockTransport(refuse_all)) as vw:
        cases: list[tuple[Callable[[], object], list[object]]] = [
            (lambda: vw.upsert("c", ids, np.ones((3, 2))), ["body", "points", 2, "id"]),
            (lambda: vw.delete("c", ids), ["body", "ids", 2]),
            (lambda: vw.get("c", ids), ["body", "ids", 2]),
            (lambda: vw.retrieve("c", bad), ["path", "id"]),  # type: ignore[arg-type]
        ]
        for call, loc in cases:
            with pytest.raises(ValidationError) as e:
                call()
            assert isinstance(e.value, ValueError) and e.value.status is None
            assert e.value.errors == [{"loc": loc, "msg": e.value.errors[0]["msg"], "type": kind}]
            assert words in e.value.errors[0]["msg"]
            assert ".".join(map(str, loc)) in str(e.value)
    with VectorWiseClient("http://vw.test", transport=httpx.MockTransport(refuse_all)) as vw:
        with pytest.raises(ValidationError) as e:
            vw.delete("c", "not-a-uuid")  # one string: one id, not its characters
        assert e.value.errors[0]["loc"] == ["body", "ids", 0]


def test_retrieve_by_uuid_asks_for_its_canonical_form() -> None:
    point = {"id": U1, "vector": [1.0, 0.0], "payload": {"a": 1}}
    script = Script(
        httpx.Response(200, json=point),
        httpx.Response(200, json=point),
        httpx.Response(404, json={"detail": "Point not found"}),
    )
    vw, _ = client(script)
    got = vw.retrieve("c", uuid.UUID(U1))
    assert got is not None and got.id == U1 and got.payload == {"a": 1}
    assert vw.retrieve("c", U1.upper()) is not None
    assert vw.retrieve("c", U2) is None
    assert [r.url.path for r in script.requests] == [
        f"/collections/c/points/{U1}",
        f"/collections/c/points/{U1}",
        f"/collections/c/points/{U2}",
    ]


def test_answered_ids_are_ints_and_uuid_strings_and_nothing_else() -> None:
    points = [{"id": 3, "payload": None}, {"id": U1.upper(), "payload": None}]
    vw, _ = client(Script(httpx.Response(200, json={"points": points})))
    got = vw.get("c", [3, U1])
    assert [p.id for p in got] == [3, U1]  # as the server writes it (lower case)
    assert type(got[0].id) is int
    for garbage in (True, 1.5, "3", "zz", None, [3], {"id": 3}, -1, 2**63):
        vw, _ = client(Script(httpx.Response(200, json={"points": [{"id": garbage}]})))
        with pytest.raises(UnexpectedResponse, match="not a point"):
            vw.get("c", [3])
        # Among UUID ids, each hit's id is checked.
        hits = {"hits": [{"id": U1, "distance": 0.5}, {"id": garbage, "distance": 0.6}]}
        vw, _ = client(Script(httpx.Response(200, json=hits)))
        with pytest.raises(UnexpectedResponse, match="not a collection search result"):
            vw.search([1.0], k=2, collection="c")
    # Integer ids take one conversion to int64 (as before UUIDs): what it refuses.
    for garbage in ("zz", None, [3], {"id": 3}, 2**64):
        hits = {"hits": [{"id": 1, "distance": 0.5}, {"id": garbage, "distance": 0.6}]}
        vw, _ = client(Script(httpx.Response(200, json=hits)))
        with pytest.raises(UnexpectedResponse, match="not a collection search result"):
            vw.search([1.0], k=2, collection="c")


def test_hits_with_uuid_ids() -> None:
    """``point_ids`` and iteration give every hit's id; ``ids`` (int64) refuses a UUID
    clearly, in a batch too; a result of integer ids is as before."""
    mixed = {"hits": [{"id": U1, "distance": 0.25}, {"id": 9, "distance": 0.5}]}
    ints = {"hits": [{"id": 4, "distance": 0.125}, {"id": 9, "distance": 0.5}]}
    script = Script(
        httpx.Response(200, json=mixed),
        httpx.Response(200, json={"results": [ints, mixed]}),
        httpx.Response(200, json={"results": [ints, ints]}),
    )
    vw, _ = client(script)
    hits = vw.search([1.0], k=2, collection="c")
    assert isinstance(hits, CollectionSearchResult) and len(hits) == 2
    assert hits.point_ids == [U1, 9]
    assert list(hits) == [(U1, 0.25), (9, 0.5)]
    assert hits.distances.tolist() == [0.25, 0.5]
    with pytest.raises(ValueError, match=f"hit 0 has the UUID id '{U1}'.*point_ids"):
        hits.ids  # noqa: B018
    assert U1 in repr(hits)

    batch = vw.search_batch([[1.0], [2.0]], k=2, collection="c")
    assert isinstance(batch, CollectionBatchResult)
    assert batch.point_ids == [[4, 9], [U1, 9]]
    assert batch[0].ids.tolist() == [4, 9]
    with pytest.raises(ValueError, match=f"row 1, hit 0 has the UUID id '{U1}'"):
        batch.ids  # noqa: B018
    assert batch.distances.shape == (2, 2)

    batch = vw.search_batch([[1.0], [2.0]], k=2, collection="c")
    assert batch.ids.tolist() == [[4, 9], [4, 9]] and batch.ids.dtype == np.int64
    assert batch.point_ids == [[4, 9], [4, 9]] and type(batch.point_ids[0][0]) is int
    assert list(batch[0]) == [(4, 0.125), (9, 0.5)]
    # Built from an int64 array (as a caller may), point_ids follow ids.
    r = CollectionSearchResult(np.array([5, 6]), np.zeros(2, np.float32))
    assert r.point_ids == [5, 6] and "array([5, 6])" in repr(r)


def test_integer_only_answers_refuse_a_uuid_clearly() -> None:
    """The served index's answer and a job's ids.npy hold ints; the server answers 409
    (or fails the job) rather than put a UUID there, but should one come, it is named."""
    answer = {"indices": [1, U1], "distances": [0.1, 0.2]}
    vw, _ = client(Script(httpx.Response(200, json=answer)))
    with pytest.raises(UnexpectedResponse, match=f"UUID id '{U1}'.*collection='default'"):
        vw.search([1.0], k=2)
    conflict = {
        "detail": f"The answer holds the point {U1}, whose id is a UUID; this response "
        "carries integer ids only: search with POST /collections/default/search"
    }
    vw, _ = client(Script(httpx.Response(409, json=conflict)))
    with pytest.raises(ConflictError, match=U1):
        vw.search([1.0], k=2)

    def npy(arr: np.ndarray) -> httpx.Response:
        out = io.BytesIO()
        np.save(out, arr, allow_pickle=True)
        return httpx.Response(200, content=out.getvalue())

    vw, _ = client(Script(npy(np.array([[U1]])), npy(np.zeros((1, 1), np.float32))))
    with pytest.raises(UnexpectedResponse, match=r"ids\.npy of job j is not an array of integers"):
        vw.job_results("c", "j")
    vw, _ = client(Script(npy(np.array([[U1]], dtype=object))))
    with pytest.raises(UnexpectedResponse, match=r"ids\.npy of job j is not a \.npy array"):
        vw.job_results("c", "j")
    vw, _ = client(
        Script(npy(np.array([[3, -1]], np.int64)), npy(np.array([[0.5, np.inf]], np.float32)))
    )
    ids, distances = vw.job_results("c", "j")
    assert ids.tolist() == [[3, -1]] and distances.dtype == np.float32
