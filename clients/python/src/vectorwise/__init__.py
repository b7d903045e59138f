"""VectorWise: a Python client for the VectorWise k-nearest-neighbour search service.

::

    import numpy as np
    from vectorwise import VectorWiseClient

    # api_key="vw_..." for a server with API keys
    with VectorWiseClient("http://localhost:8000") as vw:
        print(vw.health())
        hits = vw.search(np.random.rand(128), k=10)          # SearchResult
        hits.ids, hits.distances                              # int64, float32 arrays
        batch = vw.search_batch(np.random.rand(500, 128), k=10)
        batch.ids.shape                                       # (500, 10)
        hits = vw.search(np.random.rand(128), k=10, profile="high_accuracy")
        hits.used.setting, hits.used.expected_recall          # what the server searched with
        hits.used.widened                                     # unlike the calibration: wider search

        vw.create_collection("docs", dimension=128, metric="cosine")
        vw.upsert("docs", ids, vectors, payloads=[{"title": ...}, ...])
        hits = vw.search(q, k=10, collection="docs", with_payload=True)
        hits.ids, hits.distances, hits.payloads

        from vectorwise.filters import Filter, Match, Range
        vw.create_payload_index("docs", "topic", "keyword")
        hits = vw.search(q, k=10, collection="docs",
                         filter=Filter(must=[Match("topic", "news"), Range("year", gte=2020)]))
        hits.used.filter.allowed, hits.used.filter.unindexed   # points let through, slow keys

Errors are the typed exceptions of `vectorwise.errors`, all `VectorWiseError`.
`vectorwise.local` runs the ``vectorwise`` binary (build an index, serve it).
"""

from . import filters
from ._client import (
    MAX_EF_SEARCH,
    MAX_POINT_ID,
    METRICS,
    PAYLOAD_INDEX_TYPES,
    PROFILES,
    BatchResult,
    Calibration,
    CalibrationPoint,
    CalibrationProfile,
    CollectionBatchResult,
    CollectionInfo,
    CollectionSearchResult,
    CollectionSummary,
    FilterInfo,
    Health,
    Job,
    PayloadIndex,
    Point,
    PointId,
    RecallMonitor,
    RecallMonitorEntry,
    SearchInfo,
    SearchResult,
    Stats,
    VectorWiseClient,
)
from .errors import (
    APIError,
    AuthenticationError,
    ClientError,
    CollectionNotFound,
    ConflictError,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationError,
    VectorWiseError,
)

__version__ = "0.4.0"

__all__ = [
    "MAX_EF_SEARCH",
    "MAX_POINT_ID",
    "METRICS",
    "PAYLOAD_INDEX_TYPES",
    "PROFILES",
    "APIError",
    "AuthenticationError",
    "BatchResult",
    "Calibration",
    "CalibrationPoint",
    "CalibrationProfile",
    "ClientError",
    "CollectionBatchResult",
    "CollectionInfo",
    "CollectionNotFound",
    "CollectionSearchResult",
    "CollectionSummary",
    "ConflictError",
    "FilterInfo",
    "Health",
    "InsufficientStorage",
    "Job",
    "NotFound",
    "PayloadIndex",
    "PayloadTooLarge",
    "PermissionDenied",
    "Point",
    "PointId",
    "RateLimited",
    "RecallMonitor",
    "RecallMonitorEntry",
    "SearchInfo",
    "SearchResult",
    "ServerError",
    "ServiceUnavailable",
    "Stats",
    "TransportError",
    "UnexpectedResponse",
    "ValidationError",
    "VectorWiseClient",
    "VectorWiseError",
    "__version__",
    "filters",
]
