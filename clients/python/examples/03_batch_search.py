"""Example 3: many queries in one call with search_batch.

    python 03_batch_search.py [--url URL] [--queries 100] [--k 10]

Sends a (queries x dimension) numpy matrix; gets back (queries x k) id and
distance matrices, in query order. The client splits matrices larger than the
server's batch limit into several requests by itself. Also shows how a bad row
is reported: the ValidationError's detail names the query.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from vectorwise import ValidationError, VectorWiseClient, VectorWiseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL", "http://localhost:8000"))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)

    with VectorWiseClient(args.url) as vw:
        stats = vw.stats()
        dim, total = stats["dimension"], stats["total_vectors"]
        queries = np.random.default_rng(1).standard_normal((args.queries, dim)).astype(np.float32)

        started = time.perf_counter()
        batch = vw.search_batch(queries, k=args.k)
        ms = (time.perf_counter() - started) * 1000
        print(f"{len(batch)} queries in {ms:.1f} ms ({ms / len(batch):.2f} ms per query)")
        print(
            f"ids {batch.ids.shape} {batch.ids.dtype}, distances {batch.distances.shape} "
            f"{batch.distances.dtype}"
        )
        for i in range(min(3, len(batch))):
            print(f"  query {i}: ids {batch[i].ids[:5].tolist()}...")

        ok = batch.ids.shape == (args.queries, min(args.k, total))
        if not ok:
            print(f"FAIL: unexpected shape {batch.ids.shape}", file=sys.stderr)

        # The batch answers as single searches do (the same engine, the same settings).
        same = sum(
            np.array_equal(vw.search(q, k=args.k).ids, r.ids) for q, r in zip(queries, batch)
        )
        print(f"{same}/{len(batch)} queries got the same ids from single searches")

        # A bad row: the error names the query (index 2 here).
        bad = queries[:3].copy()
        bad[2] = 0.0  # the zero vector cannot be normalised
        try:
            vw.search_batch(bad, k=args.k)
            print("FAIL: a zero query was accepted", file=sys.stderr)
            ok = False
        except ValidationError as e:
            print(
                f"a zero row is refused: HTTP {e.status}, problems at "
                f"{[err.get('loc') for err in e.errors]}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
