#!/usr/bin/env python3
"""What a binary search body saves over JSON through HTTP: `POST /search` with a JSON body
against the same query as `application/octet-stream` (raw little-endian f32, `k` in the query
string), and the bare keep-alive `GET /` round trip, side by side in one run.

    python3 bench/binary/binary_cost.py --bin target/release/vectorwise \
        --index 384=data/c100k-384.vwi --index 128=data/c100k-128.vwi

One `vectorwise serve` per index on loopback (answer cache and recall monitor off, so that
every request searches and nothing else runs). Each pass makes --queries fresh fixed-seed
random unit queries per index (float32 values; the JSON prints each with nine significant
digits, as the Python client does, so both bodies carry the same numbers) and a sequential
client (http.client, one keep-alive connection per server) sends each query as JSON and as
octet-stream, in alternating order, and one `GET /` beside them. The two answers must be
byte-identical. Each pass's p50 of the three is recorded per index, from the client's clock and,
for the searches, from the server's access log (`latency_ms`, the time inside the service); the
median over --passes passes is reported, with the spread, and the load average before and
after; "over GET /" is the median over passes of a search's p50 less the bare round trip's.
`--near LABEL=vectors.npy` queries with rows of the indexed data plus a little noise (the queries
a calibration expects; random vectors sit far from clustered data and are searched more widely);
`--bin` repeated serves every index from each binary, in the same passes (an A/B of two
builds). Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vwserver import start  # noqa: E402


def npy_rows(path: str) -> tuple[int, int, int, object]:
    """(rows, columns, offset of the data, open file) of a 2-D little-endian float32 .npy."""
    f = open(path, "rb")
    head = f.read(10)
    if head[:6] != b"\x93NUMPY":
        raise SystemExit(f"{path} is not a .npy file")
    if head[6] == 1:
        length, offset = struct.unpack("<H", head[8:10])[0], 10
    else:
        f.seek(8)
        length, offset = struct.unpack("<I", f.read(4))[0], 12
    f.seek(offset)
    header = f.read(length).decode("latin1")
    if "'<f4'" not in header or "True" in header:
        raise SystemExit(f"{path}: expected a C-order float32 array")
    shape = header.split("'shape':")[1].split("(")[1].split(")")[0]
    rows, cols = (int(x) for x in shape.split(",")[:2])
    return rows, cols, offset + length, f


def make_queries(n: int, dim: int, seed: int, data: str | None = None) -> list[tuple[bytes, bytes]]:
    """`n` unit queries as (JSON body, octet-stream body), the same float32 values: random, or
    (with `data`, a .npy of the indexed vectors) rows of the data with a little noise, the
    queries an index's calibration expects."""
    rng = random.Random(seed)
    rows = npy_rows(data) if data else None
    if rows and rows[1] != dim:
        raise SystemExit(f"{data} has {rows[1]} columns, the index {dim}")
    out = []
    for _ in range(n):
        if rows:
            count, _, offset, f = rows
            f.seek(offset + 4 * dim * rng.randrange(count))
            base = struct.unpack(f"<{dim}f", f.read(4 * dim))
            scale = math.sqrt(sum(x * x for x in base)) or 1.0
            v = [x / scale + rng.gauss(0.0, 0.1 / math.sqrt(dim)) for x in base]
        else:
            v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        norm = math.sqrt(sum(x * x for x in v))
        raw = struct.pack(f"<{dim}f", *(x / norm for x in v))
        f32 = struct.unpack(f"<{dim}f", raw)
        text = "[" + ",".join("%.9g" % x for x in f32) + "]"
        out.append((('{"query_vector":' + text + ',"k":10}').encode(), raw))
    return out


def timed(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
          content_type: str | None) -> tuple[float, bytes]:
    headers = {"content-type": content_type} if content_type else {}
    t = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    answer = response.read()
    ms = (time.perf_counter() - t) * 1e3
    if response.status != 200:
        raise SystemExit(f"{method} {path} answered {response.status}: {answer[:200]!r}")
    return ms, answer


def logged(log: Path, seen: int) -> tuple[list[float], int]:
    """The `latency_ms` of the `/search` lines of the access log after the first `seen`."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"path":"/search"' in line:
            found.append(json.loads(line)["fields"]["latency_ms"])
    return found[seen:], len(found)


def one_pass(port: int, bodies: list[tuple[bytes, bytes]], binary_first: bool) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: dict[str, list[float]] = {"json": [], "octet": [], "get": []}
    for j, b in bodies:
        sends = [("json", j, "application/json", "/search"),
                 ("octet", b, "application/octet-stream", "/search?k=10")]
        if binary_first:
            sends.reverse()
        answers = {}
        for name, body, ctype, path in sends:
            ms, answers[name] = timed(conn, "POST", path, body, ctype)
            times[name].append(ms)
        if answers["json"] != answers["octet"]:
            raise SystemExit("the JSON and binary answers differ")
        ms, _ = timed(conn, "GET", "/", None, None)
        times["get"].append(ms)
    conn.close()
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", action="append", metavar="PATH",
                        help="the server binary (default target/release/vectorwise); repeat to compare "
                             "binaries side by side, each serving every index, in the same passes")
    parser.add_argument("--index", action="append", required=True, metavar="LABEL=PATH",
                        help="an index to serve (repeat); LABEL names its row (e.g. 384=c100k-384.vwi)")
    parser.add_argument("--near", action="append", default=[], metavar="LABEL=PATH",
                        help="query index LABEL with rows of this .npy (its vectors) plus a little "
                             "noise, instead of random unit vectors (which sit far from clustered data)")
    parser.add_argument("--queries", type=int, default=500, help="queries per pass and index")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    bins = args.bin or ["target/release/vectorwise"]
    near = dict(spec.split("=", 1) for spec in args.near)

    load_before = os.getloadavg()
    env = {**os.environ, "VECTORWISE_CACHE_BYTES": "0"}
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers = []
        specs = [(b, spec) for spec in args.index for b in bins]
        for i, (binary, spec) in enumerate(specs):
            label, path = spec.split("=", 1)
            data = near.get(label)
            if len(bins) > 1:
                label = f"{label}@{bins.index(binary)}"
            proc, port, log = start(binary, path, work, f"s{i}", ["--cache-bytes", "0"], env=env)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/stats")
            dim = json.loads(conn.getresponse().read())["dimension"]
            conn.close()
            servers.append((label, proc, port, dim, log, data))
        try:
            seen = {}
            for label, _, port, dim, log, data in servers:
                one_pass(port, make_queries(args.warmup, dim, 999, data), False)
                time.sleep(0.3)
                seen[label] = logged(log, 0)[1]
            for p in range(args.passes):
                for label, _, port, dim, log, data in servers:
                    bodies = make_queries(args.queries, dim, 1000 * p + dim, data)
                    result = one_pass(port, bodies, p % 2 == 1)
                    time.sleep(0.3)  # the last log lines
                    inside, seen[label] = logged(log, seen[label])
                    # Sent in pairs, JSON first in even passes.
                    first, second = inside[0::2], inside[1::2]
                    json_ms, octet_ms = (second, first) if p % 2 == 1 else (first, second)
                    result["json_in"] = statistics.median(json_ms)
                    result["octet_in"] = statistics.median(octet_ms)
                    results.setdefault(label, []).append(result)
        finally:
            for _, proc, *_ in servers:
                proc.terminate()
                proc.wait()
    load_after = os.getloadavg()

    print(f"{args.passes} passes x {args.queries} queries per index, k = 10, default profile, "
          f"cache and monitor off; p50 per pass, median [min-max] over passes, ms")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)")
    if len(bins) > 1:
        print("binaries: " + ", ".join(f"@{i} {b}" for i, b in enumerate(bins)))
    print(f"{'index':>7} {'GET /':>20} {'POST /search JSON':>22} {'octet-stream':>22} {'JSON - octet':>13}"
          f" | {'inside: JSON':>22} {'octet-stream':>22} | {'over GET /: JSON':>16} {'octet':>6}")
    for label, passes in results.items():
        def cell(name: str) -> str:
            v = [p[name] for p in passes]
            return f"{statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}]"
        saved = statistics.median(p["json"] - p["octet"] for p in passes)
        over = {name: statistics.median(p[name] - p["get"] for p in passes) for name in ("json", "octet")}
        print(f"{label:>7} {cell('get'):>20} {cell('json'):>22} {cell('octet'):>22} {saved:>13.3f}"
              f" | {cell('json_in'):>22} {cell('octet_in'):>22} | {over['json']:>16.3f} {over['octet']:>6.3f}")


if __name__ == "__main__":
    main()
