"""schemathesis hooks for the conformance run (run.sh sets SCHEMATHESIS_HOOKS=hooks).

The search routes take a binary body (`application/octet-stream`, `application/x-npy`) with
the other fields in the query string (README, "Binary request bodies"). OpenAPI has one list of
parameters per operation, not one per media type, so the document states the query fields of a
binary body in the request body's description; a schema-valid binary body (any bytes, to a
JSON Schema) without `k` in the query string is refused, as the description says. So a case
that schemathesis generates as valid with a binary media type is made valid here: whole float32
queries of the served index's dimension (CONFORMANCE_DIM), none zero (the index is `cosine`),
and `k` in the query string. Every check then applies to it as to a JSON body. Cases generated
as invalid are left as they are: the server must refuse them.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

BINARY = ("application/octet-stream", "application/x-npy")
DIM = int(os.environ.get("CONFORMANCE_DIM", "16"))


def npy(rows: list[list[float]], one: bool) -> bytes:
    """A .npy file as numpy writes it: format 1.0, `<f4`, C order, header padded to 64 bytes."""
    shape = f"({DIM},)" if one else f"({len(rows)}, {DIM})"
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    data = b"".join(struct.pack(f"<{DIM}f", *row) for row in rows)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    if case.media_type not in BINARY or not case.operation.path.startswith("/search"):
        return case
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    body = case.body if isinstance(case.body, (bytes, bytearray)) else b""
    rng = random.Random(len(body))  # varied, and the same for the same generated case
    n = 1 if case.operation.path == "/search" else rng.randint(1, 4)
    rows = [[rng.uniform(-1.0, 1.0) for _ in range(DIM)] for _ in range(n)]
    for row in rows:
        row[0] = 0.5  # never the zero vector
    if case.media_type == "application/octet-stream":
        case.body = b"".join(struct.pack(f"<{DIM}f", *row) for row in rows)
    else:
        case.body = npy(rows, one=n == 1 and rng.random() < 0.5)
    case.query = {"k": str(rng.randint(1, 10))}
    return case
