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

Errors are the typed exceptions of `vectorwise.errors`, all `VectorWiseError`.
`vectorwise.local` runs the ``vectorwise`` binary (build an index, serve it).
"""

from ._client import BatchResult, Health, SearchResult, Stats, VectorWiseClient
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

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "BatchResult",
    "ClientError",
    "Health",
    "NotFound",
    "PayloadTooLarge",
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
