#!/usr/bin/env python3
"""What the hot-query cache saves and costs: cache hits, misses and searches without a cache,
through HTTP, side by side in one run.

    python3 bench/cache/cache_cost.py --bin target/release/vectorwise --index s100k.vwi

Two `vectorwise serve` processes on loopback, same index, each with its own data directory:
`cached` (the default --cache-bytes, 64 MiB) and `off` (--cache-bytes 0). Each round makes
--queries fresh fixed-seed queries (`POST /search`, k 10, the default profile; none repeats
another round's) and a sequential client (http.client, one keep-alive connection per server)
sends each query twice in a row to `cached` (a miss, which searches and keeps the answer, then
a hit; the `x-vectorwise-cache` header is checked) and once to `off` (a plain search), the two
servers alternating which goes first each round. Each round's p50 of the three is recorded and
the median over --rounds rounds reported, from the client's clock and from the server's own
access log (`latency_ms`, the time inside the service; its `cache` field tells hits from misses). The recall monitor is off in both.
Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vwserver import queries, start  # noqa: E402


def send(conn: http.client.HTTPConnection, body: bytes) -> tuple[float, str | None, bytes]:
    t = time.perf_counter()
    conn.request("POST", "/search", body=body, headers={"content-type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    ms = (time.perf_counter() - t) * 1e3
    if response.status != 200:
        raise SystemExit(f"search answered {response.status}: {answer[:200]!r}")
    return ms, response.getheader("x-vectorwise-cache"), answer


def run_cached(port: int, bodies: list[bytes]) -> tuple[list[float], list[float]]:
    """Each query twice: (miss latencies, hit latencies)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    misses, hits = [], []
    for body in bodies:
        ms, verdict, first = send(conn, body)
        if verdict != "miss":
            raise SystemExit(f"expected a miss, got {verdict}")
        misses.append(ms)
        ms, verdict, second = send(conn, body)
        if verdict != "hit" or second != first:
            raise SystemExit(f"expected a hit with the same answer, got {verdict}")
        hits.append(ms)
    conn.close()
    return misses, hits


def run_off(port: int, bodies: list[bytes]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for body in bodies:
        ms, verdict, _ = send(conn, body)
        if verdict is not None:
            raise SystemExit(f"a cache-less server said {verdict}")
        out.append(ms)
    conn.close()
    return out


def server_latencies(log: Path, seen: int) -> tuple[dict[str, list[float]], int]:
    """The `latency_ms` of the /search lines after the first `seen` of them, by the line's
    `cache` field (`hit`, `miss`, or `-` when the cache is off)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"path":"/search"' in line:
            fields = json.loads(line)["fields"]
            found.append((fields.get("cache", "-"), fields["latency_ms"]))
    by: dict[str, list[float]] = {}
    for verdict, ms in found[seen:]:
        by.setdefault(verdict, []).append(ms)
    return by, len(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/vectorwise")
    ap.add_argument("--index", required=True)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000, help="distinct queries per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cache-cost-"))
    servers = {
        "cached": start(a.bin, a.index, work, "cached", []),
        "off": start(a.bin, a.index, work, "off", ["--cache-bytes", "0"]),
    }
    names = ["miss", "hit", "off"]
    client: dict[str, list[float]] = {n: [] for n in names}
    server: dict[str, list[float]] = {n: [] for n in names}
    try:
        warm = queries(200, a.dim, a.seed - 1)  # page cache, connections
        run_cached(servers["cached"][1], warm)
        run_off(servers["off"][1], warm)
        seen = {name: server_latencies(log, 0)[1] for name, (_, _, log) in servers.items()}
        for r in range(a.rounds):
            bodies = queries(a.queries, a.dim, a.seed + r)
            order = ["cached", "off"] if r % 2 == 0 else ["off", "cached"]
            for name in order:
                port = servers[name][1]
                if name == "cached":
                    misses, hits = run_cached(port, bodies)
                    client["miss"].append(statistics.median(misses))
                    client["hit"].append(statistics.median(hits))
                else:
                    client["off"].append(statistics.median(run_off(port, bodies)))
            time.sleep(0.3)  # the last log lines
            lat, seen["cached"] = server_latencies(servers["cached"][2], seen["cached"])
            server["miss"].append(statistics.median(lat["miss"]))
            server["hit"].append(statistics.median(lat["hit"]))
            lat, seen["off"] = server_latencies(servers["off"][2], seen["off"])
            server["off"].append(statistics.median(lat["-"]))
            print(f"round {r + 1}: client p50 hit {client['hit'][-1]:.3f} ms, miss {client['miss'][-1]:.3f} ms, "
                  f"no cache {client['off'][-1]:.3f} ms; server p50 hit {server['hit'][-1]:.3f} ms, "
                  f"miss {server['miss'][-1]:.3f} ms, no cache {server['off'][-1]:.3f} ms", flush=True)
        conn = http.client.HTTPConnection("127.0.0.1", servers["cached"][1], timeout=30)
        conn.request("GET", "/stats")
        cache = json.loads(conn.getresponse().read())["cache"]
        conn.close()
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    med = {k: statistics.median(v) for k, v in client.items()}
    smed = {k: statistics.median(v) for k, v in server.items()}
    print(f"\n{a.rounds} rounds x {a.queries} queries, median of the rounds' p50:")
    print(f"  client p50: hit {med['hit']:.3f} ms, miss {med['miss']:.3f} ms, no cache {med['off']:.3f} ms "
          f"(hit / no cache {med['hit'] / med['off']:.2f})")
    print(f"  server p50: hit {smed['hit']:.3f} ms, miss {smed['miss']:.3f} ms, no cache {smed['off']:.3f} ms "
          f"(hit / no cache {smed['hit'] / smed['off']:.2f})")
    print(f"  cache: {cache['entries']} entries, {cache['bytes']} bytes ({cache['bytes'] / max(cache['entries'], 1):.0f} a entry), "
          f"{cache['hits']} hits, {cache['misses']} misses, {cache['saved_seconds']:.3f} s of search saved")


if __name__ == "__main__":
    main()
