#!/usr/bin/env python3
"""What a running batch job costs the interactive searches beside it, through HTTP, side by side
in one run.

    python3 bench/jobs/job_cost.py --bin target/release/vectorwise --index c1m.vwi

One `vectorwise serve` on the index (the collection `default`), the recall monitor and the
hot-query cache off. A sequential client (http.client, one keep-alive connection) sends
`POST /search` (k 10, the default profile, fixed-seed random unit queries) for --seconds in
each of three conditions, in turn, --rounds times:
  quiet  nothing else runs;
  job    a batch job of --job-queries queries (`POST /collections/default/jobs`, a float32 .npy,
         k 10) runs; at the end of the phase its progress gives its rate and it is deleted;
  batch  what a client without jobs would do: a second client sends `POST /search/batch` of
         1024 queries back to back.
It prints each condition's p50 / p95 / p99 (ms, client clock; the median over rounds of each
round's value) and the background work's rate (queries/s). Needs numpy.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vwserver import queries, start  # noqa: E402


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype("<f4")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(port: int, bodies: list[bytes], seconds: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out, i, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        conn.request("POST", "/search", body=bodies[i % len(bodies)], headers={"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"search answered {r.status}")
        out.append((time.perf_counter() - t) * 1e3)
        i += 1
    conn.close()
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def call(port: int, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(method, path, body=body, headers={"content-type": ctype} if body is not None else {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if data else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/vectorwise")
    ap.add_argument("--index", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--job-queries", type=int, default=300_000)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="job-cost-"))
    proc, port, _ = start(args.bin, args.index, work, "server", ["--cache-bytes", "0"])
    try:
        _, stats = call(port, "GET", "/stats")
        dim = stats["dimension"]
        bodies = queries(2000, dim, 1)
        buf = io.BytesIO()
        np.save(buf, unit(args.job_queries, dim, 2))
        job_body = buf.getvalue()
        batch_body = json.dumps({"query_vectors": unit(1024, dim, 3).tolist(), "k": 10}).encode()
        measure(port, bodies, 2.0)  # warm-up
        lat: dict[str, list[list[float]]] = {"quiet": [], "job": [], "batch": []}
        rate: dict[str, list[float]] = {"job": [], "batch": []}
        for _ in range(args.rounds):
            lat["quiet"].append(measure(port, bodies, args.seconds))

            status, job = call(port, "POST", "/collections/default/jobs?k=10", job_body, "application/x-npy")
            if status != 202:
                raise SystemExit(f"job refused: {status} {job}")
            path = f"/collections/default/jobs/{job['id']}"
            while call(port, "GET", path)[1]["state"] == "queued":
                time.sleep(0.05)
            t0, d0 = time.perf_counter(), call(port, "GET", path)[1]["done"]
            lat["job"].append(measure(port, bodies, args.seconds))
            _, now = call(port, "GET", path)
            if now["state"] != "running":
                print(f"note: the job was {now['state']} before the phase ended; use more --job-queries")
            rate["job"].append((now["done"] - d0) / (time.perf_counter() - t0))
            call(port, "DELETE", path)

            stop, done = threading.Event(), [0]

            def batches() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                while not stop.is_set():
                    conn.request("POST", "/search/batch", body=batch_body, headers={"content-type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        done[0] += 1024
                conn.close()

            th = threading.Thread(target=batches)
            t0 = time.perf_counter()
            th.start()
            lat["batch"].append(measure(port, bodies, args.seconds))
            stop.set()
            th.join()
            rate["batch"].append(done[0] / (time.perf_counter() - t0))

        print(f"index {args.index}: {stats['total_vectors']} x {dim}, {stats['index_type']}; "
              f"{args.rounds} rounds of {args.seconds:.0f} s per condition")
        print(f"{'condition':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'searches':>9} {'background q/s':>15}")
        for name, rounds in lat.items():
            p = [statistics.median(pct(r, q) for r in rounds) for q in (50, 95, 99)]
            n = sum(len(r) for r in rounds)
            bg = f"{statistics.median(rate[name]):.0f}" if name in rate else "-"
            print(f"{name:<8} {p[0]:>8.3f} {p[1]:>8.3f} {p[2]:>8.3f} {n:>9} {bg:>15}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
