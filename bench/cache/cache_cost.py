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

With --redis, a `redis-server` (Debian's package; --redis-server names the binary) is started on
a free loopback port (no persistence, a temporary directory, stopped at the end), `cached` gets
--cache-url pointing at it, and a third server `peer` of the same index names the same Redis:
right after `cached`'s miss and hit, each query goes once to `peer`, whose memory has never seen
it, so it is answered from Redis (`x-vectorwise-cache-tier: redis`, the bytes checked equal to
`cached`'s). Reported beside the others: the Redis hit, and the miss with Redis configured (it
pays a Redis lookup before it searches).
Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vwserver import queries, start  # noqa: E402


def send(conn: http.client.HTTPConnection, body: bytes, tier: list[str | None] | None = None) -> tuple[float, str | None, bytes]:
    t = time.perf_counter()
    conn.request("POST", "/search", body=body, headers={"content-type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    ms = (time.perf_counter() - t) * 1e3
    if response.status != 200:
        raise SystemExit(f"search answered {response.status}: {answer[:200]!r}")
    if tier is not None:
        tier.append(response.getheader("x-vectorwise-cache-tier"))
    return ms, response.getheader("x-vectorwise-cache"), answer


def run_cached(port: int, bodies: list[bytes], peer: int | None = None) -> tuple[list[float], list[float], list[float], int]:
    """Each query twice, then once to `peer` (from Redis): (miss latencies, hit latencies,
    peer's Redis-hit latencies, peer answers that were not Redis hits)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    other = http.client.HTTPConnection("127.0.0.1", peer, timeout=30) if peer else None
    misses, hits, shared, not_shared = [], [], [], 0
    for body in bodies:
        ms, verdict, first = send(conn, body)
        if verdict != "miss":
            raise SystemExit(f"expected a miss, got {verdict}")
        misses.append(ms)
        ms, verdict, second = send(conn, body)
        if verdict != "hit" or second != first:
            raise SystemExit(f"expected a hit with the same answer, got {verdict}")
        hits.append(ms)
        if other is not None:
            tier: list[str | None] = []
            ms, verdict, third = send(other, body, tier)
            if verdict == "hit" and tier[0] == "redis":
                if third != first:
                    raise SystemExit("a Redis hit answered other bytes")
                shared.append(ms)
            else:
                not_shared += 1  # not written yet, or a tier backing off
    conn.close()
    if other is not None:
        other.close()
    return misses, hits, shared, not_shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(binary: str, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`redis-server` on a free loopback port, no persistence; returns once it answers PING."""
    if shutil.which(binary) is None:
        raise SystemExit(f"--redis: {binary} not found (apt-get install redis-server)")
    port = free_port()
    (work / "redis").mkdir()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(work / "redis")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit("redis-server did not start")


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
    ap.add_argument("--redis", action="store_true", help="also measure the shared tier (a Redis hit on a peer)")
    ap.add_argument("--redis-server", default="redis-server", help="the redis-server binary")
    ap.add_argument("--redis-timeout-ms", type=int, default=5, help="the servers' --cache-timeout-ms")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cache-cost-"))
    redis = start_redis(a.redis_server, work) if a.redis else None
    shared = ["--cache-url", f"redis://127.0.0.1:{redis[1]}/0", "--cache-timeout-ms", str(a.redis_timeout_ms)] if redis else []
    servers = {
        "cached": start(a.bin, a.index, work, "cached", shared),
        "off": start(a.bin, a.index, work, "off", ["--cache-bytes", "0"]),
    }
    if redis:
        servers["peer"] = start(a.bin, a.index, work, "peer", shared)
    names = ["miss", "hit", "off"] + (["redis"] if redis else [])
    peer_port = servers["peer"][1] if redis else None
    not_shared_total = 0
    client: dict[str, list[float]] = {n: [] for n in names}
    server: dict[str, list[float]] = {n: [] for n in names}
    try:
        warm = queries(200, a.dim, a.seed - 1)  # page cache, connections
        run_cached(servers["cached"][1], warm, peer_port)
        run_off(servers["off"][1], warm)
        seen = {name: server_latencies(log, 0)[1] for name, (_, _, log) in servers.items()}
        for r in range(a.rounds):
            bodies = queries(a.queries, a.dim, a.seed + r)
            order = ["cached", "off"] if r % 2 == 0 else ["off", "cached"]
            for name in order:
                port = servers[name][1]
                if name == "cached":
                    misses, hits, from_redis, not_shared = run_cached(port, bodies, peer_port)
                    client["miss"].append(statistics.median(misses))
                    client["hit"].append(statistics.median(hits))
                    if redis:
                        client["redis"].append(statistics.median(from_redis))
                        not_shared_total += not_shared
                else:
                    client["off"].append(statistics.median(run_off(port, bodies)))
            time.sleep(0.3)  # the last log lines
            lat, seen["cached"] = server_latencies(servers["cached"][2], seen["cached"])
            server["miss"].append(statistics.median(lat["miss"]))
            server["hit"].append(statistics.median(lat["hit"]))
            lat, seen["off"] = server_latencies(servers["off"][2], seen["off"])
            server["off"].append(statistics.median(lat["-"]))
            extra = ""
            if redis:
                lat, seen["peer"] = server_latencies(servers["peer"][2], seen["peer"])
                server["redis"].append(statistics.median(lat["hit"]))
                extra = f"; redis hit: client {client['redis'][-1]:.3f} ms, server {server['redis'][-1]:.3f} ms"
            print(f"round {r + 1}: client p50 hit {client['hit'][-1]:.3f} ms, miss {client['miss'][-1]:.3f} ms, "
                  f"no cache {client['off'][-1]:.3f} ms; server p50 hit {server['hit'][-1]:.3f} ms, "
                  f"miss {server['miss'][-1]:.3f} ms, no cache {server['off'][-1]:.3f} ms{extra}", flush=True)
        conn = http.client.HTTPConnection("127.0.0.1", servers["cached"][1], timeout=30)
        conn.request("GET", "/stats")
        cache = json.loads(conn.getresponse().read())["cache"]
        conn.close()
        if redis:
            conn = http.client.HTTPConnection("127.0.0.1", servers["peer"][1], timeout=30)
            conn.request("GET", "/stats")
            peer_cache = json.loads(conn.getresponse().read())["cache"]
            conn.close()
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        if redis:
            redis[0].terminate()
            redis[0].wait(30)
    med = {k: statistics.median(v) for k, v in client.items()}
    smed = {k: statistics.median(v) for k, v in server.items()}
    print(f"\n{a.rounds} rounds x {a.queries} queries, median of the rounds' p50:")
    print(f"  client p50: hit {med['hit']:.3f} ms, miss {med['miss']:.3f} ms, no cache {med['off']:.3f} ms "
          f"(hit / no cache {med['hit'] / med['off']:.2f})")
    print(f"  server p50: hit {smed['hit']:.3f} ms, miss {smed['miss']:.3f} ms, no cache {smed['off']:.3f} ms "
          f"(hit / no cache {smed['hit'] / smed['off']:.2f})")
    if redis:
        print(f"  redis hit (a peer, memory cold): client p50 {med['redis']:.3f} ms, server p50 {smed['redis']:.3f} ms "
              f"(redis hit / no cache: client {med['redis'] / med['off']:.2f}, server {smed['redis'] / smed['off']:.2f}); "
              f"{not_shared_total} peer answers were not Redis hits (not written yet, or a tier backing off "
              f"after failures: see the errors; not timed)")
        r = cache["redis"]
        print(f"  cached's redis tier: {r['hits']} hits, {r['misses']} misses, {r['errors']} errors, {r['writes']} writes; "
              f"peer's: {peer_cache['redis']['hits']} hits, {peer_cache['redis']['misses']} misses, "
              f"{peer_cache['redis']['errors']} errors")
    print(f"  cache: {cache['entries']} entries, {cache['bytes']} bytes ({cache['bytes'] / max(cache['entries'], 1):.0f} a entry), "
          f"{cache['hits']} hits, {cache['misses']} misses, {cache['saved_seconds']:.3f} s of search saved")


if __name__ == "__main__":
    main()
