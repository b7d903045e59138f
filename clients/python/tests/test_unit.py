"""Client behaviour the real server cannot be made to show on demand (an
overload's Retry-After, 5xx, an older server without /search/batch, garbled
answers) or not exactly when wanted (a 429's Retry-After), against scripted
answers from httpx.MockTransport."""

from __future__ import annotations

import json
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
