"""Example 7: a collection of your own: create it, write points with payloads, search, delete.

    python 07_collections.py [--url URL] [--name NAME] [--n 2000] [--dim 64] [--keep]

Against a running `vectorwise serve` (its --data-dir holds the collection):
1. creates the collection NAME (cosine), or finds it with the same settings;
2. upserts N clustered vectors from numpy with a payload each ({"cluster", "title"}),
   sent in batches, each durable and searchable when its request returns;
3. searches with payloads: each point's own vector finds it first, and its
   neighbours are mostly of its cluster;
4. reads points back by id, replaces one, deletes some and checks that no
   search or read returns them again;
5. deletes the collection (unless --keep).
Exits 1 if a check fails.
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
    parser.add_argument("--name", default="example_07")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="leave the collection in place")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(7)
    centres = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)
    cluster = rng.integers(0, args.clusters, args.n)
    vectors = centres[cluster] + 0.3 * rng.standard_normal((args.n, args.dim)).astype(np.float32)
    ids = np.arange(args.n, dtype=np.int64) + 1_000_000  # any ids in 0 .. 2**63 - 1
    payloads = [{"cluster": int(c), "title": f"item {i}"} for i, c in enumerate(cluster)]

    ok = True

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        if not cond:
            print(f"FAIL: {what}", file=sys.stderr)
            ok = False

    with VectorWiseClient(args.url) as vw:
        info = vw.create_collection(args.name, dimension=args.dim, metric="cosine")
        print(
            f"collection {info['name']!r}: {info['dimension']} dimensions, {info['metric']}, "
            f"{info['points']} points"
        )

        started = time.perf_counter()
        written = vw.upsert(args.name, ids, vectors, payloads, batch_size=500)
        seconds = time.perf_counter() - started
        print(f"upserted {written} points in {seconds:.2f} s ({written / seconds:,.0f} points/s)")
        check(written == args.n, f"upserted {written}, expected {args.n}")

        hits = vw.search(vectors[0], k=5, collection=args.name, with_payload=True)
        print(f"\nnearest to item 0 (cluster {cluster[0]}):")
        print(f"{'rank':>4}  {'id':>9}  {'distance':>8}  payload")
        for rank, (pid, dist, payload) in enumerate(
            zip(hits.ids.tolist(), hits.distances.tolist(), hits.payloads or []), 1
        ):
            print(f"{rank:>4}  {pid:>9}  {dist:>8.4f}  {payload}")
        check(hits.ids[0] == ids[0], "item 0 did not find itself first")

        batch = vw.search_batch(vectors[:200], k=10, collection=args.name, with_payload=True)
        first = float(np.mean(batch.ids[:, 0] == ids[:200]))
        same = float(
            np.mean(
                [
                    [p is not None and p["cluster"] == cluster[i] for p in row]
                    for i, row in enumerate(batch.payloads or [])
                ]
            )
        )
        print(
            f"\n200 points as queries: {first:.0%} find themselves first; "
            f"{same:.0%} of their 10 neighbours share their cluster"
        )
        check(first == 1.0, "a point did not find itself first")
        check(same > 0.9, f"only {same:.0%} of neighbours share the cluster")

        got = vw.get(args.name, ids[:3])
        print(f"\nget {ids[:3].tolist()}: " + ", ".join(f"{p.id} {p.payload}" for p in got))
        check([p.id for p in got] == ids[:3].tolist(), "get returned other points")
        vw.upsert(
            args.name, ids[:1], vectors[:1], [{"cluster": int(cluster[0]), "title": "renamed"}]
        )
        point = vw.retrieve(args.name, int(ids[0]))
        check(
            point is not None and point.payload is not None and point.payload["title"] == "renamed",
            "the replaced payload was not read back",
        )

        gone = ids[:50]
        deleted = vw.delete(args.name, gone)
        print(f"deleted {deleted} points")
        again = vw.search_batch(vectors[:50], k=10, collection=args.name)
        check(not np.isin(again.ids, gone).any(), "a search returned a deleted point")
        check(vw.retrieve(args.name, int(gone[0])) is None, "a deleted point was read back")
        points = vw.collection_info(args.name)["points"]
        print(f"{points} points left")
        check(points == args.n - 50, f"{points} points left, expected {args.n - 50}")

        if not args.keep:
            vw.delete_collection(args.name)
            print(f"deleted the collection {args.name!r}")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
