"""The exceptions of the client: one base class, then one class per kind of failure.

```
VectorWiseError                 anything this package raises
├── TransportError              no HTTP answer (refused, reset, timed out), after the retries
├── UnexpectedResponse          an answer that is not the API's shape
└── APIError                    the server answered with an error status (.status, .detail)
    ├── ClientError             4xx: the request is wrong; retrying will not help
    │   ├── AuthenticationError 401: no API key, or one the server does not know
    │   ├── PermissionDenied    403: the key's role or collections do not allow it
    │   ├── RateLimited         429: over the caller's rate budget (.retry_after; retried)
    │   ├── ValidationError     400 / 422 (also raised before sending, with status None)
    │   ├── NotFound            404 / 405
    │   │   └── CollectionNotFound  404 naming a collection that does not exist
    │   ├── ConflictError       409: the collection (or payload index) exists with other settings
    │   └── PayloadTooLarge     413
    └── ServerError             5xx
        ├── ServiceUnavailable  503: loading, load failed, overloaded, log failed (.retry_after)
        └── InsufficientStorage 507: the server's disk is full; nothing was written
```
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Callable

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "ClientError",
    "CollectionNotFound",
    "ConflictError",
    "InsufficientStorage",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "UnexpectedResponse",
    "ValidationError",
    "VectorWiseError",
]


class VectorWiseError(Exception):
    """Base class of every error raised by this package.

    Attributes:
        status: HTTP status of the answer, or ``None`` when there was no answer
            (or the problem was found before sending).
        detail: The ``detail`` field of the server's error body: a string, or
            for validation errors a list of pydantic-shaped dicts with ``loc``,
            ``msg`` and ``type``. ``None`` when there is none.
    """

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class TransportError(VectorWiseError):
    """The request got no HTTP answer (connection refused or reset, timeout), after retries."""


class UnexpectedResponse(VectorWiseError):
    """The server answered, but not with a body of the shape the API documents."""


class APIError(VectorWiseError):
    """The server answered with an error status; ``status`` and ``detail`` say which and why."""

    status: int | None


class ClientError(APIError):
    """A 4xx answer: the request itself is wrong, so it is not retried."""


class AuthenticationError(ClientError):
    """401: the request carried no API key, or one the server does not know.

    Give the client its key (``VectorWiseClient(url, api_key=...)``). The
    detail says which of the two, never anything about the server's keys.
    """


class PermissionDenied(ClientError):
    """403: the API key is known, but its role (read < write < admin) or the
    collections it is limited to do not allow this request."""


class RateLimited(ClientError):
    """429: this caller (its API key, or its address without one) is over its
    rate budget for searches, writes or batch queries.

    The client retries it like a 503, waiting at least ``Retry-After``; this
    is raised once the retries run out or the wait would exceed
    ``backoff_max``.

    Attributes:
        retry_after: Seconds the server asked the client to wait (its
            ``Retry-After`` header, at least 1), or ``None`` when it sent none.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class ValidationError(ClientError, ValueError):
    """The request was refused as invalid (400 or 422).

    ``detail`` is the server's: for 422 a list of problems, each a dict with
    ``loc`` (e.g. ``["body", "query_vectors", 3, 5]``: query 3, element 5),
    ``msg`` and ``type``; for 400 a string (e.g. a wrong dimension). Input the
    client cannot even encode (a non-finite element, a ragged or non-numeric
    matrix) raises this too, before any request, with ``status`` ``None`` and a
    detail list of the same shape.

    For batches the client splits into several requests, query indices in
    ``loc`` are counted from the start of the whole matrix, not of the request.
    """

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The problems as a list of dicts (a string detail becomes ``[{"msg": detail}]``)."""
        if isinstance(self.detail, list):
            return [e if isinstance(e, dict) else {"msg": str(e)} for e in self.detail]
        if self.detail is None:
            return []
        return [{"msg": str(self.detail)}]


class NotFound(ClientError):
    """404 (no such route) or 405 (wrong method): usually a wrong URL or an older server."""


class CollectionNotFound(NotFound):
    """404 from a collection route: the collection named does not exist (or was just deleted).

    A missing *point* is a plain `NotFound` (``detail`` ``"Point not found"``);
    `VectorWiseClient.retrieve` returns ``None`` for it instead. So is a key
    without a payload index (``drop_payload_index``; ``missing_ok`` returns
    ``False`` for it).
    """


class ConflictError(ClientError):
    """409: ``create_collection`` named a collection that exists with other settings.

    ``detail`` says which, e.g. ``"collection `docs` already exists with other
    settings (it has dimension 384, asked 768)"``. Creating it again with the
    same settings is not an error (the existing collection is returned).
    ``create_payload_index`` on a key indexed with another type is one too
    (``"`topic` already has a payload index of type keyword; delete it first"``).
    """


class PayloadTooLarge(ClientError):
    """413: the request body is over the server's limit (``VECTORWISE_BODY_LIMIT``)."""


class ServerError(APIError):
    """A 5xx answer. The body says nothing internal; the cause is in the server's log."""


class InsufficientStorage(ServerError):
    """507: the disk holding the server's collections is full; the write was not applied."""


class ServiceUnavailable(ServerError):
    """503: the index is still loading, its load failed, or too many searches are pending.

    On a collection write it can also mean the server's write-ahead log failed
    to sync: it then refuses writes until restarted (reads go on), so the
    retries will not help; ``detail`` says so.

    Attributes:
        retry_after: Seconds the server asked the client to wait (its
            ``Retry-After`` header), or ``None`` when it sent none.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 503,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail_of(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text or None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def _summary(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for e in detail[:3]:
            if isinstance(e, dict):
                loc = ".".join(str(p) for p in e.get("loc", []))
                parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
            else:
                parts.append(str(e))
        more = f" (and {len(detail) - 3} more)" if len(detail) > 3 else ""
        return "; ".join(parts) + more
    return str(detail)


def _names_collection(detail: Any) -> bool:
    """Whether a 404's detail is the store's "collection `x` does not exist / was deleted"."""
    return (
        isinstance(detail, str)
        and detail.startswith("collection `")
        and detail.endswith(("` does not exist", "` was deleted"))
    )


def error_from_response(
    response: httpx.Response, relocate: Callable[[Any], Any] | None = None
) -> APIError:
    """The typed exception for an error answer.

    ``relocate`` rewrites the detail first (the client uses it to count a
    batch's query indices from the start of the caller's matrix).
    """
    status = response.status_code
    detail = _detail_of(response)
    if relocate is not None:
        detail = relocate(detail)
    where = f"{response.request.method} {response.request.url.path}"
    message = f"HTTP {status} from {where}: {_summary(detail)}"
    if status == 503:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return ServiceUnavailable(message, status=status, detail=detail, retry_after=retry_after)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimited(message, status=status, detail=detail, retry_after=retry_after)
    if status == 401:
        return AuthenticationError(message, status=status, detail=detail)
    if status == 403:
        return PermissionDenied(message, status=status, detail=detail)
    if status == 507:
        return InsufficientStorage(message, status=status, detail=detail)
    if status >= 500:
        return ServerError(message, status=status, detail=detail)
    if status in (400, 422):
        return ValidationError(message, status=status, detail=detail)
    if status == 404 and _names_collection(detail):
        return CollectionNotFound(message, status=status, detail=detail)
    if status in (404, 405):
        return NotFound(message, status=status, detail=detail)
    if status == 409:
        return ConflictError(message, status=status, detail=detail)
    if status == 413:
        return PayloadTooLarge(message, status=status, detail=detail)
    if status >= 400:
        return ClientError(message, status=status, detail=detail)
    return APIError(message, status=status, detail=detail)
