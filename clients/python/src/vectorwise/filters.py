"""Typed search filters for collections: `Filter` and its conditions.

::

    from vectorwise.filters import Filter, HasId, IsEmpty, Match, MatchAny, Range

    f = Filter(
        must=[Match("topic", "cooking"), Range("minutes", gte=5, lt=30)],
        should=[MatchAny("lang", ["en", "fr"]), Match("meta.reviewed", True)],
        must_not=[HasId([7, 9]), IsEmpty("author")],
    )
    hits = vw.search(q, k=10, collection="docs", filter=f)
    f.to_dict()   # {"must": [{"key": "topic", "match": {"value": "cooking"}}, ...], ...}

Each class serialises (``to_dict()``) to the JSON the server takes, which is
Qdrant's shape; ``search(..., filter=...)`` also takes that JSON as a plain
dict, sent as it is. What a filter means is the server's:

- a point passes when every ``must`` condition holds, at least one ``should``
  does (when there are any), and no ``must_not`` does; ``Filter()`` lets every
  point through, and a `Filter` is itself a condition (nesting);
- a key is a dotted path (``meta.source``); arrays on the way are walked into
  (``tags``, ``items.name``); its values are the leaves reached, ``null`` left out;
- `Match` / `MatchAny`: one of the key's values equals the value (one of the
  values). Strings, integers and booleans, compared by JSON type: ``3`` does
  not match a stored ``3.0`` nor ``"3"``; compare other numbers with `Range`;
- `Range`: one of the key's values is a number within the bounds;
- `IsEmpty`: the key has no value (missing, ``null`` or ``[]``; a point without
  a payload has no keys); `HasId`: the point's id is one of these (integers,
  UUIDs, or both).

The server's checks are made when a condition is built, so a mistake fails at
once, as `vectorwise.errors.ValidationError` (a ``ValueError``, ``status``
``None``) whose ``detail`` has the ``type`` and ``msg`` of the server's 422
and a ``loc`` relative to the condition (``["range"]``; the server prefixes
where the condition stands, ``["body", "filter", "must", 0, "range"]``). A
dict given as a condition (or as the whole filter) is not checked here: the
server's 422 names its mistakes.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .errors import ValidationError

__all__ = [
    "MAX_ANY",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_HAS_ID",
    "MAX_KEY_BYTES",
    "Condition",
    "Filter",
    "HasId",
    "IsEmpty",
    "Match",
    "MatchAny",
    "Range",
]

#: Filters nest at most this deep (the outermost filter is 1).
MAX_DEPTH = 8
#: Conditions in one ``must`` / ``should`` / ``must_not`` list.
MAX_CONDITIONS = 64
#: Values in one `MatchAny`.
MAX_ANY = 1024
#: Ids in one `HasId`.
MAX_HAS_ID = 10_000
#: Longest key, in bytes of UTF-8.
MAX_KEY_BYTES = 256

_MAX_ID = 2**63 - 1
_I64 = (-(2**63), 2**63 - 1)

#: A value `Match` compares with.
MatchValue = Union[str, int, bool]


def _refuse(
    loc: list[Any],
    kind: str,
    msg: str,
    value: Any = None,
    ctx: Any = None,
    *,
    has_input: bool = True,
) -> ValidationError:
    entry: dict[str, Any] = {"loc": loc, "msg": msg, "type": kind}
    if has_input:
        entry["input"] = value
    if ctx is not None:
        entry["ctx"] = ctx
    where = ".".join(str(p) for p in loc) or "filter"
    got = f" (got {value!r})" if has_input else ""
    return ValidationError(f"invalid filter, {where}: {msg}{got}", status=None, detail=[entry])


def _value_error(loc: list[Any], reason: str, value: Any) -> ValidationError:
    return _refuse(loc, "value_error", f"Value error, {reason}", value, {"error": reason})


def _too_long(loc: list[Any], limit: int) -> ValidationError:
    return _refuse(
        loc,
        "too_long",
        f"List should have at most {limit} items",
        ctx={"max_length": limit},
        has_input=False,
    )


def _key(key: Any, loc: list[Any]) -> str:
    """A dotted key as the server parses it (``a.b``, ``a[].b``), or its refusal."""
    if not isinstance(key, str):
        raise _refuse(loc, "string_type", "Input should be a valid string", key)
    if not key:
        raise _value_error(loc, "key must not be empty", key)
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise _value_error(loc, "key must not contain control characters", key)
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise _value_error(loc, f"key is {size} bytes long; the limit is {MAX_KEY_BYTES}", key)
    for part in key.split("."):
        part = part[:-2] if part.endswith("[]") else part
        if not part:
            raise _value_error(
                loc,
                f"key `{key}` has an empty part (keys are dotted names like `meta.source`)",
                key,
            )
        if "[" in part or "]" in part:
            raise _value_error(
                loc, f"key `{key}`: only `[]` at the end of a part is understood", key
            )
    return str(key)


def _uuid_text(value: Any) -> str | None:
    """A UUID's hyphenated lower-case text (what the server answers), if ``value`` is a
    `uuid.UUID` or a string `uuid.UUID` reads (hyphenated, 32 hex digits, braced,
    ``urn:uuid:``, any case); else ``None``."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return None
    return None


def _match_value(value: Any, loc: list[Any]) -> MatchValue:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return bool(value)  # numpy's bool too
    if isinstance(value, numbers.Integral):
        if _I64[0] <= int(value) <= _I64[1]:
            return int(value)
    elif not isinstance(value, numbers.Number):
        raise _value_error(loc, "match compares strings, integers and booleans", value)
    raise _value_error(
        loc,
        "match compares strings, integers (within i64) and booleans; use range for other numbers",
        value,
    )


class Condition:
    """A condition of a `Filter`: `Match`, `MatchAny`, `Range`, `HasId`, `IsEmpty` or a `Filter`."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The condition as the server's JSON (a dict of plain Python values)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Match(Condition):
    """One of ``key``'s values equals ``value`` (a string, an integer within int64, or a bool)."""

    key: str
    value: MatchValue

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _key(self.key, ["key"]))
        object.__setattr__(self, "value", _match_value(self.value, ["match", "value"]))

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "match": {"value": self.value}}


@dataclass(frozen=True)
class MatchAny(Condition):
    """One of ``key``'s values equals one of ``values`` (no values: matches no point)."""

    key: str
    values: Iterable[MatchValue]

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _key(self.key, ["key"]))
        values = self.values
        loc: list[Any] = ["match", "any"]
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise _refuse(loc, "list_type", "Input should be a valid list", values)
        values = list(values.tolist() if hasattr(values, "tolist") else values)
        if len(values) > MAX_ANY:
            raise _too_long(loc, MAX_ANY)
        checked = tuple(_match_value(v, [*loc, i]) for i, v in enumerate(values))
        object.__setattr__(self, "values", checked)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "match": {"any": list(self.values)}}


def _bound(value: Any, loc: list[Any]) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _refuse(loc, "float_type", "Input should be a valid number", value)
    if isinstance(value, numbers.Integral):
        return int(value)
    x = float(value)
    if not math.isfinite(x):
        raise _refuse(loc, "finite_number", "Input should be a finite number", value)
    return x


@dataclass(frozen=True)
class Range(Condition):
    """One of ``key``'s values is a number within the bounds given (at least one).

    ``Range("price", gte=1, lt=5)`` is ``1 <= price < 5``; bounds compare as
    float64, with integers and floats alike.
    """

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _key(self.key, ["key"]))
        for name in ("gt", "gte", "lt", "lte"):
            object.__setattr__(self, name, _bound(getattr(self, name), ["range", name]))
        if not self.bounds():
            raise _value_error(["range"], "a range needs at least one of gt, gte, lt, lte", {})

    def bounds(self) -> dict[str, float]:
        """The bounds given, by name."""
        return {
            name: getattr(self, name)
            for name in ("gt", "gte", "lt", "lte")
            if getattr(self, name) is not None
        }

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "range": self.bounds()}


@dataclass(frozen=True)
class HasId(Condition):
    """The point's id is one of ``ids``: ints ``0 .. 2**63 - 1`` (a numpy integer array too),
    UUIDs (`uuid.UUID` or any string form `uuid.UUID` reads), mixed or not, or one of them.

    UUIDs are kept, and sent, as their hyphenated lower-case strings.
    """

    ids: Iterable[int | str | uuid.UUID]

    def __post_init__(self) -> None:
        ids: Any = self.ids
        loc: list[Any] = ["has_id"]
        if (isinstance(ids, numbers.Integral) and not isinstance(ids, bool)) or _uuid_text(
            ids
        ) is not None:
            ids = [ids]  # one id
        if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Iterable):
            raise _refuse(loc, "list_type", "Input should be a valid list", ids)
        ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
        if len(ids) > MAX_HAS_ID:
            raise _too_long(loc, MAX_HAS_ID)
        out: list[int | str] = []
        for i, v in enumerate(ids):
            if isinstance(v, numbers.Integral) and not isinstance(v, bool):
                if 0 <= int(v) <= _MAX_ID:
                    out.append(int(v))
                    continue
            elif (text := _uuid_text(v)) is not None:
                out.append(text)
                continue
            raise _value_error([*loc, i], "ids are integers from 0 to 2^63 - 1 or UUID strings", v)
        object.__setattr__(self, "ids", tuple(out))

    def to_dict(self) -> dict[str, Any]:
        return {"has_id": list(self.ids)}


@dataclass(frozen=True)
class IsEmpty(Condition):
    """``key`` has no value: missing, ``null`` or ``[]`` (any key of a point without payload)."""

    key: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _key(self.key, ["is_empty", "key"]))

    def to_dict(self) -> dict[str, Any]:
        return {"is_empty": {"key": self.key}}


#: What a filter's lists hold: typed conditions, or dicts of the server's JSON (sent as given).
ConditionLike = Union[Condition, Mapping[str, Any]]


@dataclass(frozen=True)
class Filter(Condition):
    """Every ``must`` holds, at least one ``should`` (if any), no ``must_not``.

    Each list holds conditions (`Match`, `MatchAny`, `Range`, `HasId`,
    `IsEmpty`, a nested `Filter`) or dicts in the server's JSON shape; at most
    `MAX_CONDITIONS` each, nested at most `MAX_DEPTH` deep. ``Filter()`` lets
    every point through.
    """

    must: Sequence[ConditionLike] = ()
    should: Sequence[ConditionLike] = ()
    must_not: Sequence[ConditionLike] = ()

    def __post_init__(self) -> None:
        for name in ("must", "should", "must_not"):
            items = getattr(self, name)
            if items is None:
                items = ()
            if isinstance(items, (str, bytes, Mapping, Condition)) or not isinstance(
                items, Sequence
            ):
                raise _refuse([name], "list_type", "Input should be a valid list", items)
            if len(items) > MAX_CONDITIONS:
                raise _too_long([name], MAX_CONDITIONS)
            for i, c in enumerate(items):
                if not isinstance(c, (Condition, Mapping)):
                    raise _refuse([name, i], "dict_type", "Input should be a valid dictionary", c)
            object.__setattr__(self, name, tuple(items))
        too_deep = self._too_deep(MAX_DEPTH)
        if too_deep is not None:
            raise _value_error(
                too_deep, f"filters nest at most {MAX_DEPTH} deep", self._at(too_deep).to_dict()
            )

    def _nested(self) -> list[tuple[list[Any], Filter]]:
        return [
            ([name, i], c)
            for name in ("must", "should", "must_not")
            for i, c in enumerate(getattr(self, name))
            if isinstance(c, Filter)
        ]

    def _too_deep(self, room: int) -> list[Any] | None:
        """Where a filter nested past ``room`` levels (this one is the first) stands, if any."""
        if room == 0:
            return []
        for loc, f in self._nested():
            below = f._too_deep(room - 1)
            if below is not None:
                return loc + below
        return None

    def _at(self, loc: list[Any]) -> Filter:
        f = self
        for name, i in zip(loc[::2], loc[1::2]):
            f = getattr(f, name)[i]
        return f

    def to_dict(self) -> dict[str, Any]:
        """The server's JSON; empty lists are left out (``Filter()`` is ``{}``)."""
        return {
            name: [c.to_dict() if isinstance(c, Condition) else dict(c) for c in items]
            for name in ("must", "should", "must_not")
            if (items := getattr(self, name))
        }
