"""Example 2: one k-nearest-neighbour search.

    python 02_single_search.py [--url URL] [--k 10] [--seed 0]

Makes a random query of the index's dimension (numpy array in), prints the
neighbours (numpy arrays out), and checks the answer's shape: min(k, total)
hits, distances ascending. The same query as a plain list gives the same answer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from vectorwise import VectorWiseClient, VectorWiseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL", "http://localhost:8000"))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with VectorWiseClient(args.url) as vw:
        stats = vw.stats()
        rng = np.random.default_rng(args.seed)
        query = rng.standard_normal(stats["dimension"]).astype(np.float32)

        started = time.perf_counter()
        hits = vw.search(query, k=args.k)
        ms = (time.perf_counter() - started) * 1000

        print(f"{len(hits)} nearest of {stats['total_vectors']:,} vectors ({ms:.1f} ms round trip)")
        print(f"{'rank':>4}  {'id':>10}  {'squared L2':>10}")
        for rank, (vid, dist) in enumerate(hits, 1):
            print(f"{rank:>4}  {vid:>10}  {dist:>10.4f}")
        print(f"ids: {hits.ids.dtype} {hits.ids.shape}, distances: {hits.distances.dtype}")

        ok = True
        if len(hits) != min(args.k, stats["total_vectors"]):
            print(f"FAIL: expected {min(args.k, stats['total_vectors'])} hits", file=sys.stderr)
            ok = False
        if not np.all(np.diff(hits.distances) >= 0):
            print("FAIL: distances are not ascending", file=sys.stderr)
            ok = False
        again = vw.search(query.tolist(), k=args.k)  # a plain list works too
        if not np.array_equal(again.ids, hits.ids):
            print("FAIL: the same query as a list gave other ids", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
