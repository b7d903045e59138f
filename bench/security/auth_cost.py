#!/usr/bin/env python3
"""What API keys and rate limits cost a search: the same binary and index served twice,
open and with keys + rate limits, measured side by side in one run.

    python3 bench/security/auth_cost.py --bin target/release/vectorwise --index s100k.vwi

Two `vectorwise serve` processes on loopback, same index, each with its own data directory:
`open` (no keys, no limits) and `keyed` (a keys file of --keys keys made by `vectorwise keys
new`, the client's key the last line, so the constant-time comparison reads them all; search,
write and batch budgets of 1e6 a second, checked on every request but never refusing). A
sequential client (http.client, one keep-alive connection per server) sends the same fixed-seed
queries (`POST /search`, k 10, the default profile) to both, alternating which goes first each
round; each round's p50 of either is recorded, and the median over --rounds rounds reported,
from the client's clock and from the server's own access log (`latency_ms`, the time inside
the service, without the client and the socket). Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vwserver import queries, start  # noqa: E402


def run(port: int, bodies: list[bytes], headers: dict[str, str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for body in bodies:
        t = time.perf_counter()
        conn.request("POST", "/search", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        out.append((time.perf_counter() - t) * 1e3)
        if response.status != 200:
            raise SystemExit(f"search answered {response.status}")
    conn.close()
    return out


def server_latencies(log: Path, seen: int) -> tuple[list[float], int]:
    """The `latency_ms` of the /search lines after the first `seen` of them."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"path":"/search"' in line:
            found.append(json.loads(line)["fields"]["latency_ms"])
    return found[seen:], len(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/vectorwise")
    ap.add_argument("--index", required=True)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000, help="queries per server per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--keys", type=int, default=100, help="keys in the keyed server's file")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="auth-cost-"))
    lines = []
    key = ""
    for i in range(a.keys):
        made = subprocess.run([a.bin, "keys", "new", "--name", f"k{i}", "--role", "read"],
                              check=True, capture_output=True, text=True).stdout.splitlines()
        key = made[0]
        lines.append(made[1])
    (work / "keys.jsonl").write_text("\n".join(lines) + "\n")
    limits = ["--rate-limit-search", "1000000", "--rate-limit-write", "1000000", "--rate-limit-batch", "1000000"]
    # No answer cache: the rounds repeat their queries (bench/cache measures the cache).
    no_cache = dict(os.environ, VECTORWISE_CACHE_BYTES="0")
    servers = {
        "open": start(a.bin, a.index, work, "open", [], env=no_cache),
        "keyed": start(a.bin, a.index, work, "keyed", ["--api-keys-file", str(work / "keys.jsonl"), *limits], env=no_cache),
    }
    headers = {"content-type": "application/json"}
    auth = {**headers, "authorization": f"Bearer {key}"}
    bodies = queries(a.queries, a.dim, a.seed)
    try:
        for name, (_, port, _) in servers.items():  # warm-up: page cache, connections
            run(port, bodies[:200], auth if name == "keyed" else headers)
        seen = {name: server_latencies(log, 0)[1] for name, (_, _, log) in servers.items()}
        client = {name: [] for name in servers}
        server = {name: [] for name in servers}
        for r in range(a.rounds):
            order = ["open", "keyed"] if r % 2 == 0 else ["keyed", "open"]
            for name in order:
                _, port, log = servers[name]
                client[name].append(statistics.median(run(port, bodies, auth if name == "keyed" else headers)))
            for name, (_, _, log) in servers.items():
                time.sleep(0.3)  # the last log lines
                lat, seen[name] = server_latencies(log, seen[name])
                server[name].append(statistics.median(lat))
            print(f"round {r + 1}: client p50 open {client['open'][-1]:.3f} ms, keyed {client['keyed'][-1]:.3f} ms; "
                  f"server p50 open {server['open'][-1]:.3f} ms, keyed {server['keyed'][-1]:.3f} ms", flush=True)
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    med = {k: statistics.median(v) for k, v in client.items()}
    smed = {k: statistics.median(v) for k, v in server.items()}
    print(f"\n{a.rounds} rounds x {a.queries} queries per server, {a.keys} keys, median of the rounds' p50:")
    print(f"  client p50: open {med['open']:.3f} ms, keys + rate limits {med['keyed']:.3f} ms "
          f"({med['keyed'] - med['open']:+.3f} ms, {100 * (med['keyed'] / med['open'] - 1):+.1f} %)")
    print(f"  server p50: open {smed['open']:.3f} ms, keys + rate limits {smed['keyed']:.3f} ms "
          f"({smed['keyed'] - smed['open']:+.3f} ms)")


if __name__ == "__main__":
    main()
