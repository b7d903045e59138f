#!/usr/bin/env python3
"""What learning the recall table from live queries buys (crates/server/src/learn.rs): one
`vectorwise serve` on an index (a copy, in a temporary folder: the learnt table is written beside
it), random unit queries (unlike clustered data), a sequential keep-alive client.

    python3 bench/ood/learn_cost.py --bin target/release/vectorwise --index c200k.vwi --queries 600

Phase 1 sends --queries random queries on the build's table: each is widened (searched more
widely) when its answer looks unlike the calibration's. After the first 300 the server learns the
table on them; the script waits until `/stats` says `calibration.source` is `live`. Phase 2 sends
--queries fresh random queries on the learnt table. For both phases: recall@10 of the balanced
profile against the exact answer (the same server with `recall_target` 1.0), the share widened
(`x-vectorwise-widened`), and p50 / p95 of the search's time inside the service (the access
log's `latency_ms`). Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vwserver import start  # noqa: E402


def queries(n: int, dim: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        norm = math.sqrt(sum(x * x for x in v))
        out.append([x / norm for x in v])
    return out


def post(conn: http.client.HTTPConnection, body: dict) -> tuple[dict, bool]:
    conn.request("POST", "/search", body=json.dumps(body), headers={"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"/search answered {r.status}: {data[:200]!r}")
    return json.loads(data), r.getheader("x-vectorwise-widened") == "true"


def latencies(log: Path) -> list[float]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"path":"/search"' in line:
            out.append(json.loads(line)["fields"]["latency_ms"])
    return out


def phase(conn: http.client.HTTPConnection, qs: list[list[float]]) -> tuple[float, float, list[bool]]:
    """(recall@10 balanced, share widened, the balanced searches' widened flags); each query is
    searched balanced, then exactly."""
    recall, flags = 0.0, []
    for q in qs:
        got, widened = post(conn, {"query_vector": q, "k": 10})
        truth, _ = post(conn, {"query_vector": q, "k": 10, "recall_target": 1.0})
        recall += len(set(got["indices"]) & set(truth["indices"])) / 10
        flags.append(widened)
    return recall / len(qs), sum(flags) / len(flags), flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/vectorwise")
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=int, default=600, help="random queries per phase (at least 300)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy = work / "index.vwi"
        shutil.copy(args.index, copy)
        proc, port, log = start(args.bin, str(copy), work, "s", ["--cache-bytes", "0", "--learn-calibration", "true"])
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("GET", "/stats")
            stats = json.loads(conn.getresponse().read())
            dim = stats["dimension"]
            print(f"{args.index}: {stats['total_vectors']} x {dim}, {stats['index_type']}, "
                  f"table from {stats['calibration']['source']}; load average {os.getloadavg()[0]:.2f}")
            rows = []
            for name, seed in (("build's table", 1), ("learnt table", 2)):
                before = len(latencies(log))
                recall, widened, flags = phase(conn, queries(args.queries, dim, seed))
                time.sleep(0.3)
                # Every other logged search is the exact one.
                ms = latencies(log)[before:][0::2]
                rows.append((name, recall, widened, statistics.median(ms), sorted(ms)[int(0.95 * len(ms))]))
                if seed == 1:
                    deadline = time.time() + 600
                    while True:
                        conn.request("GET", "/stats")
                        s = json.loads(conn.getresponse().read())
                        if s["calibration"]["source"] == "live":
                            print(f"learnt on {s['calibration']['queries']} queries in {s['calibration']['seconds']:.2f} s")
                            break
                        if time.time() > deadline or s["live_calibration"]["last_error"]:
                            raise SystemExit(f"nothing learnt: {s['live_calibration']}")
                        time.sleep(0.5)
            print(f"{'table':<16} {'recall@10':>9} {'widened':>8} {'p50 ms':>8} {'p95 ms':>8}   (balanced, inside the service)")
            for name, recall, widened, p50, p95 in rows:
                print(f"{name:<16} {recall:>9.3f} {widened:>8.1%} {p50:>8.3f} {p95:>8.3f}")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
