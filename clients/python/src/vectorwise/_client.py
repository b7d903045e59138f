"""`VectorWiseClient`: the HTTP client, its results, and how it encodes queries.

Queries go out as JSON with every element written as ``%.9g`` of its float32
value: nine significant digits are exactly enough for a float32 to come back
bit for bit (the server stores and searches float32), and the body is about
40 % smaller than Python's shortest float64 repr of the same numbers.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import math
import numbers
import random
import re
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypedDict, Union, cast, overload
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt

from .errors import (
    CollectionNotFound,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationError,
    error_from_response,
)
from .filters import Condition, Filter, _key, _uuid_text

__all__ = [
    "MAX_EF_SEARCH",
    "MAX_POINT_ID",
    "METRICS",
    "PAYLOAD_INDEX_TYPES",
    "PROFILES",
    "BatchResult",
    "Calibration",
    "CalibrationPoint",
    "CalibrationProfile",
    "CollectionBatchResult",
    "CollectionInfo",
    "CollectionSearchResult",
    "CollectionSummary",
    "FilterInfo",
    "Health",
    "PayloadIndex",
    "Point",
    "PointId",
    "RecallMonitor",
    "RecallMonitorEntry",
    "SearchInfo",
    "SearchResult",
    "Stats",
    "VectorWiseClient",
]

#: Anything accepted as one query: a 1-D numpy array or a sequence of numbers.
VectorLike = Union[npt.NDArray[Any], Sequence[float]]
#: Anything accepted as many queries: a 2-D numpy array or a sequence of rows.
MatrixLike = Union[npt.NDArray[Any], Sequence[Sequence[float]]]
#: What ``filter=`` takes: a `vectorwise.filters.Filter`, one condition (as
#: ``Filter(must=[condition])``), or the server's JSON as a dict.
FilterLike = Union[Condition, Mapping[str, Any]]
#: A collection's point id as answered: an ``int`` (``0 .. 2**63 - 1``), or a UUID as
#: the server writes it, a hyphenated lower-case ``str``
#: (``"550e8400-e29b-41d4-a716-446655440000"``).
PointId = Union[int, str]
#: A point id as given: an int (a numpy integer too), a `uuid.UUID`, or a UUID string
#: in any form `uuid.UUID` reads (sent hyphenated, in lower case).
PointIdLike = Union[int, str, uuid.UUID]

#: Statuses worth another try: the same request may well succeed later
#: (429: once the caller's rate budget has refilled).
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# Transport failures worth another try. Every request this client makes is
# idempotent (reads and searches), so a retry after a read timeout or a reset
# connection cannot do anything twice.
_RETRY_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_JSON = {"content-type": "application/json", "accept": "application/json"}
#: A search's vectors in binary (the server's `binary.rs`): one query as raw
#: little-endian float32, a batch as a .npy array (its shape carries the row width,
#: so a matrix of the wrong width is refused, never read as rows of another).
_OCTET_STREAM = "application/octet-stream"
_NPY = "application/x-npy"
#: An upsert's body (the server's `multipart.rs`): parts ``ids`` (JSON), ``vectors``
#: (raw little-endian float32, one row per id) and ``payloads`` (JSON, when given).
_FORM_DATA = "multipart/form-data"
_JSON_PART = "application/json"

#: The server's named search profiles, each a calibrated recall@k promise:
#: ``low_latency`` >= 0.90, ``balanced`` >= 0.95 (the server's default),
#: ``high_accuracy`` >= 0.99.
PROFILES: Mapping[str, float] = {"low_latency": 0.90, "balanced": 0.95, "high_accuracy": 0.99}

#: Largest ``ef_search`` the server accepts.
MAX_EF_SEARCH = 100_000


class Health(TypedDict):
    """``GET /`` body."""

    service: str
    #: ``"healthy"``, ``"loading"`` or ``"unavailable"``.
    status: str
    vectors_indexed: int


class CalibrationProfile(TypedDict):
    """What one profile resolves to at one ``k`` on the served index (``/stats``)."""

    #: ``low_latency``, ``balanced`` or ``high_accuracy``.
    profile: str
    k: int
    #: The recall@k the profile promises.
    recall_target: float
    #: ``hnsw``, ``scan`` or ``exact``.
    method: str
    #: The engine setting: ``ef=64``, ``rerank=192``, ``exact``.
    setting: str
    #: Calibrated mean recall@k of that setting.
    expected_recall: float
    #: Engine latency measured at calibration (one thread, in-process); ``None`` if not measured.
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class CalibrationPoint(TypedDict):
    """One measured setting of the calibration table."""

    k: int
    method: str
    setting: str
    recall_mean: float
    #: 10th percentile of per-query recall.
    recall_p10: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class Calibration(TypedDict):
    """The recall table stored in the index (``vectorwise build`` / ``vectorwise calibrate``)."""

    #: ``leave_one_out`` (indexed points as queries) or ``given`` (supplied queries).
    source: str
    queries: int
    seconds: float
    #: Each profile's setting at each calibrated ``k`` (1, 10, 100 by default).
    profiles: list[CalibrationProfile]
    #: Every measured setting.
    table: list[CalibrationPoint]


class RecallMonitorEntry(TypedDict):
    """Recall delivered to one label's searches, from sampled queries re-run exactly."""

    #: A profile name, ``recall_target`` or ``ef_search``.
    label: str
    samples: int
    recall_mean: float
    ci95_low: float
    ci95_high: float
    #: The recall promised to these searches, ``None`` if none was.
    promised: float | None
    #: ``insufficient_data``, ``below_promise`` or ``ok``.
    status: str


class RecallMonitor(TypedDict):
    """The server's live recall monitor."""

    sample_rate: float
    cpu_share: float
    sampled: int
    dropped: int
    evaluated: int
    profiles: list[RecallMonitorEntry]


class Stats(TypedDict, total=False):
    """``GET /stats`` body (the server may add fields; they are kept).

    Servers with search profiles add ``default_profile`` (what a search that
    names no profile gets: a profile name, or ``ef_search`` when the operator
    fixed a depth), ``calibration`` (``None`` for an index built without
    one) and ``recall_monitor``; older servers lack them, hence
    ``total=False``: use ``stats.get("calibration")``.
    """

    total_vectors: int
    dimension: int
    index_type: str
    hnsw_m: int
    hnsw_efSearch: int
    hnsw_efConstruction: int
    metric: str
    format_version: int
    file_size_bytes: int
    build_seconds: float
    load_seconds: float
    simd: str
    max_k: int
    index_path: str
    default_profile: str
    calibration: Calibration | None
    recall_monitor: RecallMonitor


def _header_float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _header_int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _header_list(value: str | None) -> tuple[str, ...]:
    # Items are percent-encoded by the server (a key may hold a comma).
    return tuple(urllib.parse.unquote(v) for v in (value or "").split(",") if v)


@dataclass(frozen=True)
class FilterInfo:
    """How a filtered collection search went, from its ``X-VectorWise-Filter-*`` headers.

    Attributes:
        selectivity: The share of the live points the filter let through,
            ``0.0 .. 1.0`` (``x-vectorwise-filter-selectivity``).
        allowed: How many live points it let through (``-allowed``): a search
            answers ``min(k, allowed)`` hits.
        paths: How the sealed segments were searched under the filter
            (``-paths``): ``exact``, ``sq8``, ``scan``, ``graph``, each once;
            ``("exact",)`` when only points still in memory were searched.
        unindexed: The keys no payload index answered, whose conditions read
            every point's payload instead (``-unindexed``); ``()`` when every
            key was indexed (see `VectorWiseClient.create_payload_index`).
    """

    selectivity: float | None = None
    allowed: int | None = None
    paths: tuple[str, ...] = ()
    unindexed: tuple[str, ...] = ()

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> FilterInfo | None:
        """The filter's headers, or ``None`` when there are none (no filter, or an older server)."""
        h = {k.lower(): v for k, v in headers.items()}
        names = ("selectivity", "allowed", "paths", "unindexed")
        if not any(f"x-vectorwise-filter-{n}" in h for n in names):
            return None
        return cls(
            selectivity=_header_float(h.get("x-vectorwise-filter-selectivity")),
            allowed=_header_int(h.get("x-vectorwise-filter-allowed")),
            paths=_header_list(h.get("x-vectorwise-filter-paths")),
            unindexed=_header_list(h.get("x-vectorwise-filter-unindexed")),
        )


@dataclass(frozen=True)
class SearchInfo:
    """What the server used to answer a search, from its ``X-VectorWise-*`` headers.

    Every field is ``None`` when the server did not send its header: all of
    them on a server older than search profiles, ``ef_search`` for an exact
    search, ``recall_target`` when no profile or target applied (a fixed
    ``ef_search``), ``expected_recall`` when the index has no calibration.
    ``widened`` is ``False`` without its header.

    Attributes:
        profile: What chose the setting: ``low_latency``, ``balanced``,
            ``high_accuracy``, ``recall_target`` or ``ef_search``.
        method: ``hnsw``, ``scan`` or ``exact``.
        setting: The engine setting, e.g. ``ef=64``, ``rerank=192``, ``exact``.
        ef_search: Candidates examined: the HNSW beam width (at least ``k``)
            or the scan's ``rerank * k``.
        recall_target: The recall@k asked for (by the profile or ``recall_target``).
        expected_recall: The calibrated mean recall@k of the setting used.
        filter: A filtered collection search's `FilterInfo` (selectivity,
            allowed points, paths, unindexed keys); ``None`` without a filter.
        widened: ``True`` when this query was unlike the queries the index
            was calibrated with, so the server searched it more widely than
            the setting to keep the recall promise (slower, not less
            accurate). A single search reads it from ``x-vectorwise-widened:
            true``; each row of a batch from whether its index is listed in
            ``x-vectorwise-widened-queries`` (mapped to the caller's row
            numbers when the batch went as several requests). ``False`` when
            the server did not say (an older server). A rising share of widened
            queries signals drift between the queries and the data.
    """

    profile: str | None = None
    method: str | None = None
    setting: str | None = None
    ef_search: int | None = None
    recall_target: float | None = None
    expected_recall: float | None = None
    filter: FilterInfo | None = None
    widened: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> SearchInfo:
        """Parses ``X-VectorWise-*`` headers (an unparseable number counts as absent).

        ``widened`` is ``True`` iff ``x-vectorwise-widened`` says ``true`` (a
        single search's answer); a batch's rows get theirs from
        `for_batch`.
        """
        h = {k.lower(): v for k, v in headers.items()}
        return cls(
            profile=h.get("x-vectorwise-profile"),
            method=h.get("x-vectorwise-method"),
            setting=h.get("x-vectorwise-setting"),
            ef_search=_header_int(h.get("x-vectorwise-ef-search")),
            recall_target=_header_float(h.get("x-vectorwise-recall-target")),
            expected_recall=_header_float(h.get("x-vectorwise-expected-recall")),
            filter=FilterInfo.from_headers(h),
            widened=h.get("x-vectorwise-widened", "").strip().lower() == "true",
        )

    @classmethod
    def for_batch(cls, headers: Mapping[str, str], n: int) -> list[SearchInfo]:
        """One `SearchInfo` per query of a batch answer of ``n`` queries, in request order.

        Each is `from_headers`, with ``widened`` ``True`` iff the query's
        index in this request (from 0) is listed in
        ``x-vectorwise-widened-queries`` (indices and ranges: ``0-3,7``). Items that are not indices of this
        request are ignored; no header: none widened.
        """
        info = cls.from_headers(headers)
        listed = _widened_queries(headers, n)
        plain, widened = replace(info, widened=False), replace(info, widened=True)
        return [widened if i in listed else plain for i in range(n)]

    @property
    def exact(self) -> bool:
        """Whether the answer came from an exact search (recall 1 by construction)."""
        return self.method == "exact"

    def __bool__(self) -> bool:
        """False when the server reported nothing (a server without search profiles)."""
        return self.widened or any(v is not None for k, v in vars(self).items() if k != "widened")


_NO_INFO = SearchInfo()


def _widened_queries(headers: Mapping[str, str], n: int) -> frozenset[int]:
    """The indices ``x-vectorwise-widened-queries`` lists, as indices and ranges
    (``0-3,7``; unparseable items ignored). The server leaves the list out past 2 KiB
    (``x-vectorwise-widened-count`` still says how many): then none is named."""
    value = next((v for k, v in headers.items() if k.lower() == "x-vectorwise-widened-queries"), "")
    out: set[int] = set()
    for item in value.split(","):
        first, _, last = item.strip().partition("-")
        a = _header_int(first.strip())
        b = _header_int(last.strip()) if last else a
        if a is not None and b is not None and 0 <= a <= b:
            out.update(range(a, min(b, n - 1) + 1))  # indices past the request's are not its
    return frozenset(out)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The neighbours of one query, nearest first.

    Attributes:
        ids: Ids of the neighbours (int64): those given at build
            (``vectorwise build --ids``), else their row numbers in the
            indexed vectors file.
        distances: The index's metric (float32), ascending: squared L2 for
            ``l2``, squared L2 between the unit vectors (``2 - 2 cos``) for
            ``cosine``, the negated inner product for ``ip``.
        used: What the server searched with (profile, method, setting,
            ``ef_search``, recall target, expected recall), from its response
            headers; see `SearchInfo`. Every field ``None`` on an older server.
    """

    ids: npt.NDArray[np.int64]
    distances: npt.NDArray[np.float32]
    used: SearchInfo = field(default=_NO_INFO, repr=False)

    def __len__(self) -> int:
        return int(self.distances.shape[0])

    def __iter__(self) -> Iterator[tuple[int, float]]:
        """``(id, distance)`` pairs, nearest first."""
        return zip(self.ids.tolist(), self.distances.tolist())

    @classmethod
    def _from_json(cls, body: Any, used: SearchInfo = _NO_INFO) -> SearchResult:
        try:
            ids = np.asarray(body["indices"], dtype=np.int64)
            distances = np.asarray(body["distances"], dtype=np.float32)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            indices = body.get("indices") if isinstance(body, dict) else None
            uuids = [i for i in indices if isinstance(i, str)] if isinstance(indices, list) else []
            if uuids:  # the server answers 409 instead; a UUID cannot be an int64 id
                raise UnexpectedResponse(
                    f"the answer holds the UUID id {uuids[0]!r}, which a SearchResult's int64 "
                    "ids cannot; search the collection (collection='default') for UUID ids"
                ) from e
            raise UnexpectedResponse(f"not a search result: {str(body)[:200]!r}") from e
        if ids.ndim != 1 or ids.shape != distances.shape:
            raise UnexpectedResponse(f"indices and distances differ in shape: {str(body)[:200]!r}")
        return cls(ids=ids, distances=distances, used=used)


class BatchResult(Sequence[SearchResult]):
    """The results of a batch, one `SearchResult` per query, in query order.

    Besides indexing and iteration, ``ids`` and ``distances`` give the whole
    batch as 2-D arrays of shape ``(n_queries, k)``. Every row has
    ``min(k, total_vectors)`` hits from this server, so nothing is padded in
    practice; should rows ever differ in length, the short ones are padded with
    id ``-1`` and distance ``inf`` (Faiss's convention).

    ``used`` says what the server searched with (a `SearchInfo`). The client
    may send a large matrix as several requests; each row's ``batch[i].used``
    is its own request's, and ``batch.used`` the first request's (they agree
    unless the server changed its configuration in between, see
    ``consistent``).

    Widening is per query: ``batch[i].used.widened`` says whether row ``i``
    was widened, ``widened`` gives every row's as a bool array, and
    ``batch.used.widened`` whether any row was.
    """

    def __init__(self, results: Sequence[SearchResult]) -> None:
        self._results = list(results)

    @property
    def used(self) -> SearchInfo:
        """What the server searched with (the first request's, see the class docs);
        its ``widened`` is whether any query of the batch was widened."""
        if not self._results:
            return _NO_INFO
        first = self._results[0].used
        return replace(first, widened=any(r.used.widened for r in self._results))

    @property
    def widened(self) -> npt.NDArray[np.bool_]:
        """Each query's ``used.widened``, shape ``(n_queries,)``: which queries were
        unlike the index's calibration queries and searched more widely (see
        `SearchInfo`). ``batch.widened.mean()`` is the widened share."""
        return np.array([r.used.widened for r in self._results], dtype=np.bool_)

    @property
    def consistent(self) -> bool:
        """Whether every request of the batch was answered with the same `SearchInfo`
        (``widened`` aside: it is each query's own)."""
        first = replace(self.used, widened=False)
        return all(replace(r.used, widened=False) == first for r in self._results)

    @overload
    def __getitem__(self, i: int) -> SearchResult: ...
    @overload
    def __getitem__(self, i: slice) -> list[SearchResult]: ...
    def __getitem__(self, i: int | slice) -> SearchResult | list[SearchResult]:
        return self._results[i]

    def __len__(self) -> int:
        return len(self._results)

    def __repr__(self) -> str:
        return f"BatchResult({len(self)} queries, k={self._width()})"

    def _width(self) -> int:
        return max((len(r) for r in self._results), default=0)

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        """Neighbour ids, shape ``(n_queries, k)``; ``-1`` pads short rows."""
        out = np.full((len(self), self._width()), -1, dtype=np.int64)
        for row, r in zip(out, self._results):
            row[: len(r)] = r.ids
        return out

    @property
    def distances(self) -> npt.NDArray[np.float32]:
        """Squared L2 distances, shape ``(n_queries, k)``; ``inf`` pads short rows."""
        out = np.full((len(self), self._width()), np.inf, dtype=np.float32)
        for row, r in zip(out, self._results):
            row[: len(r)] = r.distances
        return out


#: The distance measures a collection can use.
METRICS = ("l2", "ip", "cosine")

#: Largest integer point id the server stores (integer ids are ``0 .. 2**63 - 1``;
#: a point id may also be a UUID).
MAX_POINT_ID = 2**63 - 1

# Ids per request: the server takes 100 x --max-batch ids to delete and
# 10 x --max-batch to read (102400 and 10240 by default), and says so if fewer.
_IDS_PER_DELETE = 10_000
_IDS_PER_READ = 1000


def _int_field(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnexpectedResponse(f"expected an integer {name!r}: {str(body)[:200]!r}")
    return value


class CollectionSummary(TypedDict):
    """One entry of `VectorWiseClient.list_collections`."""

    name: str
    #: Live points.
    points: int


#: The types of a payload index (`VectorWiseClient.create_payload_index`).
PAYLOAD_INDEX_TYPES = ("keyword", "integer", "float", "bool")


class PayloadIndex(TypedDict):
    """One declared payload index (``CollectionInfo["payload_indexes"]``)."""

    #: The dotted key (``meta.source``).
    field: str
    #: ``keyword``, ``integer``, ``float`` or ``bool``.
    type: str


class CollectionInfo(TypedDict, total=False):
    """``GET /collections/{name}`` body: settings, counts, segments, optimiser.

    The server may add fields (they are kept), hence ``total=False``.
    """

    name: str
    dimension: int
    #: ``l2``, ``ip`` or ``cosine``.
    metric: str
    #: The mutable segment is sealed into an index past this many points.
    seal_points: int
    #: Largest payload per point, in bytes of compact JSON.
    max_payload_bytes: int
    #: Live points.
    points: int
    #: Deleted or replaced points still held by sealed segments.
    deleted: int
    wal_bytes: int
    #: Grows with every applied write.
    write_version: int
    #: One dict per segment: ``id``, ``kind`` (``mutable`` / ``frozen`` /
    #: ``sealed``), ``points``, ``deleted``, ``method``, ``calibrated``, ...
    segments: list[dict[str, Any]]
    #: The payload indexes declared (`VectorWiseClient.create_payload_index`).
    payload_indexes: list[PayloadIndex]
    #: ``state``, ``seals``, ``merges``, ``rewrites``, ``last_error``.
    optimiser: dict[str, Any]


class Job(TypedDict, total=False):
    """A batch job, as ``GET /collections/{name}/jobs/{id}`` answers it.

    ``state`` is ``"queued"``, ``"running"``, ``"done"`` or ``"failed"`` (then
    ``error`` says why); ``done`` counts the queries answered so far; ``search``
    is how hard it searches (``{"profile": "balanced"}``, ``{"recall_target":
    0.99}`` or ``{"ef_search": 64}``, the server's default resolved when it was
    submitted); ``resumed`` counts server restarts it survived; ``results``
    holds the download paths once done.
    """

    id: str
    collection: str
    state: str
    queries: int
    done: int
    k: int
    search: dict[str, Any]
    filter: dict[str, Any]
    created: str
    started: str
    finished: str
    error: str
    resumed: int
    results: dict[str, str]


def _answered_id(value: Any) -> PointId:
    """A point id in an answer: an ``int`` in ``0..MAX_POINT_ID``, or a UUID string
    (returned hyphenated, in lower case, as the server writes it). Anything else
    raises ``ValueError``."""
    if type(value) is int and 0 <= value <= MAX_POINT_ID:  # not a bool, not a float
        return value
    text = _uuid_text(value) if isinstance(value, str) else None
    if text is None:
        raise ValueError(f"not a point id (an integer or a UUID string): {value!r}")
    return text


@dataclass(frozen=True, eq=False)
class Point:
    """A stored point (`VectorWiseClient.get` / `VectorWiseClient.retrieve`).

    Attributes:
        id: Its id: an ``int``, or for a point written with a UUID id the UUID as
            a hyphenated lower-case ``str`` (``"550e8400-e29b-41d4-a716-446655440000"``).
        vector: Its vector (float32, 1-D) as stored, ``None`` when not asked
            for. A cosine collection stores (and returns) unit vectors.
        payload: Its payload (a dict), ``None`` when it has none or it was
            not asked for.
    """

    id: PointId
    vector: npt.NDArray[np.float32] | None = None
    payload: dict[str, Any] | None = None

    @classmethod
    def _from_json(cls, body: Any) -> Point:
        try:
            vector = body.get("vector")
            payload = body.get("payload")
            return cls(
                id=_answered_id(body["id"]),
                vector=None if vector is None else np.asarray(vector, dtype=np.float32),
                payload=payload if isinstance(payload, dict) else None,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise UnexpectedResponse(f"not a point: {str(body)[:200]!r}") from e


def _first_uuid(point_ids: Sequence[PointId]) -> tuple[int, str]:
    """The first UUID id of a hit list with one, and its place."""
    return next((i, p) for i, p in enumerate(point_ids) if isinstance(p, str))


class _IntIds:
    """`CollectionSearchResult.ids`: the hits' ids as an int64 array; when a hit's id is
    a UUID, which such an array cannot hold, a ``ValueError`` naming ``point_ids``."""

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        ids: npt.NDArray[np.int64] | None = obj.__dict__["_ids"]
        if ids is None:
            i, pid = _first_uuid(obj._mixed_ids)
            raise ValueError(
                f"hit {i} has the UUID id {pid!r}: `ids` is an int64 array, for integer ids "
                "only; `point_ids` holds every hit's id (ints and UUID strings)"
            )
        return ids

    def __set__(self, obj: Any, value: npt.NDArray[np.int64] | None) -> None:
        obj.__dict__["_ids"] = value


@dataclass(frozen=True, eq=False)
class CollectionSearchResult(SearchResult):
    """The hits of one search in a collection, nearest first (a `SearchResult`).

    Attributes:
        ids: The points' ids (int64). A collection may hold points with UUID
            ids, which an int64 array cannot: when a hit has one, reading
            ``ids`` raises ``ValueError``; use ``point_ids``.
        distances: The collection's metric (float32), ascending: squared L2
            for ``l2``, ``2 - 2 cos`` (squared L2 between unit vectors) for
            ``cosine``, the negated inner product for ``ip``.
        used: What the server searched with (`SearchInfo`); a collection held
            only in memory is searched exactly and reports little besides
            ``expected_recall`` 1.0.
        payloads: With ``with_payload=True``, one entry per hit: its payload
            dict, or ``None`` for a point without one. ``None`` otherwise.
        vectors: With ``with_vector=True``, the hits' vectors,
            ``(len(ids), dimension)`` float32. ``None`` otherwise.
        point_ids: The hits' ids as a list: an ``int`` for an integer id, the
            hyphenated lower-case ``str`` for a UUID id (`PointId`). Iterating
            the result gives ``(point_id, distance)`` pairs.
    """

    if TYPE_CHECKING:
        ids: npt.NDArray[np.int64]
    else:
        ids = _IntIds()
    payloads: list[dict[str, Any] | None] | None = None
    vectors: npt.NDArray[np.float32] | None = None
    #: Every hit's id when some are UUIDs (``ids`` is then ``None``).
    _mixed_ids: list[PointId] | None = field(default=None, repr=False)

    @property
    def point_ids(self) -> list[PointId]:
        """The hits' ids (see the class's text)."""
        return self._mixed_ids if self._mixed_ids is not None else self.ids.tolist()

    def __iter__(self) -> Iterator[tuple[PointId, float]]:  # type: ignore[override]
        """``(point_id, distance)`` pairs, nearest first (UUID ids as strings)."""
        return zip(self.point_ids, self.distances.tolist())

    def __repr__(self) -> str:
        ids = self.__dict__["_ids"]
        return (
            f"CollectionSearchResult(ids={self._mixed_ids if ids is None else ids!r}, "
            f"distances={self.distances!r}, payloads={self.payloads!r}, vectors={self.vectors!r})"
        )

    @classmethod
    def _from_hits(
        cls, body: Any, used: SearchInfo, with_payload: bool, with_vector: bool
    ) -> CollectionSearchResult:
        hits = body.get("hits") if isinstance(body, dict) else None
        if not isinstance(hits, list):
            raise UnexpectedResponse(f"not a collection search result: {str(body)[:200]!r}")
        try:
            answered = [h["id"] for h in hits]
            mixed: list[PointId] | None = None
            try:  # integer ids, as before UUIDs: one conversion
                ids: npt.NDArray[np.int64] | None = np.asarray(answered, dtype=np.int64)
            except (TypeError, ValueError, OverflowError):  # UUID ids (strings), or garbage
                mixed = [_answered_id(i) for i in answered]
                if not any(isinstance(i, str) for i in mixed):
                    raise
                ids = None
            distances = np.asarray([h["distance"] for h in hits], dtype=np.float32)
            payloads = None
            if with_payload:
                payloads = [
                    h.get("payload") if isinstance(h.get("payload"), dict) else None for h in hits
                ]
            vectors = None
            if with_vector:
                rows = [h["vector"] for h in hits]
                vectors = (
                    np.asarray(rows, dtype=np.float32)
                    if rows
                    else np.zeros((0, 0), dtype=np.float32)
                )
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as e:
            raise UnexpectedResponse(f"not a collection search result: {str(body)[:200]!r}") from e
        return cls(
            ids=cast(Any, ids),
            distances=distances,
            used=used,
            payloads=payloads,
            vectors=vectors,
            _mixed_ids=mixed,
        )


class CollectionBatchResult(BatchResult):
    """`BatchResult` of a collection: each row a `CollectionSearchResult`.

    ``ids`` and ``distances`` are ``(n_queries, k)`` arrays (rows shorter than
    ``k``, when the collection holds fewer points, are padded with ``-1`` and
    ``inf``); ``payloads`` is one list per query (``None`` without
    ``with_payload``).
    """

    _results: list[CollectionSearchResult]  # type: ignore[assignment]

    def __init__(self, results: Sequence[CollectionSearchResult]) -> None:
        super().__init__(results)

    @overload
    def __getitem__(self, i: int) -> CollectionSearchResult: ...
    @overload
    def __getitem__(self, i: slice) -> list[SearchResult]: ...
    def __getitem__(self, i: int | slice) -> CollectionSearchResult | list[SearchResult]:
        if isinstance(i, slice):
            return list(self._results[i])
        return self._results[i]

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        """Hit ids, shape ``(n_queries, k)``; ``-1`` pads short rows. Integer ids only: a
        hit with a UUID id raises ``ValueError`` (use ``point_ids``)."""
        for row, r in enumerate(self._results):
            if r._mixed_ids is not None:
                i, pid = _first_uuid(r._mixed_ids)
                raise ValueError(
                    f"row {row}, hit {i} has the UUID id {pid!r}: `ids` is an int64 array, "
                    "for integer ids only; `point_ids` holds every hit's id (ints and UUID "
                    "strings), one list per query"
                )
        return super().ids

    @property
    def point_ids(self) -> list[list[PointId]]:
        """Each query's hit ids (see `CollectionSearchResult.point_ids`): ints, and UUID
        ids as hyphenated lower-case strings."""
        return [r.point_ids for r in self._results]

    @property
    def payloads(self) -> list[list[dict[str, Any] | None]] | None:
        """Each query's hit payloads (see `CollectionSearchResult.payloads`)."""
        if not self._results or self._results[0].payloads is None:
            return None
        return [r.payloads or [] for r in self._results]

    def __repr__(self) -> str:
        return f"CollectionBatchResult({len(self)} queries, k={self._width()})"


def _input_error(msg: str, loc: list[Any], kind: str, what: str = "query") -> ValidationError:
    where = ".".join(str(p) for p in loc)
    return ValidationError(
        f"invalid {what}, {where}: {msg}",
        status=None,
        detail=[{"loc": loc, "msg": msg, "type": kind}],
    )


def _as_matrix(data: Any, field: str, ndim: int) -> npt.NDArray[np.float32]:
    """``data`` as a float32 array of ``ndim`` dimensions, finite, or a `ValidationError`."""
    try:
        arr = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _input_error(f"not a {ndim}-D array of numbers: {e}", ["body", field], "type") from e
    if arr.ndim != ndim:
        what = "a vector (1-D)" if ndim == 1 else "a matrix (2-D, one query per row)"
        raise _input_error(
            f"expected {what}, got an array of shape {arr.shape}", ["body", field], "shape"
        )
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        where = [int(i) for i in bad[0]]
        raise _input_error(
            "Input should be a finite number", ["body", field, *where], "finite_number"
        )
    return arr


_fmt = "%.9g".__mod__


def _encode_row(row: Sequence[float]) -> str:
    return "[" + ",".join(map(_fmt, row)) + "]"


def _json_value(value: Any) -> Any:
    """Options as JSON: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _body(vectors_field: str, vectors_json: str, k: int, options: Mapping[str, Any]) -> bytes:
    if vectors_field in options or "k" in options:
        raise TypeError(f"options may not set {vectors_field!r} or 'k'; pass them as arguments")
    head = json.dumps({"k": _json_value(k), **{n: _json_value(v) for n, v in options.items()}})
    return (head[:-1] + f',"{vectors_field}":{vectors_json}}}').encode()


def _query_fields_exact(k: Any, fields: Mapping[str, Any]) -> bool:
    """Whether ``k`` and ``fields`` read from a query string exactly as from a JSON body.

    The server types a query-string value by its field's name (``k=10`` is the
    integer 10), so a value JSON would refuse for its type (``"10"`` for ``k``,
    ``1`` for ``with_payload``, a string as ``filter``) could pass there: such
    requests go as JSON, whose verdict is the contract.
    """
    for name, value in (("k", k), *fields.items()):
        if value is None:
            continue
        v = _json_value(value)
        if name in ("with_payload", "with_vector"):
            ok = isinstance(v, bool)
        elif name in ("k", "ef_search", "recall_target"):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif name == "filter":
            ok = isinstance(v, dict)
        else:  # profile, and names the server refuses either way
            ok = isinstance(v, (str, bool, int, float))
        if not ok:
            return False
    return True


# Longest query string a binary search sends; longer options go in a JSON body.
_MAX_QUERY_STRING = 4096
# httpx refuses URLs past 65,536 characters; a job has no JSON form to fall back to.
_MAX_JOB_URL = 65_000


def _query_string(k: Any, fields: Mapping[str, Any]) -> str:
    """``k`` and ``fields`` as a binary search's query string: text as it is, the rest
    as its JSON text (``true``, ``0.97``, the filter's object); ``None`` (JSON's
    null, "not given") left out."""
    pairs = [("k", k), *((n, v) for n, v in fields.items() if v is not None)]
    return urllib.parse.urlencode(
        [
            (n, v if isinstance(v, str) else json.dumps(_json_value(v), separators=(",", ":")))
            for n, v in pairs
        ]
    )


def _npy_bytes(arr: npt.NDArray[np.float32]) -> bytes:
    """``arr`` as a .npy file (format 1.0, ``<f4``, C order)."""
    out = io.BytesIO()
    np.lib.format.write_array(
        out, np.ascontiguousarray(arr, dtype="<f4"), version=(1, 0), allow_pickle=False
    )
    return out.getvalue()


def _validation_detail(response: httpx.Response) -> list[Any] | None:
    """The ``detail`` list of a 422 answer; ``None`` for another status or body."""
    if response.status_code != 422:
        return None
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None
    return detail if isinstance(detail, list) else None


def _refuses_binary(response: httpx.Response) -> bool:
    """Whether ``response`` is a server's refusal of a body that is not JSON (422
    ``model_attributes_type`` at ``["body"]``): a server older than binary bodies."""
    detail = _validation_detail(response)
    return (
        detail is not None
        and len(detail) == 1
        and isinstance(detail[0], dict)
        and detail[0].get("loc") == ["body"]
        and detail[0].get("type") == "model_attributes_type"
    )


#: Refusals of a binary search raised as they are: the JSON form of the request would
#: get the same answer (keys, rate budget, overload, faults).
_FINAL_STATUSES = frozenset({401, 403, 429, 500, 502, 503, 504})


def _collection_path(name: str, *rest: str) -> str:
    """``/collections/{name}/...`` with ``name`` percent-encoded (the server checks it)."""
    if not isinstance(name, str) or not name:
        raise ValidationError(
            f"a collection name must be a non-empty string, got {name!r}",
            status=None,
            detail=[
                {
                    "loc": ["path", "name"],
                    "msg": "must be a non-empty string",
                    "type": "value_error",
                }
            ],
        )
    return "/".join(["/collections", quote(name, safe=""), *rest])


def _as_ids(ids: Any, field: str = "ids") -> list[PointId]:
    """``ids`` as a list of point ids, or a `ValidationError`: ints in ``0..MAX_POINT_ID``,
    and UUIDs as their hyphenated lower-case strings (see `_checked_ids`)."""
    return _checked_ids(ids, field)[0]


def _id_texts(ids: Any, field: str = "ids") -> list[str]:
    """``ids`` checked (`_checked_ids`), each as its JSON text: digits, or a UUID in quotes."""
    checked, uuids = _checked_ids(ids, field)
    if not uuids:
        return [str(i) for i in checked]
    return [str(i) if type(i) is int else f'"{i}"' for i in checked]


def _checked_ids(ids: Any, field: str) -> tuple[list[PointId], bool]:
    """``ids`` as a list of point ids, or a `ValidationError`: ints in ``0..MAX_POINT_ID``,
    and UUIDs as their hyphenated lower-case strings; and whether there are UUIDs.

    Accepts a 1-D integer numpy array (any int or uint dtype), a sequence of
    integers, UUID strings (any form `uuid.UUID` reads) and `uuid.UUID`
    objects, mixed or not, or one id. ``field``: where the server would name
    a bad id, ``"ids"`` (``["body", "ids", i]``), ``"points"`` (``["body",
    "points", i, "id"]``) or ``"id"`` (``["path", "id"]``, one id).
    """

    def refuse(msg: str, loc: list[Any], kind: str) -> ValidationError:
        if field == "points":  # where the server would name it
            loc = ["points", loc[1], "id"] if len(loc) == 2 else ["points"]
        where = ["path", "id"] if field == "id" else ["body", *loc]
        return ValidationError(
            f"invalid {field}, {'.'.join(str(p) for p in where)}: {msg}",
            status=None,
            detail=[{"loc": where, "msg": msg, "type": kind}],
        )

    if (isinstance(ids, numbers.Integral) and not isinstance(ids, bool)) or isinstance(
        ids, (str, uuid.UUID)
    ):
        ids = [ids]
    items: Any = None  # the ids to check one by one, if not an integer array
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError) as e:
        if not isinstance(ids, (list, tuple)):
            raise refuse(f"not a 1-D sequence of ids: {e}", ["ids"], "list_type") from e
        items = ids  # mixed kinds numpy cannot hold in one array: each is checked
    else:
        if arr.ndim != 1:
            raise refuse(
                f"expected a 1-D sequence of ids, got an array of shape {arr.shape}",
                ["ids"],
                "list_type",
            )
        if arr.size == 0:
            return [], False
        if arr.dtype.kind in "iu":
            ints = [int(i) for i in arr.tolist()]
            for i, v in enumerate(ints):
                if not 0 <= v <= MAX_POINT_ID:
                    kind = "less_than_equal" if v > 0 else "greater_than_equal"
                    raise refuse(f"ids[{i}] is {v}; ids are 0 to 2**63 - 1", ["ids", i], kind)
            return cast("list[PointId]", ints), False
        if not isinstance(ids, np.ndarray):
            # A list of UUIDs, maybe among ints (which numpy made strings or objects):
            # the caller's own items say which is which.
            items = ids
        elif arr.dtype.kind in "OU":
            items = arr.tolist()
        else:
            raise refuse(
                f"ids must be integers (an int64 or uint64 array) or UUIDs, got dtype {arr.dtype}",
                ["ids"],
                "int_type",
            )
    out: list[PointId] = []
    uuids = False
    for i, v in enumerate(items):
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            n = int(v)
            if not 0 <= n <= MAX_POINT_ID:
                kind = "less_than_equal" if n > 0 else "greater_than_equal"
                raise refuse(f"ids[{i}] is {n}; ids are 0 to 2**63 - 1", ["ids", i], kind)
            out.append(n)
        elif (text := _uuid_text(v)) is not None:
            out.append(text)
            uuids = True
        elif isinstance(v, str):
            raise refuse(
                f"ids[{i}] is {v!r}, not a UUID (ids are integers 0 to 2**63 - 1 or UUIDs)",
                ["ids", i],
                "uuid_parsing",
            )
        else:
            raise refuse(f"ids[{i}] is {v!r}, not an integer or a UUID", ["ids", i], "int_type")
    return out, uuids


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays inside payloads become JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode_filter(f: Any, collection: str | None) -> dict[str, Any]:
    """``filter=`` as the JSON object to send, or a `ValidationError` before sending."""
    loc: list[Any] = ["body", "filter"]
    if collection is None:
        raise ValidationError(
            "invalid search, body.filter: a filter searches a collection; pass collection=... "
            "(the index `vectorwise serve` serves is the collection 'default')",
            status=None,
            detail=[
                {"loc": loc, "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
            ],
        )
    if isinstance(f, Filter):
        body = f.to_dict()
    elif isinstance(f, Condition):
        body = {"must": [f.to_dict()]}
    elif isinstance(f, Mapping):
        body = dict(f)
    else:
        raise _input_error(
            "a filter is a vectorwise.filters.Filter, a condition or a dict, "
            f"got {type(f).__name__}",
            loc,
            "dict_type",
            "filter",
        )
    try:
        # numpy values in a dict become JSON numbers; NaN cannot be sent.
        out: dict[str, Any] = json.loads(json.dumps(body, allow_nan=False, default=_json_default))
    except (TypeError, ValueError) as e:
        raise _input_error(f"the filter is not JSON: {e}", loc, "json_invalid", "filter") from e
    return out


@dataclass(frozen=True)
class _Points:
    """An upsert's input, checked (`_check_points`): each id as its JSON text, the
    vectors as one float32 matrix (a row per id), and each payload as its compact
    JSON text (``None``: none), or ``payloads`` ``None`` when none was given."""

    ids: list[str]
    vectors: npt.NDArray[np.float32]
    payloads: list[str | None] | None

    def __len__(self) -> int:
        return len(self.ids)

    def json_items(self, first: int = 0) -> list[str]:
        """Each point from ``first`` on as its JSON object text (``{"id":..,"vector":[..],
        "payload":{..}}``); the places before ``first`` hold empty strings."""
        out = [""] * first
        rows = self.vectors[first:].tolist()
        for i, (pid, row) in enumerate(zip(self.ids[first:], rows), start=first):
            payload = None if self.payloads is None else self.payloads[i]
            tail = "}" if payload is None else f',"payload":{payload}}}'
            out.append(f'{{"id":{pid},"vector":{_encode_row(row)}{tail}')
        return out


def _check_points(ids: Any, vectors: Any, payloads: Any) -> _Points:
    """An upsert's input checked, the ids and payloads encoded (`_Points`).

    Problems raise `ValidationError` (a ``ValueError``, ``status`` ``None``)
    located as the server would locate them in a JSON body:
    ``["body", "points", i, "vector", j]``.
    """
    id_texts = _id_texts(ids, "points")
    n = len(id_texts)
    if n == 0 and np.size(vectors) == 0 and (payloads is None or len(payloads) == 0):
        return _Points([], np.zeros((0, 0), dtype=np.float32), None)  # nothing to write
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _input_error(
            f"vectors is not a 2-D array of numbers (one row per id): {e}",
            ["body", "points"],
            "type",
            "points",
        ) from e
    if arr.ndim != 2:
        hint = " (one vector? pass [vector] or vector[None, :])" if arr.ndim == 1 else ""
        raise _input_error(
            f"vectors must be 2-D, one row per id, got shape {arr.shape}{hint}",
            ["body", "points"],
            "shape",
            "points",
        )
    if arr.shape[0] != n:
        raise _input_error(
            f"{n} ids but {arr.shape[0]} vectors: give one vector per id",
            ["body", "points"],
            "shape",
            "points",
        )
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        row, col = (int(i) for i in bad[0])
        raise _input_error(
            "Input should be a finite number",
            ["body", "points", row, "vector", col],
            "finite_number",
            "points",
        )
    if payloads is None:
        return _Points(id_texts, arr, None)
    if isinstance(payloads, (Mapping, str, bytes)) or not isinstance(
        payloads, (Sequence, np.ndarray)
    ):
        raise _input_error(
            "payloads must be a sequence with one dict (or None) per id, "
            f"got {type(payloads).__name__}",
            ["body", "points"],
            "list_type",
            "points",
        )
    if len(payloads) != n:
        raise _input_error(
            f"{n} ids but {len(payloads)} payloads: give one payload (or None) per id",
            ["body", "points"],
            "shape",
            "points",
        )
    texts: list[str | None] = []
    for i, payload in enumerate(payloads):
        if payload is None:
            texts.append(None)
            continue
        loc = ["body", "points", i, "payload"]
        if not isinstance(payload, Mapping):
            raise _input_error(
                f"a payload must be a dict (a JSON object) or None, got {type(payload).__name__}",
                loc,
                "dict_type",
                "points",
            )
        try:
            texts.append(
                json.dumps(
                    dict(payload), separators=(",", ":"), allow_nan=False, default=_json_default
                )
            )
        except (TypeError, ValueError) as e:
            raise _input_error(
                f"the payload is not JSON: {e}", loc, "json_invalid", "points"
            ) from e
    return _Points(id_texts, arr, texts)


#: An upsert's form (the server's `multipart.rs`): which point field each part holds.
_PART_FIELDS = {"ids": "id", "vectors": "vector", "payloads": "payload"}


def _form_boundary() -> bytes:
    return b"vectorwise-" + uuid.uuid4().hex.encode()


def _form_body(boundary: bytes, parts: Sequence[tuple[str, str, bytes]]) -> bytes:
    """A ``multipart/form-data`` body of ``(name, content type, bytes)`` parts.

    The delimiter must not occur in any part: with a random 32-hex-digit
    boundary it practically never does; if it does, the caller picks another
    (`_form_fits`).
    """
    out: list[bytes] = []
    for name, content_type, data in parts:
        out += [
            b"--" + boundary,
            f'\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


def _form_fits(boundary: bytes, parts: Sequence[tuple[str, str, bytes]]) -> bool:
    """Whether no part holds ``--boundary`` (a delimiter would end it early)."""
    mark = b"--" + boundary
    return not any(mark in data for _, _, data in parts)


def _part_item(e: Any) -> bool:
    """Whether a 422 entry names one item of a form's part: ``["body", "vectors", 3, ...]``."""
    loc = e.get("loc") if isinstance(e, dict) else None
    return (
        isinstance(loc, list)
        and len(loc) >= 3
        and loc[0] == "body"
        and loc[1] in _PART_FIELDS
        and type(loc[2]) is int
    )


def _names_points(response: httpx.Response) -> bool:
    """Whether ``response`` is a 422 whose every problem is one item of a form's part."""
    detail = _validation_detail(response)
    return bool(detail) and all(_part_item(e) for e in detail or [])


def _relocate_parts(offset: int) -> Callable[[Any], Any]:
    """A detail rewriter for a refused upsert form: a part's item (``["body", "ids" |
    "vectors" | "payloads", i, ...]``) becomes the point it belongs to, counted in the
    caller's input (``["body", "points", offset + i, "id" | "vector" | "payload", ...]``),
    as a JSON body's refusal is located."""

    def relocate(detail: Any) -> Any:
        if not isinstance(detail, list):
            return detail
        out = []
        for e in detail:
            if _part_item(e):
                _, part, i, *rest = e["loc"]
                e = {**e, "loc": ["body", "points", i + offset, _PART_FIELDS[part], *rest]}
            out.append(e)
        return out

    return relocate


#: Refusals of an upsert form that its JSON body might not get (the form's content,
#: or the form itself: 415 or 422 at ``["body"]`` from a server older than forms);
#: any other answer (a missing collection, keys, rate budget, a full disk, a failed
#: log) the JSON body would get too, and is raised as it comes.
_FORM_REFUSALS = frozenset({400, 415, 422})


def _setting_error(
    field_name: str | None,
    msg: str,
    kind: str,
    value: Any = None,
    ctx: Any = None,
    what: str = "search setting",
) -> ValidationError:
    """A client-side refusal of a search setting, shaped like the server's 422 entry."""
    loc: list[Any] = ["body"] if field_name is None else ["body", field_name]
    entry: dict[str, Any] = {"loc": loc, "msg": msg, "type": kind}
    got = ""
    if field_name is not None:
        entry["input"] = value
        got = f" (got {value!r})"
    if ctx is not None:
        entry["ctx"] = ctx
    where = ".".join(str(p) for p in loc)
    return ValidationError(f"invalid {what}, {where}: {msg}{got}", status=None, detail=[entry])


def _parses(kind: Callable[[str], Any], text: str) -> bool:
    try:
        kind(text.strip())
    except ValueError:
        return False
    return True


_PROFILE_NAMES = ", ".join(f"'{p}'" for p in list(PROFILES)[:-1]) + f" or '{list(PROFILES)[-1]}'"


def _search_settings(
    profile: str | None, recall_target: float | None, ef_search: int | None, validate: bool
) -> dict[str, Any]:
    """The request fields for ``profile`` / ``recall_target`` / ``ef_search``, checked.

    The rules are the server's, and a refusal here carries the ``loc``,
    ``msg`` and ``type`` the server's 422 would (only sooner, and with the
    value in the message):
    at most one of the three; ``profile`` one of `PROFILES`; ``recall_target``
    a number with 0 < r <= 1; ``ef_search`` an integer (``128.0`` counts) in
    ``1..=MAX_EF_SEARCH``. With ``validate`` false they go out as given.
    """
    given = {
        name: value
        for name, value in (
            ("profile", profile),
            ("recall_target", recall_target),
            ("ef_search", ef_search),
        )
        if value is not None
    }
    if not validate:
        return given
    if len(given) > 1:
        reason = (
            f"give at most one of profile, recall_target and ef_search (got {', '.join(given)})"
        )
        raise _setting_error(None, f"Value error, {reason}", "value_error", ctx={"error": reason})
    if profile is not None and (not isinstance(profile, str) or profile not in PROFILES):
        raise _setting_error(
            "profile",
            f"Input should be {_PROFILE_NAMES}",
            "enum",
            profile,
            {"expected": _PROFILE_NAMES},
        )
    if recall_target is not None:
        r = recall_target
        if isinstance(r, str) and not _parses(float, r):
            raise _setting_error(
                "recall_target",
                "Input should be a valid number, unable to parse string as a number",
                "float_parsing",
                r,
            )
        if isinstance(r, bool) or not isinstance(r, numbers.Real):
            raise _setting_error("recall_target", "Input should be a valid number", "float_type", r)
        if not math.isfinite(float(r)):
            raise _setting_error(
                "recall_target", "Input should be a finite number", "finite_number", r
            )
        if not float(r) > 0.0:
            raise _setting_error(
                "recall_target", "Input should be greater than 0", "greater_than", r, {"gt": 0}
            )
        if float(r) > 1.0:
            raise _setting_error(
                "recall_target",
                "Input should be less than or equal to 1",
                "less_than_equal",
                r,
                {"le": 1},
            )
        # A float32 0.95 means 0.95, not 0.949999988...: its shortest repr.
        if isinstance(r, np.floating):
            r = np.format_float_positional(r, unique=True, trim="0")
        given["recall_target"] = float(r)
    if ef_search is not None:
        ef = ef_search
        if isinstance(ef, str) and not _parses(int, ef):
            raise _setting_error(
                "ef_search",
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
                ef,
            )
        if isinstance(ef, bool) or not isinstance(ef, numbers.Real):
            raise _setting_error("ef_search", "Input should be a valid integer", "int_type", ef)
        if not isinstance(ef, numbers.Integral):
            f = float(ef)
            if not (math.isfinite(f) and f.is_integer()):
                raise _setting_error(
                    "ef_search",
                    "Input should be a valid integer, got a number with a fractional part",
                    "int_from_float",
                    ef,
                )
        n = int(ef)
        if n < 1:
            raise _setting_error(
                "ef_search",
                "Input should be greater than or equal to 1",
                "greater_than_equal",
                ef,
                {"ge": 1},
            )
        if n > MAX_EF_SEARCH:
            raise _setting_error(
                "ef_search",
                f"Input should be less than or equal to {MAX_EF_SEARCH}",
                "less_than_equal",
                ef,
                {"le": MAX_EF_SEARCH},
            )
        given["ef_search"] = n
    return given


# A batch's items named in a 400's prose: ``query_vectors[3] has 2 dimensions``.
_ITEM_INDEX = re.compile(r"\b(query_vectors|vectors|points|ids)\[(\d+)\]")


def _server_max_batch(
    response: httpx.Response, field: str | None = "query_vectors"
) -> int | None:
    """The server's limit if ``response`` refuses the list ``field`` as too long (422).

    ``field`` ``None``: a binary batch, whose rows are the body (``["body"]``).
    """
    detail = _validation_detail(response)
    if detail is not None and len(detail) == 1 and isinstance(detail[0], dict):
        e = detail[0]
        limit = (e.get("ctx") or {}).get("max_length")
        loc = ["body"] if field is None else ["body", field]
        if e.get("type") == "too_long" and e.get("loc") == loc:
            return limit if isinstance(limit, int) else None
    return None


def _relocate_batch(
    offset: int, single: bool = False, field: str = "query_vectors"
) -> Callable[[Any], Any]:
    """A detail rewriter: locate a batch's problems by their row in the caller's matrix.

    The server counts items (queries, points, ids) from the start of its
    request; the client may have split the caller's list, so ``offset`` (the
    request's first item) is added to locations under ``["body", field]``.
    With ``single``, the detail came from ``POST /search`` for row ``offset``
    and its ``["body", "query_vector", ...]`` locations are turned into
    ``["body", "query_vectors", offset, ...]``.
    """

    def relocate(detail: Any) -> Any:
        if isinstance(detail, str) and not single:
            # e.g. "query_vectors[3] has 2 dimensions, expected 128" (400)
            return _ITEM_INDEX.sub(lambda m: f"{m[1]}[{int(m[2]) + offset}]", detail)
        if isinstance(detail, str):
            return detail.replace("query_vector ", f"query_vectors[{offset}] ", 1)
        if not isinstance(detail, list):
            return detail
        out = []
        for e in detail:
            loc = e.get("loc") if isinstance(e, dict) else None
            if isinstance(loc, list) and loc[:2] == ["body", "query_vector"] and single:
                e = {**e, "loc": ["body", "query_vectors", offset, *loc[2:]]}
            elif (
                isinstance(loc, list)
                and loc[:2] == ["body", field]
                and len(loc) >= 3
                and isinstance(loc[2], int)
                and not single
            ):
                e = {**e, "loc": [*loc[:2], loc[2] + offset, *loc[3:]]}
            out.append(e)
        return out

    return relocate


class VectorWiseClient:
    """A client for one VectorWise server; thread-safe, with a pooled connection.

    ::

        with VectorWiseClient("http://localhost:8000") as vw:
            hits = vw.search(np.random.rand(128), k=10)
            print(hits.ids, hits.distances)

    Every request is idempotent (health, stats and searches change nothing;
    collection writes name their points by id, so sending one twice leaves the
    same state), so failed connections, timeouts and 429/502/503/504 answers are
    retried up to ``retries`` times, waiting ``backoff * 2**attempt`` seconds (with jitter,
    at most ``backoff_max``) in between. The ``Retry-After`` of a 503 (overload)
    or a 429 (over the rate budget) is honoured: the wait is at least that long;
    if the server asks for more than ``backoff_max`` the error is raised at once
    instead, so a call never blocks longer than the caller allowed. Other errors
    are raised at once as the typed exceptions of `vectorwise.errors`.

    Args:
        url: The server's base URL.
        timeout: Seconds to wait for a connection and for each read (or an
            ``httpx.Timeout``).
        retries: Extra attempts after the first (0: no retry).
        backoff: First wait between attempts, in seconds; doubled each time.
        backoff_max: Longest single wait, in seconds.
        batch_size: Most queries sent in one ``POST /search/batch``; larger
            matrices go as several requests (the server's default maximum is
            1024).
        max_body_bytes: Largest request body to send; a batch is split further
            so each request stays under it (the server's default limit is
            4 MiB).
        batch_fallback: If the server has no ``/search/batch`` (404, an older
            server), send a batch's queries one by one to ``/search`` instead
            (with a warning, once). ``False`` raises `NotFound`.
        api_key: The API key of a server that needs one, sent as
            ``Authorization: Bearer <key>`` on every request (a 401 raises
            `AuthenticationError`, a 403 `PermissionDenied`).
        headers: Extra headers for every request (e.g. authentication at a proxy).
        validate: Check ``profile``, ``recall_target`` and ``ef_search`` before
            sending, with the server's own rules, and raise `ValidationError`
            (a ``ValueError``, ``status`` ``None``) at once. ``False`` sends
            them as given and leaves the verdict to the server (its 422): for
            a profile a newer server has added, or to see the server's answer.
        transport: An ``httpx`` transport to use instead of the network (tests).
        binary: Send searches' vectors in binary, with the other fields in the
            query string (one query as ``application/octet-stream``, a batch as
            ``application/x-npy``): no JSON to print or parse for the vectors.
            The answers are the same. The request goes as JSON instead when
            ``binary`` is ``False``, when an option's value would not read the
            same from a query string, and after a server refuses binary
            bodies (an older one: the client then stays with JSON). A binary
            request the server refuses for its content is repeated as JSON, so
            errors are exactly the JSON ones (``loc: ["body", "k"]``, the
            dimension named as ``query_vector``). It also sends `upsert`'s
            points as ``multipart/form-data``: the ids and the payloads as JSON
            parts, the vectors as raw little-endian float32 (several times the
            points a second of JSON, which prints and parses every value as
            text). With ``binary`` ``False``, and after a server refuses forms
            (an older one: 415, or 422 at ``["body"]``; the client then stays
            with JSON), upserts go as JSON bodies.
    """

    def __init__(
        self,
        url: str = "http://localhost:8000",
        *,
        timeout: float | httpx.Timeout = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        backoff_max: float = 10.0,
        batch_size: int = 1024,
        max_body_bytes: int = 4_000_000,
        batch_fallback: bool = True,
        headers: Mapping[str, str] | None = None,
        validate: bool = True,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
        binary: bool = True,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self.batch_fallback = batch_fallback
        self.validate = validate
        self._has_batch: bool | None = None
        self.binary = binary
        # Upserts go as forms while binary is on, until a server refuses forms (older).
        self._forms = True
        # One boundary for this client's forms (another for a body that holds it).
        self._boundary = _form_boundary()
        self._sleep: Callable[[float], None] = time.sleep
        all_headers = dict(headers or {})
        if api_key is not None:
            all_headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers=all_headers,
            transport=transport,
        )

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool. The client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> VectorWiseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VectorWiseClient({self.url!r}, retries={self.retries})"

    # -- the API -----------------------------------------------------------

    def health(self) -> Health:
        """``GET /``: the service's state.

        Returns the body whether the server is ready (``status == "healthy"``)
        or not (``"loading"`` or ``"unavailable"``, answered with 503): a
        health check wants the current state, so a 503 here is not retried.
        Connection failures are retried, then raise `TransportError`.
        """
        response = self._send("GET", "/", retry_statuses=frozenset())
        if response.status_code in (200, 503):
            body = self._json(response)
            if isinstance(body, dict) and "status" in body:
                return cast(Health, body)
        raise error_from_response(response)

    def wait_until_ready(self, timeout: float = 30.0, interval: float = 0.1) -> Health:
        """Poll ``GET /`` until the index is served; returns the healthy body.

        Raises:
            ServiceUnavailable: the load failed, or still loading after ``timeout``.
            TransportError: no answer at all within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = self.health()
            except TransportError:
                if time.monotonic() >= deadline:
                    raise
            else:
                if health["status"] == "healthy":
                    return health
                if health["status"] != "loading" or time.monotonic() >= deadline:
                    raise ServiceUnavailable(
                        f"{self.url} is not ready: status {health['status']!r}", detail=health
                    )
            time.sleep(interval)

    def stats(self) -> Stats:
        """``GET /stats``: the index's size, dimension, parameters and limits."""
        body = self._json(self._checked("GET", "/stats"))
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"not a stats body: {str(body)[:200]!r}")
        return cast(Stats, body)

    @overload
    def search(
        self,
        vector: VectorLike,
        k: int = ...,
        *,
        profile: str | None = ...,
        recall_target: float | None = ...,
        ef_search: int | None = ...,
        collection: None = ...,
        with_payload: bool | None = ...,
        with_vector: bool | None = ...,
        filter: FilterLike | None = ...,
        **options: Any,
    ) -> SearchResult: ...
    @overload
    def search(
        self,
        vector: VectorLike,
        k: int = ...,
        *,
        profile: str | None = ...,
        recall_target: float | None = ...,
        ef_search: int | None = ...,
        collection: str,
        with_payload: bool | None = ...,
        with_vector: bool | None = ...,
        filter: FilterLike | None = ...,
        **options: Any,
    ) -> CollectionSearchResult: ...
    def search(
        self,
        vector: VectorLike,
        k: int = 10,
        *,
        profile: str | None = None,
        recall_target: float | None = None,
        ef_search: int | None = None,
        collection: str | None = None,
        with_payload: bool | None = None,
        with_vector: bool | None = None,
        filter: FilterLike | None = None,
        **options: Any,
    ) -> SearchResult:
        """``POST /search``: the ``k`` nearest neighbours of one query.

        With ``collection``, ``POST /collections/{collection}/search``
        instead: the ``k`` nearest live points of that collection, as a
        `CollectionSearchResult` (``ids``, ``distances``, and ``payloads`` /
        ``vectors`` when asked for)::

            hits = vw.search(q, k=5, collection="docs", with_payload=True)
            hits.ids, hits.distances, hits.payloads

        How hard the server searches is set by at most one of ``profile``,
        ``recall_target`` and ``ef_search``; with none, the server's default
        (``stats()["default_profile"]``, normally ``balanced``). What was
        used comes back as ``result.used`` (a `SearchInfo`)::

            hits = vw.search(q, k=10, profile="high_accuracy")
            hits.used.setting, hits.used.expected_recall   # e.g. 'rerank=96', 0.9912

        ``hits.used.widened`` is ``True`` when the query was unlike the
        index's calibration queries and the server searched it more widely
        to keep the promise (``x-vectorwise-widened``; ``False`` on a server
        that does not say).

        Args:
            vector: The query: a 1-D numpy array (any float or int dtype) or a
                sequence of numbers, of the index's dimension. The server scales
                it to unit length, so its length does not matter.
            k: Neighbours wanted (``1..max_k``; see `stats`).
            profile: A calibrated recall@k promise: ``"low_latency"`` (>= 0.90),
                ``"balanced"`` (>= 0.95) or ``"high_accuracy"`` (>= 0.99). The
                server picks the cheapest setting its calibration table says
                meets it at this ``k`` (`PROFILES`; ``stats()["calibration"]``).
            recall_target: The recall@k wanted, ``0 < r <= 1``: the cheapest
                calibrated setting that reaches it; ``1.0`` is exact search.
            ef_search: A fixed search depth, ``1..100000``: the HNSW beam width
                (at least ``k``), or the quantised scan's candidates
                (``ceil(ef_search / k)`` per neighbour). No recall promise.
            collection: Search this collection (see `create_collection`)
                rather than the served index.
            with_payload: With ``collection``: return each hit's payload
                (``result.payloads``). Default ``False`` (the server's).
            with_vector: With ``collection``: return each hit's vector
                (``result.vectors``). Default ``False``.
            filter: With ``collection``: only points this payload filter lets
                through are answered (``min(k, allowed)`` hits): a
                `vectorwise.filters.Filter`, one condition, or the JSON as a
                dict (Qdrant's shape: ``{"must": [{"key": "topic", "match":
                {"value": "news"}}]}``). How it went is ``result.used.filter``
                (a `FilterInfo`).
            **options: Other fields of the request body, passed through as they
                are (the server refuses fields it does not know with a 422).

        Returns:
            ``min(k, total_vectors)`` neighbours, nearest first, with ``.used``.
            With ``collection``: ``min(k, live points)`` hits.

        Raises:
            ValidationError: wrong dimension (400), bad ``k``, vector or
                setting (422), or, before sending (``status`` ``None``), a
                vector that cannot be sent (non-finite, not 1-D) or a setting
                the server would refuse (two of them at once, out of range,
                an unknown profile; see ``validate``), or a ``filter`` without
                ``collection``. A filter the server refuses is its 422,
                located (``loc: ["body", "filter", "must", 0, "range"]``).
            ServiceUnavailable: still 503 after the retries.
            TransportError: no answer after the retries.
        """
        fields = {**options, **_search_settings(profile, recall_target, ef_search, self.validate)}
        if filter is not None:
            fields["filter"] = _encode_filter(filter, collection)
        if collection is None:
            # The served index: anything else goes through as before.
            for name, value in (("with_payload", with_payload), ("with_vector", with_vector)):
                if value is not None:
                    fields[name] = value
            row = _as_matrix(vector, "query_vector", 1)
            response = self._search(
                "/search",
                row,
                k,
                fields,
                lambda: _body("query_vector", _encode_row(row.tolist()), k, fields),
            )
            return SearchResult._from_json(
                self._json(response), SearchInfo.from_headers(response.headers)
            )
        path = _collection_path(collection, "search")
        fields.update(with_payload=bool(with_payload), with_vector=bool(with_vector))
        row = _as_matrix(vector, "vector", 1)
        response = self._search(
            path, row, k, fields, lambda: _body("vector", _encode_row(row.tolist()), k, fields)
        )
        return CollectionSearchResult._from_hits(
            self._json(response),
            SearchInfo.from_headers(response.headers),
            bool(with_payload),
            bool(with_vector),
        )

    @overload
    def search_batch(
        self,
        matrix: MatrixLike,
        k: int = ...,
        *,
        profile: str | None = ...,
        recall_target: float | None = ...,
        ef_search: int | None = ...,
        collection: None = ...,
        with_payload: bool | None = ...,
        with_vector: bool | None = ...,
        filter: FilterLike | None = ...,
        **options: Any,
    ) -> BatchResult: ...
    @overload
    def search_batch(
        self,
        matrix: MatrixLike,
        k: int = ...,
        *,
        profile: str | None = ...,
        recall_target: float | None = ...,
        ef_search: int | None = ...,
        collection: str,
        with_payload: bool | None = ...,
        with_vector: bool | None = ...,
        filter: FilterLike | None = ...,
        **options: Any,
    ) -> CollectionBatchResult: ...
    def search_batch(
        self,
        matrix: MatrixLike,
        k: int = 10,
        *,
        profile: str | None = None,
        recall_target: float | None = None,
        ef_search: int | None = None,
        collection: str | None = None,
        with_payload: bool | None = None,
        with_vector: bool | None = None,
        filter: FilterLike | None = None,
        **options: Any,
    ) -> BatchResult:
        """``POST /search/batch``: the ``k`` nearest neighbours of each row of ``matrix``.

        With ``collection``, ``POST /collections/{collection}/search/batch``
        (split the same way, never sent row by row): a `CollectionBatchResult`
        of `CollectionSearchResult`, with ``payloads`` per row when
        ``with_payload``.

        Rows are sent in requests of at most ``batch_size`` rows and
        ``max_body_bytes`` bytes, in order; the results come back in row
        order. Errors name the row in the whole matrix (see `ValidationError`).
        A server with smaller limits says so (422 ``too_long`` past its
        ``--max-batch``, 413 past its ``--body-limit``); the client then
        lowers ``batch_size`` or ``max_body_bytes`` and carries on.

        Args:
            matrix: The queries: a 2-D numpy array, one query per row, or a
                sequence of equal-length sequences. No rows: no request, an
                empty result.
            k: Neighbours wanted per query.
            profile: As in `search`, for every query of the batch.
            recall_target: As in `search`.
            ef_search: As in `search`.
            collection: As in `search`.
            with_payload: As in `search`.
            with_vector: As in `search`.
            filter: As in `search`: one filter for every row (each request
                of a split batch carries it).
            **options: Extra request fields, passed through (as in `search`).

        Returns:
            A `BatchResult`: a sequence of `SearchResult`, with ``.ids`` and
            ``.distances`` as ``(n_queries, k)`` arrays and ``.used`` (a
            `SearchInfo`) saying what the server searched with. Row ``i``'s
            ``batch[i].used.widened`` says whether that query was widened
            (listed in its request's ``x-vectorwise-widened-queries``, whose
            indices count from that request's first row; the client maps
            them to row numbers of ``matrix``); ``batch.widened`` is all of
            them as a bool array.
        """
        options = {**options, **_search_settings(profile, recall_target, ef_search, self.validate)}
        if filter is not None:
            options["filter"] = _encode_filter(filter, collection)
        if collection is not None:
            return self._collection_search_batch(
                collection, matrix, k, bool(with_payload), bool(with_vector), options
            )
        for name, value in (("with_payload", with_payload), ("with_vector", with_vector)):
            if value is not None:
                options[name] = value
        arr = _as_matrix(matrix, "query_vectors", 2)
        if arr.shape[0] == 0:
            return BatchResult([])
        results: list[SearchResult] = []

        def take(start: int, end: int, response: httpx.Response) -> None:
            self._has_batch = True
            used = SearchInfo.for_batch(response.headers, end - start)
            results.extend(self._parse_batch(self._json(response), end - start, used))

        done = 0
        if self._has_batch is not False:
            done = self._binary_batch("/search/batch", arr, k, options, take)
            if done == arr.shape[0]:
                return BatchResult(results)
        # JSON from row `done` on: all of it, or what the binary requests left.
        rows = [_encode_row(r) for r in arr.tolist()]
        if self._has_batch is False:
            rest = self._batch_by_singles(rows[done:], k, options, offset=done)
            return BatchResult(results + list(rest))
        overhead = len(_body("query_vectors", "[]", k, options))
        start = done
        while start < len(rows):
            end = self._chunk_end(rows, start, overhead)
            body = _body("query_vectors", "[" + ",".join(rows[start:end]) + "]", k, options)
            response = self._send("POST", "/search/batch", body)
            if response.status_code == 404 and not self._has_batch and self.batch_fallback:
                self._has_batch = False
                warnings.warn(
                    f"{self.url} has no POST /search/batch (an older server?); "
                    "sending the queries one by one",
                    RuntimeWarning,
                    stacklevel=2,
                )
                rest = self._batch_by_singles(rows[start:], k, options, offset=start)
                return BatchResult(results + list(rest))
            if not response.is_success:
                smaller = _server_max_batch(response)
                if smaller is not None and 0 < smaller < end - start:
                    # The server's --max-batch is below ours: use its size from now on.
                    self.batch_size = smaller
                    continue
                if response.status_code == 413 and end - start > 1:
                    # Its --body-limit is below max_body_bytes: halve until under it.
                    self.max_body_bytes = len(body) // 2
                    continue
                raise error_from_response(response, _relocate_batch(start))
            self._has_batch = True
            used = SearchInfo.for_batch(response.headers, end - start)
            results.extend(self._parse_batch(self._json(response), end - start, used))
            start = end
        return BatchResult(results)

    # -- collections -------------------------------------------------------

    def create_collection(
        self,
        name: str,
        dimension: int,
        metric: str = "cosine",
        *,
        seal_points: int | None = None,
        max_payload_bytes: int | None = None,
    ) -> CollectionInfo:
        """``PUT /collections/{name}``: create a collection, or find it created.

        Idempotent: if it exists with the same settings the server answers
        200 with it (so a retry, or a second run of a script, is harmless);
        if it exists with other settings, `ConflictError` (409).

        Args:
            name: 1 to 64 characters from ``A-Z a-z 0-9 _ -``.
            dimension: Values per vector, ``1..65536``.
            metric: ``"cosine"`` (vectors stored at unit length; distance
                ``2 - 2 cos``), ``"l2"`` (squared Euclidean) or ``"ip"``
                (negated inner product).
            seal_points: Points held in memory (searched exactly) before they
                are sealed into an index segment in the background (server
                default 20000).
            max_payload_bytes: Largest payload per point as compact JSON
                (server default 65536).

        Returns:
            The collection's `CollectionInfo`.

        Raises:
            ConflictError: it exists with other settings (``detail`` says which).
            ValidationError: a bad name or setting (422 naming the field).
        """
        body: dict[str, Any] = {"dimension": _json_value(dimension), "metric": metric}
        if seal_points is not None:
            body["seal_points"] = _json_value(seal_points)
        if max_payload_bytes is not None:
            body["max_payload_bytes"] = _json_value(max_payload_bytes)
        response = self._checked("PUT", _collection_path(name), json.dumps(body).encode())
        return cast(CollectionInfo, self._json_object(response))

    def list_collections(self) -> list[CollectionSummary]:
        """``GET /collections``: every collection's ``name`` and live ``points``, by name."""
        body = self._json_object(self._checked("GET", "/collections"))
        items = body.get("collections")
        if not isinstance(items, list):
            raise UnexpectedResponse(f"not a collection list: {str(body)[:200]!r}")
        return cast("list[CollectionSummary]", items)

    def collection_info(self, name: str) -> CollectionInfo:
        """``GET /collections/{name}``: settings, point counts, segments, optimiser.

        Raises:
            CollectionNotFound: no such collection.
        """
        return cast(CollectionInfo, self._json_object(self._checked("GET", _collection_path(name))))

    def delete_collection(self, name: str, *, missing_ok: bool = False) -> bool:
        """``DELETE /collections/{name}``: delete a collection and all its files.

        Returns ``True`` once deleted. A collection that does not exist raises
        `CollectionNotFound`, or with ``missing_ok`` returns ``False``. (If an
        answer is lost and the request retried, the retry finds it gone: use
        ``missing_ok=True`` when "it no longer exists" is all you need.)
        """
        try:
            self._checked("DELETE", _collection_path(name))
        except CollectionNotFound:
            if missing_ok:
                return False
            raise
        return True

    def upsert(
        self,
        collection: str,
        ids: Any,
        vectors: MatrixLike,
        payloads: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        batch_size: int = 1000,
    ) -> int:
        """``PUT /collections/{collection}/points``: insert or replace points by id.

        ``ids[i]`` gets ``vectors[i]`` and ``payloads[i]``; an existing id is
        replaced (vector and payload). The points go in requests of at most
        ``batch_size`` points and ``max_body_bytes`` bytes, in order; each
        request is durable and visible to every later search and read when
        it returns (so is the whole call when this returns). If a request
        fails, the error is raised and the requests before it stay written.
        A retried request (after a lost answer) writes the same points again,
        which leaves the same state.

        Each request is a ``multipart/form-data`` body (the client's
        ``binary``, the default): the part ``ids`` (a JSON array), ``vectors``
        (``application/octet-stream``: the rows as raw little-endian float32,
        no text to print or parse) and, when a point of the request has a
        payload, ``payloads`` (a JSON array, one object or ``null`` per id).
        With ``binary=False``, or once a server has refused forms (an older
        one), a JSON body ``{"points": [{"id", "vector", "payload"}, ...]}``
        (nine significant digits a number, exact for float32). Either way the
        same points are written and errors are located alike (below): the
        server's ``["body", "vectors", 2]`` of a form is reported as
        ``["body", "points", start + 2, "vector"]``, and a form it refuses for
        a whole part (a row width that is not the collection's dimension) is
        sent again as JSON for the point-located answer.

        Args:
            collection: The collection's name.
            ids: Point ids, ``0 .. 2**63 - 1``: a 1-D int64 or uint64 array, or
                a sequence of ints; or UUIDs (`uuid.UUID` objects, or strings
                in any form `uuid.UUID` reads, sent hyphenated in lower case),
                alone or among the ints. A UUID and an int never name the
                same point.
            vectors: One row per id, of the collection's dimension: a 2-D
                array (sent as float32) or a sequence of rows.
            payloads: ``None``, or one dict (a JSON object) or ``None`` per id.
                numpy numbers and arrays inside them become JSON numbers and lists.
            batch_size: Most points per request (the server allows ten times
                its ``--max-batch``, 10240 by default, and says so if fewer:
                the client then uses its size).

        Returns:
            The number of points written (``len(ids)``).

        Raises:
            ValidationError: before sending (``status`` ``None``): ids not 1-D
                integers in range or UUIDs (located as the server would:
                ``loc: ["body", "points", 3, "id"]``), vectors not 2-D or not
                one per id, non-finite values, payloads not one dict per id; from the
                server (422): wrong dimension, a zero vector in a cosine
                collection, a payload over the limit, located in the whole
                input (``loc: ["body", "points", 1500, "vector"]``, ``["body",
                "points", 7, "payload"]``), whichever body carried the points.
            CollectionNotFound: no such collection.
            InsufficientStorage: the server's disk is full (507; that request
                was not written).
            ServiceUnavailable: the server's write-ahead log failed (503; it
                refuses writes until restarted), or its optimiser stayed
                behind the writes through every retry (503 with
                ``Retry-After``: more written points wait to be indexed than
                its ``--write-backlog-points``; that batch was not written).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        path = _collection_path(collection, "points")
        points = _check_points(ids, vectors, payloads)
        if not len(points):
            return 0  # nothing to write: no request
        sent, size, total = 0, batch_size, 0
        if self.binary and self._forms:
            sent, size, total = self._upsert_forms(path, points, batch_size)
        if sent == len(points):
            return total
        # JSON from point `sent` on: all of them, or what the forms left.
        for _, _, response in self._chunked(
            "PUT",
            path,
            points.json_items(sent),
            "points",
            lambda j: f'{{"points":[{j}]}}'.encode(),
            size,
            first=sent,
        ):
            total += _int_field(self._json_object(response), "upserted")
        return total

    def _upsert_forms(self, path: str, points: _Points, batch_size: int) -> tuple[int, int, int]:
        """PUT ``points`` to ``path`` as ``multipart/form-data`` bodies, in order.

        Each request holds at most ``batch_size`` points and ``max_body_bytes``
        bytes (fewer if the server says its limits are lower: 422 ``too_long``
        at ``["body", "ids"]``, or 413). A refusal located at one point's part
        (``["body", "vectors", 2]``) is raised, located in the caller's input as
        a JSON body's is (``["body", "points", start + 2, "vector"]``); so is any
        answer JSON would get too (404, 401, 503, 507, ...). Returns ``(sent,
        batch_size, upserted)``: the points written (all of them, or fewer when
        the server refused a form as such, or for a problem it locates at a
        whole part, e.g. a row width that is not the collection's dimension:
        the JSON requests go on from there and report as JSON does), the batch
        size the server allows, and the points it says it upserted.
        """
        n = len(points)
        arr = points.vectors
        texts = points.payloads
        row_bytes = 4 * arr.shape[1]
        # What each point adds to a body: its id and a comma, its row, its payload (or
        # null) and a comma; `cum[i]`: the points before i.
        costs: Iterator[int] = (len(t) + 1 + row_bytes for t in points.ids)
        if texts is not None:
            costs = (c + len("null" if p is None else p) + 1 for c, p in zip(costs, texts))
        cum = list(itertools.accumulate(costs, initial=0))
        empty = [("ids", _JSON_PART, b"[]"), ("vectors", _OCTET_STREAM, b"")]
        overhead = len(_form_body(self._boundary, [*empty, ("payloads", _JSON_PART, b"[]")]))
        size, start, total = batch_size, 0, 0
        while start < n:
            limit = cum[start] + self.max_body_bytes - overhead
            fit = bisect.bisect_right(cum, limit, start + 1, min(n, start + size) + 1) - 1
            end = max(start + 1, fit)  # one point at least (a 413 if that alone is too large)
            parts = [
                ("ids", _JSON_PART, f"[{','.join(points.ids[start:end])}]".encode()),
                ("vectors", _OCTET_STREAM, np.ascontiguousarray(arr[start:end], "<f4").tobytes()),
            ]
            if texts is not None and any(p is not None for p in texts[start:end]):
                items = ",".join("null" if p is None else p for p in texts[start:end])
                parts.append(("payloads", _JSON_PART, f"[{items}]".encode()))
            boundary = self._boundary
            while not _form_fits(boundary, parts):
                boundary = _form_boundary()
            body = _form_body(boundary, parts)
            content_type = f"{_FORM_DATA}; boundary={boundary.decode()}"
            response = self._send("PUT", path, body, content_type=content_type)
            if response.is_success:
                total += _int_field(self._json_object(response), "upserted")
                start = end
                continue
            smaller = _server_max_batch(response, "ids")
            if smaller is not None and 0 < smaller < end - start:
                size = smaller  # the server takes fewer (10 x its --max-batch)
                continue
            if response.status_code == 413 and end - start > 1:
                self.max_body_bytes = len(body) // 2  # its --body-limit is below ours
                continue
            if response.status_code not in _FORM_REFUSALS:
                raise error_from_response(response)
            if _names_points(response):
                raise error_from_response(response, _relocate_parts(start))
            if response.status_code == 415 or _refuses_binary(response):
                self._forms = False  # a server older than forms: JSON from now on
            return start, size, total
        return n, size, total

    def delete(self, collection: str, ids: Any) -> int:
        """``POST /collections/{collection}/points/delete``: delete points by id.

        Durable when it returns; a deleted point is never returned by a later
        search or read. Ids that do not exist are skipped.

        Args:
            ids: A 1-D integer array, a sequence of ints, UUIDs (`uuid.UUID` or
                strings) or both, or one id (as in `upsert`).

        Returns:
            How many of the ids existed (and were deleted).
        """
        id_texts = _id_texts(ids)
        path = _collection_path(collection, "points", "delete")
        total = 0
        for _, _, response in self._chunked(
            "POST",
            path,
            id_texts,
            "ids",
            lambda j: f'{{"ids":[{j}]}}'.encode(),
            _IDS_PER_DELETE,
        ):
            total += _int_field(self._json_object(response), "deleted")
        return total

    def get(
        self,
        collection: str,
        ids: Any,
        *,
        with_vector: bool = True,
        with_payload: bool = True,
    ) -> list[Point]:
        """``POST /collections/{collection}/points/get``: points by id.

        ``ids`` as in `delete`: ints, UUIDs (`uuid.UUID` or strings), or both.

        Returns:
            A `Point` for each id that exists, in the order asked (missing
            ids are left out). ``vector`` / ``payload`` are ``None`` when not
            asked for.
        """
        id_texts = _id_texts(ids)
        path = _collection_path(collection, "points", "get")
        flags = f'"with_vector":{json.dumps(bool(with_vector))},'
        flags += f'"with_payload":{json.dumps(bool(with_payload))}'
        out: list[Point] = []
        for _, _, response in self._chunked(
            "POST",
            path,
            id_texts,
            "ids",
            lambda j: f'{{{flags},"ids":[{j}]}}'.encode(),
            _IDS_PER_READ,
        ):
            items = self._json_object(response).get("points")
            if not isinstance(items, list):
                raise UnexpectedResponse(f"not a list of points: {str(items)[:200]!r}")
            out.extend(Point._from_json(p) for p in items)
        return out

    def retrieve(self, collection: str, id: PointIdLike) -> Point | None:
        """``GET /collections/{collection}/points/{id}``: one point, or ``None`` if absent.

        ``id``: an int, or a UUID (`uuid.UUID` or a string).

        Raises:
            ValidationError: before sending (``status`` ``None``, ``loc``
                ``["path", "id"]``): not an integer in range nor a UUID.
            CollectionNotFound: no such collection (a missing point is ``None``).
        """
        (pid,) = _as_ids([id], "id")
        response = self._send("GET", _collection_path(collection, "points", str(pid)))
        if response.status_code == 404:
            err = error_from_response(response)
            if err.detail == "Point not found":
                return None
            raise err
        if not response.is_success:
            raise error_from_response(response)
        return Point._from_json(self._json_object(response))

    def create_payload_index(self, collection: str, field: str, type: str) -> bool:
        """``PUT /collections/{collection}/index``: index a payload key for filters.

        The server builds the index in every segment and keeps it current as
        points are written; filter conditions on the key then read the index
        instead of every point's payload (a search's ``used.filter.unindexed``
        names the keys that were read the slow way). Durable when it returns.

        Args:
            collection: The collection's name.
            field: A dotted payload key (``"topic"``, ``"meta.source"``).
            type: What the index holds: ``"keyword"`` (strings, for
                `~vectorwise.filters.Match`), ``"integer"`` (integers, for
                ``Match`` and ``Range``), ``"float"`` (numbers, for ``Range``)
                or ``"bool"`` (`PAYLOAD_INDEX_TYPES`). A condition of a kind
                the index does not hold still works, by reading payloads.

        Returns:
            ``True`` if the index was created (201), ``False`` if the key
            already had an index of this type (200: nothing changed).

        Raises:
            ConflictError: the key has an index of another type (409; drop it first).
            ValidationError: a bad key or type: before sending (``status``
                ``None``, the server's ``loc`` ``["body", "type"]``, ``type``
                and ``msg``; not with ``validate=False``), or the server's 422.
            CollectionNotFound: no such collection.
        """
        if self.validate:
            try:
                _key(field, ["body", "field"])
            except ValidationError as e:
                message = str(e).replace("invalid filter", "invalid payload index", 1)
                raise ValidationError(message, status=None, detail=e.detail) from None
            if type not in PAYLOAD_INDEX_TYPES:
                expected = "'keyword', 'integer', 'float' or 'bool'"
                raise _setting_error(
                    "type",
                    f"Input should be {expected}",
                    "enum",
                    type,
                    {"expected": expected},
                    "payload index",
                )
        body = json.dumps({"field": field, "type": type}).encode()
        response = self._checked("PUT", _collection_path(collection, "index"), body)
        return response.status_code == 201

    def drop_payload_index(self, collection: str, field: str, *, missing_ok: bool = False) -> bool:
        """``DELETE /collections/{collection}/index/{field}``: drop a key's payload index.

        Filters on the key keep working, by reading payloads. Returns ``True``
        once dropped. A key without an index raises `NotFound` (404), or with
        ``missing_ok`` returns ``False``.

        Raises:
            NotFound: the key has no payload index (``detail`` says so).
            CollectionNotFound: no such collection (even with ``missing_ok``).
        """
        if not isinstance(field, str) or not field:
            _key(field, ["path", "field"])
        try:
            self._checked("DELETE", _collection_path(collection, "index", quote(field, safe="")))
        except CollectionNotFound:
            raise
        except NotFound as e:
            if missing_ok and str(e.detail).endswith("has no payload index"):
                return False
            raise
        return True

    def _collection_search_batch(
        self,
        collection: str,
        matrix: MatrixLike,
        k: int,
        with_payload: bool,
        with_vector: bool,
        options: Mapping[str, Any],
    ) -> CollectionBatchResult:
        path = _collection_path(collection, "search", "batch")
        fields = {**options, "with_payload": with_payload, "with_vector": with_vector}
        arr = _as_matrix(matrix, "vectors", 2)
        results: list[CollectionSearchResult] = []

        def take(start: int, end: int, response: httpx.Response) -> None:
            body = self._json_object(response)
            items = body.get("results")
            if not isinstance(items, list) or len(items) != end - start:
                raise UnexpectedResponse(
                    f"expected {end - start} results in a batch answer: {str(body)[:200]!r}"
                )
            # Indices in the header count from this request's first row.
            used = SearchInfo.for_batch(response.headers, end - start)
            results.extend(
                CollectionSearchResult._from_hits(item, info, with_payload, with_vector)
                for item, info in zip(items, used)
            )

        done = self._binary_batch(path, arr, k, fields, take)
        if done == arr.shape[0]:
            return CollectionBatchResult(results)
        rows = [_encode_row(r) for r in arr.tolist()]
        for start, end, response in self._chunked(
            "POST", path, rows, "vectors", lambda j: _body("vectors", f"[{j}]", k, fields),
            first=done,
        ):
            take(start, end, response)
        return CollectionBatchResult(results)

    # -- internals ---------------------------------------------------------

    def _chunked(
        self,
        method: str,
        path: str,
        items: list[str],
        field: str,
        wrap: Callable[[str], bytes],
        batch_size: int | None = None,
        first: int = 0,
    ) -> Iterator[tuple[int, int, httpx.Response]]:
        """Send ``items`` (each a JSON text) in requests of the list ``field``, in order.

        ``wrap`` makes a request body from the items joined by commas. Each
        request holds at most ``batch_size`` items (default: the client's) and
        ``max_body_bytes`` bytes. A server refusing the list as too long
        (422 ``too_long`` at ``["body", field]``) or the body as too large
        (413) gets smaller requests; any other error is raised with its item
        indices counted from the start of ``items``. Yields ``(start, end,
        response)`` for each successful request. ``first``: the item to start
        from (those before it were sent already).
        """
        size = batch_size or self.batch_size
        overhead = len(wrap(""))
        start = first
        while start < len(items):
            end = self._chunk_end(items, start, overhead, size)
            body = wrap(",".join(items[start:end]))
            response = self._send(method, path, body)
            if not response.is_success:
                smaller = _server_max_batch(response, field)
                if smaller is not None and 0 < smaller < end - start:
                    size = smaller
                    if batch_size is None:
                        self.batch_size = smaller
                    continue
                if response.status_code == 413 and end - start > 1:
                    self.max_body_bytes = len(body) // 2
                    continue
                raise error_from_response(response, _relocate_batch(start, field=field))
            yield start, end, response
            start = end

    def _binary_ok(self, k: Any, fields: Mapping[str, Any]) -> bool:
        # A binary search carries its options in the query string: a long
        # filter (thousands of ids) goes as JSON instead, whose body has room.
        return (
            self.binary
            and _query_fields_exact(k, fields)
            and len(_query_string(k, fields)) <= _MAX_QUERY_STRING
        )

    def _binary_refused(self, response: httpx.Response) -> None:
        """After a refused binary search: raise what JSON would repeat; else leave the
        verdict to the JSON form of the request (and after a server that refuses
        binary bodies altogether, send JSON from now on)."""
        if response.status_code in _FINAL_STATUSES:
            raise error_from_response(response)
        if _refuses_binary(response):
            self.binary = False

    def _search(
        self,
        path: str,
        row: npt.NDArray[np.float32],
        k: int,
        fields: Mapping[str, Any],
        json_body: Callable[[], bytes],
    ) -> httpx.Response:
        """POST one query to ``path``: in binary when it can go so, else (or when the
        server refuses it) as the JSON ``json_body()``. A 2xx answer, or its error."""
        if self._binary_ok(k, fields):
            target = f"{path}?{_query_string(k, fields)}"
            body = np.ascontiguousarray(row, dtype="<f4").tobytes()
            response = self._send("POST", target, body, content_type=_OCTET_STREAM)
            if response.is_success:
                return response
            self._binary_refused(response)
        return self._checked("POST", path, json_body())

    def _binary_batch(
        self,
        path: str,
        arr: npt.NDArray[np.float32],
        k: int,
        fields: Mapping[str, Any],
        take: Callable[[int, int, httpx.Response], None],
    ) -> int:
        """Send the rows of ``arr`` to ``path`` as .npy bodies, in order, in requests
        of at most ``batch_size`` rows and ``max_body_bytes`` bytes (smaller if the
        server says its limits are), handing each answer to ``take(start, end,
        response)``. Returns the rows answered: all of them, or fewer when binary
        is off or a request was refused (the JSON requests then go on from there
        and report the refusal as JSON does)."""
        n, dim = arr.shape
        if not self._binary_ok(k, fields):
            return 0
        target = f"{path}?{_query_string(k, fields)}"
        row_bytes = 4 * max(dim, 1)
        start = 0
        while start < n:
            fit = max(1, (self.max_body_bytes - 128) // row_bytes)  # a .npy header is 128 bytes
            end = min(n, start + self.batch_size, start + fit)
            body = _npy_bytes(arr[start:end])
            response = self._send("POST", target, body, content_type=_NPY)
            if not response.is_success:
                smaller = _server_max_batch(response, None)
                if smaller is not None and 0 < smaller < end - start:
                    self.batch_size = smaller  # the server's --max-batch is below ours
                    continue
                if response.status_code == 413 and end - start > 1:
                    self.max_body_bytes = len(body) // 2  # its --body-limit is below ours
                    continue
                self._binary_refused(response)
                return start
            take(start, end, response)
            start = end
        return n

    # ---- batch jobs -------------------------------------------------------------

    def submit_job(
        self,
        collection: str,
        vectors: MatrixLike,
        k: int = 10,
        *,
        profile: str | None = None,
        recall_target: float | None = None,
        ef_search: int | None = None,
        filter: Any = None,
    ) -> Job:
        """``POST /collections/{collection}/jobs``: search many vectors in the background.

        The vectors go as one float32 ``.npy`` upload (up to the server's
        ``--job-body-limit``, 1 GiB by default, and ``--max-job-queries``);
        the server answers once the job is on disk and runs it at low
        priority, one job at a time, so interactive searches keep their
        latency. Each query is answered as `search_batch` would answer it.
        Poll with `job` or `wait_job`; fetch the answers with `job_results`.

        A 503 (the server holds its most unfinished jobs, ``--max-jobs``)
        is raised, not retried; retry it later, or delete a job.

        Returns:
            The queued `Job` (its ``id`` names it from now on).

        Raises:
            ValidationError: bad vectors or options (422 naming the place).
            ServiceUnavailable: too many jobs queued or running.
            CollectionNotFound: no such collection.
        """
        arr = _as_matrix(vectors, "vectors", 2)
        fields: dict[str, Any] = {
            "profile": profile,
            "recall_target": recall_target,
            "ef_search": ef_search,
            "filter": None if filter is None else _encode_filter(filter, collection),
        }
        path = f"{_collection_path(collection, 'jobs')}?{_query_string(k, fields)}"
        if len(path) > _MAX_JOB_URL:
            raise ValidationError(
                f"invalid job, filter: the job's options take {len(path)} characters in its URL, "
                f"more than {_MAX_JOB_URL}; use a shorter filter (a payload index and a match "
                "condition instead of a long has_id list)",
                status=None,
                detail=[{"loc": ["query", "filter"], "msg": "too long for a URL", "type": "too_long"}],
            )
        response = self._send(
            "POST", path, _npy_bytes(arr), retry_statuses=frozenset(), content_type="application/x-npy"
        )
        if not response.is_success:
            raise error_from_response(response)
        return cast(Job, self._json_object(response))

    def job(self, collection: str, id: str) -> Job:
        """``GET /collections/{collection}/jobs/{id}``: a job's state and progress.

        Raises:
            NotFound: no such job (or one another API key submitted).
        """
        path = _collection_path(collection, "jobs", quote(id, safe=""))
        return cast(Job, self._json_object(self._checked("GET", path)))

    def jobs(self, collection: str) -> list[Job]:
        """``GET /collections/{collection}/jobs``: the collection's jobs (this key's), oldest first."""
        body = self._json_object(self._checked("GET", _collection_path(collection, "jobs")))
        items = body.get("jobs")
        if not isinstance(items, list):
            raise UnexpectedResponse(f"not a job list: {str(body)[:200]!r}")
        return cast("list[Job]", items)

    def wait_job(self, collection: str, id: str, timeout: float | None = None, interval: float = 0.2) -> Job:
        """Polls `job` until it is ``done`` or ``failed``; returns it.

        Raises:
            TimeoutError: still queued or running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(collection, id)
            if job.get("state") in ("done", "failed"):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {id} is {job.get('state')} after {timeout} s ({job.get('done')} of {job.get('queries')})")
            self._sleep(interval)

    def job_results(
        self, collection: str, id: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """A done job's answers: ``(ids, distances)``, each of shape (queries, k).

        A query with fewer than ``k`` answers (a small collection, a filter)
        is padded with id ``-1`` and distance ``inf``, as Faiss pads.

        Ids are integers: a job whose answers would hold a point with a UUID id
        fails (its ``error`` names the point); `search_batch` with
        ``collection=`` answers such points (``point_ids``).

        Raises:
            ConflictError: the job has not finished (or failed).
            NotFound: no such job.
            UnexpectedResponse: a download that is not a numeric .npy array (or
                ids that are not integers).
        """
        out = []
        for name, kinds in (("ids.npy", "iu"), ("distances.npy", "f")):
            path = _collection_path(collection, "jobs", quote(id, safe=""), name)
            response = self._checked("GET", path)
            try:
                arr = np.load(io.BytesIO(response.content), allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise UnexpectedResponse(f"{name} of job {id} is not a .npy array: {e}") from e
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in kinds:
                what = "integer" if name == "ids.npy" else "float"
                raise UnexpectedResponse(
                    f"{name} of job {id} is not an array of {what}s: "
                    f"{getattr(arr, 'dtype', type(arr).__name__)}"
                )
            out.append(arr)
        return out[0], out[1]

    def delete_job(self, collection: str, id: str, *, missing_ok: bool = False) -> bool:
        """``DELETE /collections/{collection}/jobs/{id}``: cancel (if unfinished) and delete a job.

        Returns ``True`` once deleted; a job that does not exist raises
        `NotFound`, or with ``missing_ok`` returns ``False``.
        """
        try:
            self._checked("DELETE", _collection_path(collection, "jobs", quote(id, safe="")))
        except CollectionNotFound:
            raise
        except NotFound:
            if missing_ok:
                return False
            raise
        return True

    def _json_object(self, response: httpx.Response) -> dict[str, Any]:
        body = self._json(response)
        if not isinstance(body, dict):
            raise UnexpectedResponse(
                f"HTTP {response.status_code}: not a JSON object: {str(body)[:200]!r}",
                status=response.status_code,
            )
        return body

    def _chunk_end(
        self, rows: list[str], start: int, overhead: int, batch_size: int | None = None
    ) -> int:
        """End of the request from ``start``: at most ``batch_size`` rows and ``max_body_bytes``.

        ``batch_size`` defaults to the client's (the search batches'). A
        request always holds at least one row (the server answers 413 if that
        alone is too large).
        """
        size = overhead + len(rows[start])
        end = start + 1
        limit = min(len(rows), start + (batch_size or self.batch_size))
        while end < limit and size + len(rows[end]) + 1 <= self.max_body_bytes:
            size += len(rows[end]) + 1  # the row and its comma
            end += 1
        return end

    def _batch_by_singles(
        self, rows: list[str], k: int, options: Mapping[str, Any], offset: int = 0
    ) -> BatchResult:
        results = []
        for i, row in enumerate(rows, start=offset):
            response = self._send("POST", "/search", _body("query_vector", row, k, options))
            if not response.is_success:
                # Name the row as the batch endpoint would.
                raise error_from_response(response, _relocate_batch(i, single=True))
            used = SearchInfo.from_headers(response.headers)
            results.append(SearchResult._from_json(self._json(response), used))
        return BatchResult(results)

    @staticmethod
    def _parse_batch(
        body: Any, expected: int, used: Sequence[SearchInfo] = ()
    ) -> list[SearchResult]:
        """A batch answer's ``expected`` results, row ``i`` with ``used[i]`` (none: no info)."""
        items = body.get("results") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(items) != expected:
            raise UnexpectedResponse(
                f"expected {expected} results in a batch answer: {str(body)[:200]!r}"
            )
        infos = list(used) or [_NO_INFO] * expected
        return [SearchResult._from_json(item, info) for item, info in zip(items, infos)]

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as e:
            raise UnexpectedResponse(
                f"HTTP {response.status_code}: not JSON: {response.text[:200]!r}",
                status=response.status_code,
            ) from e

    def _checked(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """Send with retries; a 2xx answer, else its typed error."""
        response = self._send(method, path, body)
        if response.is_success:
            return response
        raise error_from_response(response)

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff * 2.0**attempt)
        return base * (0.5 + random.random() / 2)  # jitter: many clients do not retry in step

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        content_type: str | None = None,
    ) -> httpx.Response:
        """One request, retried on transport errors and ``retry_statuses``.

        ``body`` is JSON unless ``content_type`` says otherwise. Returns the last
        answer (whatever its status) or raises `TransportError`.
        """
        headers = _JSON if body is not None else None
        if body is not None and content_type is not None:
            headers = {**_JSON, "content-type": content_type}
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, content=body, headers=headers)
            except _RETRY_EXCEPTIONS as e:
                if attempt >= self.retries:
                    raise TransportError(
                        f"{method} {self.url}{path} failed after {attempt + 1} attempt(s): "
                        f"{type(e).__name__}: {e}"
                    ) from e
                wait = self._delay(attempt)
            except httpx.HTTPError as e:  # not transient: a bad URL, a closed client...
                raise TransportError(f"{method} {self.url}{path}: {type(e).__name__}: {e}") from e
            else:
                if response.status_code not in retry_statuses or attempt >= self.retries:
                    return response
                wait = self._delay(attempt)
                if response.status_code in (429, 503):
                    err = error_from_response(response)
                    assert isinstance(err, (RateLimited, ServiceUnavailable))
                    if err.retry_after is not None:
                        if err.retry_after > self.backoff_max:
                            return response  # longer than we may wait: the caller decides
                        wait = max(wait, err.retry_after)
            self._sleep(wait)
            attempt += 1
