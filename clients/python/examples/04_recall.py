"""Example 4: measure recall@k against exact search done with numpy.

    python 04_recall.py [--url URL] [--vectors data/vectors.npy] [--queries 200] [--k 10]

--vectors (or VECTORWISE_VECTORS_PATH) is the .npy file the server's index was
built from. The example makes the demo's two kinds of query (a dataset vector
plus 0.1 x Gaussian noise, and uniformly random directions), finds the true k
nearest by brute force, asks the server, and reports recall@k: the share of
the true neighbours the server returned.

It also checks that the server's distances are the exact distances of the ids
it returned (so the file is the one indexed). Exits 1 if not, or if the mean
recall is below --min-recall.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import numpy.typing as npt

from vectorwise import VectorWiseClient, VectorWiseError

F32 = npt.NDArray[np.float32]


def normalise(x: F32) -> F32:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: F32 = (x / np.maximum(norms, 1e-30)).astype(np.float32)
    return out


def exact_knn(
    base: F32, queries: F32, k: int, block: int = 32768
) -> tuple[npt.NDArray[np.int64], F32]:
    """Exact k nearest by squared L2, scanning ``base`` in blocks (it may be memory-mapped)."""
    n = base.shape[0]
    k = min(k, n)
    best_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    q_sq = (queries**2).sum(axis=1, keepdims=True)
    for start in range(0, n, block):
        x = np.asarray(base[start : start + block], dtype=np.float32)
        # |q - x|^2 = |q|^2 - 2 q.x + |x|^2: one matrix product per block.
        d = q_sq - 2.0 * (queries @ x.T) + (x**2).sum(axis=1)[None, :]
        kk = min(k, len(x))
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk]  # the block's best, then merge
        all_d = np.concatenate([best_d, np.take_along_axis(d, part, axis=1)], axis=1)
        all_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argpartition(all_d, k - 1, axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, keep, axis=1)
        best_i = np.take_along_axis(all_i, keep, axis=1)
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_d, order, 1)


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Per query: |found ∩ truth| / |truth|."""
    return np.array([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL", "http://localhost:8000"))
    parser.add_argument(
        "--vectors", default=os.environ.get("VECTORWISE_VECTORS_PATH", "data/vectors.npy")
    )
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-recall", type=float, default=0.0)
    args = parser.parse_args(argv)

    base = np.load(args.vectors, mmap_mode="r")
    with VectorWiseClient(args.url) as vw:
        stats = vw.stats()
        if base.shape != (stats["total_vectors"], stats["dimension"]):
            print(
                f"FAIL: {args.vectors} is {base.shape}, the server indexes "
                f"({stats['total_vectors']}, {stats['dimension']})",
                file=sys.stderr,
            )
            return 1
        print(
            f"{args.vectors}: {base.shape[0]:,} x {base.shape[1]}; server efSearch "
            f"{stats['hnsw_efSearch']}, recall@{args.k} over {args.queries} queries of each kind"
        )

        rng = np.random.default_rng(args.seed)
        picks = rng.integers(0, base.shape[0], args.queries)
        noisy = np.asarray(base[np.sort(picks)], dtype=np.float32)
        noisy = noisy + 0.1 * rng.standard_normal(noisy.shape).astype(np.float32)
        kinds = {
            "demo (vector + noise)": normalise(noisy),
            "random directions": normalise(
                rng.standard_normal((args.queries, base.shape[1])).astype(np.float32)
            ),
        }

        print("(exact search is a numpy scan: about 20 s per kind at 1M x 128 on 2 cores)")
        ok, means = True, []
        for name, queries in kinds.items():
            # The server normalises queries; so do we, so the distances compare.
            truth_ids, _ = exact_knn(base, queries, args.k)
            batch = vw.search_batch(queries, k=args.k)
            r = recall(batch.ids, truth_ids)
            means.append(r.mean())
            print(
                f"  {name:<22} recall@{args.k}: mean {r.mean():.3f}  "
                f"min {r.min():.2f}  max {r.max():.2f}"
            )

            # The server's distances must be the exact ones of the ids it returned.
            got = np.asarray(base[batch.ids.ravel()], dtype=np.float32)
            got = got.reshape(*batch.ids.shape, -1)
            exact = ((got - queries[:, None, :]) ** 2).sum(axis=2)
            if not np.allclose(batch.distances, exact, rtol=1e-3, atol=1e-4):
                worst = np.abs(batch.distances - exact).max()
                print(
                    f"FAIL: server distances differ from exact ones by up to {worst:.3g}; "
                    f"is {args.vectors} the file the server indexed?",
                    file=sys.stderr,
                )
                ok = False
        if min(means) < args.min_recall:
            print(
                f"FAIL: mean recall {min(means):.3f} < --min-recall {args.min_recall}",
                file=sys.stderr,
            )
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
