#!/usr/bin/env python3
"""The service path's cost measured by a C client: `wrk` (one connection, one thread, requests
one after another) times `POST /search` with JSON and with `application/octet-stream` bodies
and the bare keep-alive `GET /`, and `vectorwise bench --index` times the same queries
in-process; what the service adds to a search is the search's p50 less the `GET /` p50 less
the engine's p50.

    python3 bench/binary/wrk_cost.py --bin target/release/vectorwise \
        --index 384=c100k-384.vwi --near 384=c100k-384.npy --passes 5

Why a second script beside binary_cost.py: that one's client is Python's http.client, whose
own work grows with the answer (it parses each response header with the `email` package and
reads the body in Python), so its "search less GET /" carries client time that is not the
service's. wrk parses with a C parser and sends pre-formatted requests.

One `vectorwise serve` per index (answer cache and recall monitor off), the queries as
binary_cost.py makes them (`--near`: rows of the data plus a little noise, fixed seeds), the
in-process figure from `vectorwise bench --index F --queries-file Q --profiles balanced
--split-queries` (a query split over the cores as the server runs it). Each pass runs the
in-process bench, GET /, JSON and octet-stream (--seconds each), in an order that rotates from
pass to pass; the median over passes of each p50 is reported, with the spread. Needs `wrk` (Debian: `apt-get
install wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from binary_cost import make_queries  # noqa: E402
from vwserver import start  # noqa: E402

LUA = r"""
local path, ctype, target = os.getenv("VW_BODIES"), os.getenv("VW_CTYPE"), os.getenv("VW_TARGET")
local lens = {}
for l in io.lines(path .. ".len") do lens[#lens + 1] = tonumber(l) end
local f = io.open(path, "rb"); local blob = f:read("*a"); f:close()
local reqs, pos = {}, 1
for i, n in ipairs(lens) do
    reqs[i] = wrk.format("POST", target, {["Content-Type"] = ctype}, blob:sub(pos, pos + n - 1))
    pos = pos + n
end
local i = 0
request = function()
    i = i % #reqs + 1
    return reqs[i]
end
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: float, script: Path | None, env: dict[str, str]) -> tuple[float, int]:
    """(p50 ms, requests) of one wrk run; refuses a run with any non-2xx answer."""
    cmd = ["wrk", "-t1", "-c1", f"-d{max(1, round(seconds))}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} {url} failed: {done.stderr or done.stdout}")
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(m.group(1)) * UNITS[m.group(2)], int(n.group(1))


def write_bodies(path: Path, bodies: list[bytes]) -> None:
    path.write_bytes(b"".join(bodies))
    Path(str(path) + ".len").write_text("".join(f"{len(b)}\n" for b in bodies))


def engine_p50(binary: str, index: str, queries: list[bytes], dim: int, work: Path) -> float:
    """The in-process p50 (ms) of the balanced profile on these queries, split as served."""
    q = work / "q.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (len(queries), dim)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    q.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"".join(queries))
    out = work / "bench.json"
    subprocess.run([binary, "bench", "--index", index, "--queries-file", str(q), "--profiles", "balanced",
                    "--split-queries", "--exact-queries", "10", "--out", str(out)],
                   check=True, capture_output=True)
    return json.loads(out.read_text())["results"][0]["latency_ms_p50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release/vectorwise")
    parser.add_argument("--index", action="append", required=True, metavar="LABEL=PATH")
    parser.add_argument("--near", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3, help="each wrk run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    near = dict(spec.split("=", 1) for spec in args.near)
    env = {**os.environ, "VECTORWISE_CACHE_BYTES": "0"}
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "bodies.lua"
        script.write_text(LUA)
        for i, spec in enumerate(args.index):
            label, path = spec.split("=", 1)
            proc, port, _ = start(args.bin, path, work, f"s{i}", ["--cache-bytes", "0"], env=env)
            try:
                url = f"http://127.0.0.1:{port}"
                with urllib.request.urlopen(f"{url}/stats") as r:
                    dim = json.loads(r.read())["dimension"]
                pairs = make_queries(args.queries, dim, 4242 + dim, near.get(label))
                write_bodies(work / "json", [j for j, _ in pairs])
                write_bodies(work / "octet", [b for _, b in pairs])
                raw = [b for _, b in pairs]
                runs = {
                    "engine": lambda: (engine_p50(args.bin, path, raw, dim, work), 0),
                    "GET /": lambda: wrk(f"{url}/", args.seconds, None, env),
                    "JSON": lambda: wrk(f"{url}/search", args.seconds, script,
                                        {**env, "VW_BODIES": str(work / "json"), "VW_CTYPE": "application/json",
                                         "VW_TARGET": "/search"}),
                    "octet": lambda: wrk(f"{url}/search?k=10", args.seconds, script,
                                         {**env, "VW_BODIES": str(work / "octet"),
                                          "VW_CTYPE": "application/octet-stream", "VW_TARGET": "/search?k=10"}),
                }
                names = list(runs)
                runs["JSON"]()  # warm-up: every body once at least
                got: dict[str, list[float]] = {n: [] for n in names}
                for p in range(args.passes):
                    for name in names[p % 4:] + names[:p % 4]:
                        got[name].append(runs[name]()[0])
                rows.append((label, got))
            finally:
                proc.terminate()
                proc.wait()
    load_after = os.getloadavg()
    print(f"wrk -t1 -c1, {args.passes} passes x {args.seconds} s per request kind, {args.queries} queries cycled, "
          f"k = 10, balanced (the default), cache and monitor off; p50 ms, median [min-max] over passes")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores)")
    print(f"{'index':>7} {'engine (in-process)':>20} {'GET /':>20} {'JSON':>20} {'octet-stream':>20} | "
          f"{'added: JSON':>11} {'octet':>7}")
    for label, got in rows:
        med = {n: statistics.median(v) for n, v in got.items()}

        def cell(n: str) -> str:
            return f"{med[n]:.3f} [{min(got[n]):.3f}-{max(got[n]):.3f}]"

        engine = med["engine"]
        print(f"{label:>7} {cell('engine'):>20} {cell('GET /'):>20} {cell('JSON'):>20} {cell('octet'):>20} | "
              f"{med['JSON'] - med['GET /'] - engine:11.3f} {med['octet'] - med['GET /'] - engine:7.3f}")


if __name__ == "__main__":
    main()
