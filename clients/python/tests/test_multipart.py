"""Upserts as multipart/form-data (the client's default), against the real server.

Every upsert request is recorded by a transport: these tests fail if a body is not
the form the client promises (parts ``ids`` as JSON, ``vectors`` as raw
little-endian float32, ``payloads`` as JSON only when a point has one). Errors the
server locates at a part (``["body", "vectors", 2]``) must come out located in the
caller's input as a JSON body's are (``["body", "points", 102, "vector"]``). A server
with a small ``--max-batch`` and one with a small ``--body-limit`` check the
chunking; ``binary=False`` must send JSON.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pytest
from conftest import Dataset

from vectorwise import Point, ValidationError, VectorWiseClient
from vectorwise.local import LocalServer

DIM = 8
FORM = "multipart/form-data"


class Recorder(httpx.HTTPTransport):
    """The real network transport, keeping each request to ``/collections/*/points``
    (the upserts) and its answer's status."""

    def __init__(self) -> None:
        super().__init__()
        self.upserts: list[tuple[httpx.Request, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "PUT" and request.url.path.endswith("/points"):
            request.read()
            self.upserts.append((request, response.status_code))
        return response

    def kinds(self) -> list[str]:
        """Each upsert's media type (``multipart/form-data``, ``application/json``)."""
        return [r.headers["content-type"].split(";")[0] for r, _ in self.upserts]

    def statuses(self) -> list[int]:
        return [status for _, status in self.upserts]


def form_parts(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data request's parts: ``{name: (content type, bytes)}``; fails
    the test if the request is not one, or a part is malformed or repeated."""
    content_type = request.headers["content-type"]
    m = re.fullmatch(r"multipart/form-data; boundary=([A-Za-z0-9'()+_,./:=?-]{1,70})", content_type)
    assert m, f"not a form: {content_type}"
    delimiter = b"--" + m[1].encode()
    body = request.content
    assert body.startswith(delimiter + b"\r\n") and body.endswith(b"\r\n" + delimiter + b"--\r\n")
    chunks = body[len(delimiter) + 2 : -len(delimiter) - 6].split(b"\r\n" + delimiter + b"\r\n")
    parts: dict[str, tuple[str | None, bytes]] = {}
    for chunk in chunks:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        assert sep, chunk[:200]
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in head.decode().split("\r\n"))
        )
        name = re.fullmatch(r'form-data; name="([a-z]+)"', headers["content-disposition"])
        assert name and name[1] not in parts, headers
        parts[name[1]] = (headers.get("content-type"), data)
    return parts


def sent_points(request: httpx.Request, dim: int) -> tuple[list[Any], np.ndarray, list[Any] | None]:
    """The ids, vectors and payloads (``None``: no part) of an upsert form."""
    parts = form_parts(request)
    assert set(parts) <= {"ids", "vectors", "payloads"} and {"ids", "vectors"} <= set(parts)
    assert parts["ids"][0] == "application/json"
    assert parts["vectors"][0] == "application/octet-stream"
    ids = json.loads(parts["ids"][1])
    vectors = np.frombuffer(parts["vectors"][1], dtype="<f4").reshape(len(ids), dim)
    payloads = None
    if "payloads" in parts:
        assert parts["payloads"][0] == "application/json"
        payloads = json.loads(parts["payloads"][1])
        assert len(payloads) == len(ids)
    return ids, vectors, payloads


@pytest.fixture(scope="module")
def form_server(
    binary: Path, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """A server of its own, its collections in a fresh directory."""
    data_dir = tmp_path_factory.mktemp("forms")
    with LocalServer(dataset.index_path, binary=binary, data_dir=data_dir) as s:
        yield s


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[-64:]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def vw(form_server: LocalServer, recorder: Recorder) -> Iterator[VectorWiseClient]:
    with VectorWiseClient(form_server.url, retries=2, backoff=0.01, transport=recorder) as c:
        yield c


def vectors_of(points: list[Point]) -> np.ndarray:
    """The points' vectors as one matrix."""
    rows = [p.vector for p in points]
    assert all(r is not None for r in rows)
    return np.stack(cast("list[np.ndarray]", rows))


def mixed_ids(n: int) -> tuple[list[Any], list[Any]]:
    """``n`` ids alternating int / UUID (UUIDs in the forms uuid.UUID reads), and the
    same ids as the server writes them."""
    given: list[Any] = []
    canonical: list[Any] = []
    for i in range(n):
        if i % 2 == 0:
            given.append(2**62 + i)
            canonical.append(2**62 + i)
            continue
        u = uuid.UUID(int=(i * 0x9E3779B97F4A7C15) << 40 | i)
        given.append([u, str(u).upper(), u.hex, "{" + str(u) + "}", u.urn][(i // 2) % 5])
        canonical.append(str(u))
    return given, canonical


def test_upserts_go_as_forms_with_the_vectors_in_binary(
    vw: VectorWiseClient, recorder: Recorder, name: str
) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((10, DIM))  # float64: sent as float32
    vw.create_collection(name, DIM, metric="l2")
    assert (
        vw.upsert(name, np.arange(10), vectors, [{"i": i} if i % 3 else None for i in range(10)])
        == 10
    )
    assert vw.upsert(name, [20, 21], vectors[:2]) == 2  # no payloads: no part
    assert vw.upsert(name, [22, 23], vectors[:2], [None, None]) == 2  # none given: no part
    assert recorder.kinds() == [FORM] * 3 and recorder.statuses() == [200] * 3
    first, second, third = (r for r, _ in recorder.upserts)
    ids, sent, payloads = sent_points(first, DIM)
    assert ids == list(range(10))
    np.testing.assert_array_equal(sent, vectors.astype(np.float32))
    assert payloads == [{"i": i} if i % 3 else None for i in range(10)]
    assert sent_points(second, DIM)[2] is None and sent_points(third, DIM)[2] is None
    # The form's numbers are the float32 values given, bit for bit.
    stored = vw.get(name, list(range(10)))
    np.testing.assert_array_equal(vectors_of(stored), vectors.astype(np.float32))


def test_uuid_and_int_ids_and_payloads_round_trip_through_forms(
    vw: VectorWiseClient, recorder: Recorder, name: str
) -> None:
    n = 60
    given, canonical = mixed_ids(n)
    vectors = np.random.default_rng(2).standard_normal((n, DIM)).astype(np.float32)
    payloads: list[dict[str, Any] | None] = [
        None if i % 7 == 0 else {"row": i, "tag": 'é\u2603"\\', "n": np.int64(i), "f": [0.5, None]}
        for i in range(n)
    ]
    vw.create_collection(name, DIM, metric="ip")
    assert vw.upsert(name, given, vectors, payloads, batch_size=25) == n
    assert recorder.kinds() == [FORM] * 3  # 25 + 25 + 10
    sent_ids = [i for r, _ in recorder.upserts for i in sent_points(r, DIM)[0]]
    assert sent_ids == canonical  # hyphenated lower case, ints as JSON numbers
    got = vw.get(name, given)
    assert [p.id for p in got] == canonical
    np.testing.assert_array_equal(vectors_of(got), vectors)
    expected = [None if p is None else {**p, "n": int(p["n"])} for p in payloads]
    assert [p.payload for p in got] == expected
    hits = vw.search(vectors[5], k=1, collection=name, with_payload=True)
    assert hits.point_ids == [canonical[5]] and hits.payloads == [expected[5]]


def test_a_vector_holding_the_boundary_goes_with_another(
    vw: VectorWiseClient, recorder: Recorder, name: str
) -> None:
    # The boundary in digits: its bytes are small finite float32 values (a random
    # boundary's letters could make values too large for the server).
    vw._boundary = b"1234567890" * 4
    mark = b"--" + vw._boundary
    raw = mark + b"-" * (-len(mark) % 4)
    row = np.frombuffer(raw, dtype="<f4")
    vw.create_collection(name, len(row), metric="l2")
    assert vw.upsert(name, [1], row[None, :]) == 1
    ((request, status),) = recorder.upserts
    assert status == 200 and "1234567890" not in request.headers["content-type"]
    assert sent_points(request, len(row))[1].tobytes() == raw
    (point,) = vw.get(name, [1])
    assert point.vector is not None and point.vector.tobytes() == raw


def test_a_zero_vector_is_located_in_the_callers_input(
    vw: VectorWiseClient, recorder: Recorder, name: str
) -> None:
    vectors = np.random.default_rng(3).standard_normal((250, DIM)).astype(np.float32)
    vectors[150] = 0.0
    vw.create_collection(name, DIM)  # cosine: a zero vector is refused
    with pytest.raises(ValidationError) as e:
        vw.upsert(name, np.arange(250), vectors, batch_size=100)
    assert e.value.status == 422
    assert [err["loc"] for err in e.value.errors] == [["body", "points", 150, "vector"]]
    assert "body.points.150.vector" in str(e.value)
    assert recorder.kinds() == [FORM, FORM] and recorder.statuses() == [200, 422]
    assert vw.collection_info(name)["points"] == 100  # the first request stays written


def test_a_payload_too_large_is_located_in_the_callers_input(
    vw: VectorWiseClient, recorder: Recorder, name: str
) -> None:
    given, _ = mixed_ids(30)
    payloads: list[dict[str, Any] | None] = [{"i": i} for i in range(30)]
    payloads[27] = {"s": "x" * 100}
    vw.create_collection(name, DIM, max_payload_bytes=64)
    with pytest.raises(ValidationError) as e:
        vw.upsert(name, given, np.ones((30, DIM)), payloads, batch_size=10)
    assert [err["loc"] for err in e.value.errors] == [["body", "points", 27, "payload"]]
    assert e.value.errors[0]["type"] == "too_long"
    assert recorder.kinds() == [FORM] * 3 and recorder.statuses() == [200, 200, 422]


def test_a_wrong_dimension_is_located_at_the_point_as_json_locates_it(
    vw: VectorWiseClient, recorder: Recorder, name: str
) -> None:
    vw.create_collection(name, DIM)
    for width in (DIM - 3, DIM * 2):  # not a whole number of rows; twice the rows
        recorder.upserts.clear()
        with pytest.raises(ValidationError) as e:
            vw.upsert(name, [1, 2, 3], np.ones((3, width)))
        assert e.value.status == 422
        assert [err["loc"] for err in e.value.errors] == [["body", "points", 0, "vector"]]
        assert f"the collection's dimension is {DIM}" in str(e.value)
        # The form's refusal names no point (a raw row has no width): JSON names it.
        assert recorder.kinds() == [FORM, "application/json"]
        assert recorder.statuses() == [422, 422]
    assert vw.binary and vw._forms, "a refusal of one form's content keeps forms on"
    assert vw.upsert(name, [1], np.ones((1, DIM))) == 1
    assert recorder.kinds()[-1] == FORM


def test_binary_false_sends_json(form_server: LocalServer, name: str) -> None:
    recorder = Recorder()
    given, canonical = mixed_ids(6)
    with VectorWiseClient(form_server.url, transport=recorder, binary=False) as vw:
        vw.create_collection(name, DIM, metric="l2")
        assert vw.upsert(name, given, np.eye(6, DIM), [{"i": i} for i in range(6)]) == 6
        with pytest.raises(ValidationError) as e:
            vw.upsert(name, [1], [[0.0] * (DIM - 1)])
        assert e.value.errors[0]["loc"] == ["body", "points", 0, "vector"]
        assert [p.id for p in vw.get(name, given)] == canonical
    assert recorder.kinds() == ["application/json"] * 2
    body = json.loads(recorder.upserts[0][0].content)
    assert [p["id"] for p in body["points"]] == canonical
    assert body["points"][2] == {
        "id": canonical[2],
        "vector": np.eye(6, DIM)[2].tolist(),
        "payload": {"i": 2},
    }


def test_forms_follow_a_servers_smaller_max_batch(
    binary: Path, dataset: Dataset, name: str
) -> None:
    """The server takes 10 x --max-batch ids a request and says so (422 ``too_long`` at
    ``["body", "ids"]``): 250 points ask 100, 100 and 50 of it after the refusal."""
    given, canonical = mixed_ids(250)
    vectors = np.random.default_rng(4).standard_normal((250, DIM)).astype(np.float32)
    payloads = [{"row": i} for i in range(250)]
    recorder = Recorder()
    flags = ["--max-batch", "10"]
    with LocalServer(dataset.index_path, binary=binary, extra_args=flags) as server:
        vw = VectorWiseClient(server.url, transport=recorder)
        vw.create_collection(name, DIM, metric="l2")
        assert vw.upsert(name, given, vectors, payloads) == 250
        got = vw.get(name, given)
        vw.close()
    assert [len(sent_points(r, DIM)[0]) for r, _ in recorder.upserts] == [250, 100, 100, 50]
    assert recorder.statuses() == [422, 200, 200, 200]
    assert recorder.kinds() == [FORM] * 4
    assert [p.id for p in got] == canonical
    assert [p.payload for p in got] == payloads
    np.testing.assert_array_equal(vectors_of(got), vectors)


def test_forms_follow_a_servers_smaller_body_limit(
    binary: Path, dataset: Dataset, name: str
) -> None:
    """A form over --body-limit gets 413: the client halves its bodies until they fit."""
    dim, limit = 64, 20_000
    given, canonical = mixed_ids(250)  # ~75 kB as a form
    vectors = np.random.default_rng(5).standard_normal((250, dim)).astype(np.float32)
    payloads = [{"row": i} for i in range(250)]
    recorder = Recorder()
    flags = ["--body-limit", str(limit)]
    with LocalServer(dataset.index_path, binary=binary, extra_args=flags) as server:
        vw = VectorWiseClient(server.url, transport=recorder)
        vw.create_collection(name, dim, metric="l2")
        assert vw.upsert(name, given, vectors, payloads) == 250
        assert vw.max_body_bytes <= limit
        got = vw.get(name, given)
        vw.close()
    statuses = recorder.statuses()
    refused = statuses.index(200)
    assert refused >= 1 and statuses == [413] * refused + [200] * (len(statuses) - refused)
    written = [r for r, status in recorder.upserts if status == 200]
    assert all(len(r.content) <= limit for r in written)
    assert [i for r in written for i in sent_points(r, dim)[0]] == canonical
    assert recorder.kinds() == [FORM] * len(statuses)
    assert [p.id for p in got] == canonical
    assert [p.payload for p in got] == payloads
    np.testing.assert_array_equal(vectors_of(got), vectors)
