"""Search profiles: latency and measured recall of each, against exact search in numpy.

    python profiles.py                                  # builds and serves its own small index
    python profiles.py --url URL --vectors data.npy    # or: a running server and its .npy

Without --url (or VECTORWISE_URL) the example writes 10000 x 64 random unit
vectors, indexes them with `vectorwise build --method scan` (which also
calibrates the index: a recall table per k), and serves it with
`vectorwise serve --port 0`. (The scan, because on data this small a graph is
near exact at every setting and the three profiles would all pick the same
one.) The binary comes from --bin, else $VECTORWISE_BIN, else `vectorwise` on
PATH.

Then, for each profile (low_latency, balanced, high_accuracy) and for
recall_target=1.0 (exact search), it sends --queries random unit vectors as
one batch, reads what the server used (`result.used`: the setting, the
calibrated expected recall) and measures recall@k against the true neighbours
found by brute force in numpy, and times --latency single searches (client
round trips, p50 and p95). It prints one row per profile.

Exits 1 if recall_target=1.0 is not exactly numpy's answer, or if a profile's
measured recall is below its promise beyond noise (the upper end of the 95 %
interval under the promise, the rule the server's own recall monitor uses).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorwise import PROFILES, VectorWiseClient, VectorWiseError
from vectorwise.local import LocalServer, build_index

F32 = npt.NDArray[np.float32]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> F32:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    out: F32 = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_knn(base: F32, queries: F32, k: int) -> npt.NDArray[np.int64]:
    """The true k nearest by squared L2 (|x|^2 - 2 q.x; |q|^2 is the same for every x)."""
    d = (base.astype(np.float64) ** 2).sum(axis=1)[None, :] - 2.0 * (
        queries.astype(np.float64) @ base.astype(np.float64).T
    )
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids.astype(np.int64)


@contextmanager
def served(args: argparse.Namespace) -> Iterator[tuple[str, Path]]:
    """The server's URL and its vectors file: the given ones, or a fresh local index."""
    if args.url:
        yield args.url, Path(args.vectors)
        return
    with tempfile.TemporaryDirectory(prefix="vectorwise-profiles-") as tmp:
        vectors, index = Path(tmp) / "vectors.npy", Path(tmp) / "index.vwi"
        np.save(vectors, unit_rows(np.random.default_rng(42), args.n, args.dim))
        started = time.perf_counter()
        build_index(vectors, index, binary=args.bin, extra_args=["--method", "scan"])
        print(
            f"built and calibrated {args.n} x {args.dim} in {time.perf_counter() - started:.1f} s"
        )
        with LocalServer(index, binary=args.bin) as server:
            yield server.url, vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL"))
    parser.add_argument("--vectors", default=os.environ.get("VECTORWISE_VECTORS_PATH"))
    parser.add_argument("--bin", default=None, help="the vectorwise binary (own index only)")
    parser.add_argument("--n", type=int, default=10_000, help="vectors of the own index")
    parser.add_argument("--dim", type=int, default=64, help="dimension of the own index")
    parser.add_argument("--queries", type=int, default=300, help="queries for recall")
    parser.add_argument("--latency", type=int, default=100, help="single searches timed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.url and not args.vectors:
        parser.error("--url needs --vectors (or VECTORWISE_VECTORS_PATH): the .npy it indexes")

    with served(args) as (url, vectors_path), VectorWiseClient(url) as vw:
        base = np.load(vectors_path).astype(np.float32)
        stats = vw.stats()
        if base.shape != (stats["total_vectors"], stats["dimension"]):
            print(f"FAIL: {vectors_path} is {base.shape}, not the served index", file=sys.stderr)
            return 1
        calibration = stats.get("calibration")
        if calibration is None:
            print("note: the index has no calibration (vectorwise calibrate --index ...)")
        else:
            print(
                f"{stats['index_type']} index of {stats['total_vectors']:,} x "
                f"{stats['dimension']}, calibrated on {calibration['queries']} "
                f"{calibration['source']} queries; server default: {stats['default_profile']}"
            )

        rng = np.random.default_rng(args.seed)
        queries = unit_rows(rng, args.queries, base.shape[1])
        truth = exact_knn(base, queries, args.k)

        runs: list[tuple[str, dict[str, Any], float | None]] = [
            (name, {"profile": name}, target) for name, target in PROFILES.items()
        ]
        runs.append(("recall_target=1.0", {"recall_target": 1.0}, 1.0))
        header = (
            f"{'profile':<18} {'setting':<11} {'ef':>6} {'promise':>7} {'expected':>8} "
            f"{'measured recall@' + str(args.k):>22} {'p50 ms':>7} {'p95 ms':>7}"
        )
        print(f"\n{header}\n{'-' * len(header)}")
        ok = True
        for label, settings, promise in runs:
            batch = vw.search_batch(queries, k=args.k, **settings)
            used = batch.used
            per_query = np.array(
                [len(np.intersect1d(f, t)) / args.k for f, t in zip(batch.ids, truth)]
            )
            mean = float(per_query.mean())
            half = 1.96 * float(per_query.std(ddof=1)) / np.sqrt(len(per_query))
            times = []
            for q in queries[: args.latency]:
                start = time.perf_counter()
                vw.search(q, k=args.k, **settings)
                times.append((time.perf_counter() - start) * 1000)
            p50, p95 = np.percentile(times, [50, 95])
            expected = "-" if used.expected_recall is None else f"{used.expected_recall:.4f}"
            ef = "-" if used.ef_search is None else str(used.ef_search)
            print(
                f"{label:<18} {used.setting or '?':<11} {ef:>6} {promise or 0:>7.2f} "
                f"{expected:>8} {mean:>12.4f} ± {half:.4f}  {p50:>7.3f} {p95:>7.3f}"
            )
            if promise is not None and mean + half < promise:
                print(
                    f"FAIL: {label} delivered {mean:.4f} ± {half:.4f} < {promise}", file=sys.stderr
                )
                ok = False
            if label.startswith("recall_target") and not (
                used.exact and np.array_equal(batch.ids, truth)
            ):
                print("FAIL: recall_target=1.0 is not numpy's exact answer", file=sys.stderr)
                ok = False

        print(
            "\nexpected: the calibrated mean recall@k of the setting (X-VectorWise-Expected-"
            "Recall);\nmeasured: against numpy brute force, with a 95 % interval; latency: "
            "client round trips of single searches."
        )
        if calibration is not None:
            engine = {
                p["profile"]: p["latency_p50_ms"]
                for p in calibration["profiles"]
                if p["k"] == args.k and p["latency_p50_ms"] is not None
            }
            if engine:
                print(
                    "engine p50 at calibration (in-process, one thread): "
                    + ", ".join(f"{name} {ms:.3f} ms" for name, ms in engine.items())
                )
        monitor = vw.stats().get("recall_monitor")
        if monitor is not None:
            print(
                f"server's recall monitor: {monitor['sampled']} searches sampled "
                f"({monitor['sample_rate']:.0%}), {monitor['evaluated']} re-run exactly"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
