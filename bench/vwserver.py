"""What the HTTP cost scripts share (bench/security/auth_cost.py, bench/cache/cache_cost.py):
starting the release binary on an index, and random search bodies."""

from __future__ import annotations

import http.client
import json
import math
import random
import subprocess
import time
from pathlib import Path


def start(binary: str, index: str, work: Path, name: str, extra: list[str],
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`vectorwise serve` on `index` on a free port, JSON logs in work/name.log, the recall monitor
    off; returns once `GET /` answers 200: (process, port, log path)."""
    log = work / f"{name}.log"
    cmd = [binary, "serve", "--index", index, "--data-dir", str(work / name), "--host", "127.0.0.1",
           "--port", "0", "--log-format", "json", "--monitor-sample-rate", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("fields", {}).get("message") == "listening":
                port = int(entry["fields"]["address"].rsplit(":", 1)[1])
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                while time.time() < deadline:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        conn.close()
                        return proc, port, log
                    time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"{name} server exited: {log.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"{name} server not ready in 120 s")


def queries(n: int, dim: int, seed: int) -> list[bytes]:
    """`n` `POST /search` bodies of random unit vectors, k = 10."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(n):
        v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        norm = math.sqrt(sum(x * x for x in v))
        bodies.append(json.dumps({"query_vector": [x / norm for x in v], "k": 10}).encode())
    return bodies
