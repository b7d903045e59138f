"""VectorWise: a Python client for the VectorWise k-nearest-neighbour search service.

::

    import numpy as np
    from vectorwise import VectorWiseClient

    with VectorWiseClient("http://localhost:8000") as vw:
        print(vw.health())
        hits = vw.search(np.random.rand(128), k=10)          # SearchResult
        hits.ids, hits.distances                              # int64, float32 arrays
        batch = vw.search_batch(np.random.rand(500, 128), k=10)
        batch.ids.shape                                       # (500, 10)
        hits = vw.search(np.random.rand(128), k=10, profile="high_accuracy")
        hits.used.setting, hits.used.expected_recall          # what the server searched with

Errors are the typed exceptions of `vectorwise.errors`, all `VectorWiseError`.
`vectorwise.local` runs the ``vectorwise`` binary (build an index, serve it).
"""

from ._client import (
    MAX_EF_SEARCH,
    PROFILES,
    BatchResult,
    Calibration,
    CalibrationPoint,
    CalibrationProfile,
    Health,
    RecallMonitor,
    RecallMonitorEntry,
    SearchInfo,
    SearchResult,
    Stats,
    VectorWiseClient,
)
from .errors import (
    APIError,
    ClientError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationError,
    VectorWiseError,
)

__version__ = "0.2.0"

__all__ = [
    "MAX_EF_SEARCH",
    "PROFILES",
    "APIError",
    "BatchResult",
    "Calibration",
    "CalibrationPoint",
    "CalibrationProfile",
    "ClientError",
    "Health",
    "NotFound",
    "PayloadTooLarge",
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
]
