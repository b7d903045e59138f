"""Example 5: latency percentiles, single searches against batches.

    python 05_latency_benchmark.py [--url URL] [--queries 500] [--batch 100] [--k 10]

Sends the same random queries twice: one POST /search each (sequentially, as
the demo's benchmark.py did), then in batches of --batch through
POST /search/batch. Prints avg / p50 / p95 / p99 of each request's round trip,
the per-query cost of each way, and the throughput ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import numpy.typing as npt

from vectorwise import VectorWiseClient, VectorWiseError


def summary(ms: npt.NDArray[np.float64]) -> str:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"avg {ms.mean():7.2f}  p50 {p50:7.2f}  p95 {p95:7.2f}  p99 {p99:7.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL", "http://localhost:8000"))
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    if args.queries < 1 or args.batch < 1:
        parser.error("--queries and --batch must be at least 1")

    with VectorWiseClient(args.url, batch_size=args.batch) as vw:
        dim = vw.stats()["dimension"]
        rng = np.random.default_rng(5)
        queries = rng.standard_normal((args.queries, dim)).astype(np.float32)
        for q in queries[: args.warmup]:  # open the connection, warm caches
            vw.search(q, k=args.k)

        single = []
        started = time.perf_counter()
        for q in queries:
            t = time.perf_counter()
            vw.search(q, k=args.k)
            single.append((time.perf_counter() - t) * 1000)
        single_total = time.perf_counter() - started

        batched = []
        started = time.perf_counter()
        for i in range(0, len(queries), args.batch):
            t = time.perf_counter()
            vw.search_batch(queries[i : i + args.batch], k=args.k)
            batched.append((time.perf_counter() - t) * 1000)
        batch_total = time.perf_counter() - started

    single_ms, batch_ms = np.array(single), np.array(batched)
    print(f"{args.queries} queries of dimension {dim}, k={args.k}, against {args.url}")
    print(f"  single, per request        {summary(single_ms)}")
    print(f"  batch of {args.batch:<4} per request {summary(batch_ms)}")
    per_single = single_total / args.queries * 1000
    per_batch = batch_total / args.queries * 1000
    print(
        f"  per query: single {per_single:.3f} ms ({args.queries / single_total:,.0f} QPS), "
        f"batched {per_batch:.3f} ms ({args.queries / batch_total:,.0f} QPS)"
    )
    print(f"  batching is {per_single / per_batch:.1f}x the throughput of single requests")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
