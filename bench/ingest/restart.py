"""Restart after SIGKILL with a large sealed collection and a long log tail.

    python bench/ingest/restart.py --bin target/release/vectorwise --sealed 1000000 --tail 100000

Starts `vectorwise serve` on a fresh data directory, writes --sealed points
into a collection whose seal_points is above --tail, waits until all are in
sealed segments, writes --tail more (they stay in the write-ahead log and
the mutable segment), kills the server with SIGKILL, starts it again and
times: process start to listening, to the first answered search of the
collection, and the point count it reports. Prints one JSON line.
"""
import argparse, http.client, json, os, signal, subprocess, tempfile, threading, time
import numpy as np
import orjson

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="target/release/vectorwise")
ap.add_argument("--sealed", type=int, default=1_000_000)
ap.add_argument("--tail", type=int, default=100_000)
ap.add_argument("--dim", type=int, default=128)
a = ap.parse_args()
work = tempfile.mkdtemp(prefix="vw-restart-")
subprocess.run([a.bin, "generate", "--n", "1000", "--dim", "8", "--out", f"{work}/v.npy"], check=True, capture_output=True)
subprocess.run([a.bin, "build", "--vectors", f"{work}/v.npy", "--out", f"{work}/i.vwi"], check=True, capture_output=True)

def start():
    t = time.perf_counter()
    log = open(f"{work}/serve.log", "a")
    p = subprocess.Popen([a.bin, "serve", "--index", f"{work}/i.vwi", "--data-dir", f"{work}/data", "--host", "127.0.0.1",
                          "--port", "0", "--log-format", "json"], stdout=log, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if '"listening"' in line:
            port = int(json.loads(line)["fields"]["address"].rsplit(":", 1)[1])
            # Keep reading its log (one line a request), or the server blocks on a full pipe.
            threading.Thread(target=lambda: [log.write(l) for l in p.stderr], daemon=True).start()
            return p, port, time.perf_counter() - t, t

def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request(method, path, body=None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
              headers={"content-type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")

rng = np.random.default_rng(3)
centres = rng.standard_normal((64, a.dim)).astype(np.float32)
def points(lo, hi):
    x = centres[rng.integers(0, 64, hi - lo)] + 0.3 * rng.standard_normal((hi - lo, a.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return [{"id": i, "vector": v, "payload": {"n": i}} for i, v in zip(range(lo, hi), x)]

p, port, _, _ = start()
# The first --sealed points fill the mutable segment exactly once: frozen and
# sealed as one segment; the tail stays in memory and the log.
seal = a.sealed
assert call(port, "PUT", "/collections/r", {"dimension": a.dim, "metric": "cosine", "seal_points": seal})[0] == 201
def upsert(lo, hi):
    # A fresh connection: the last one idled past the server's header timeout.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for s in range(lo, hi, 1000):
        c.request("PUT", "/collections/r/points", body=orjson.dumps({"points": points(s, min(hi, s + 1000))}, option=orjson.OPT_SERIALIZE_NUMPY),
                  headers={"content-type": "application/json"})
        r = c.getresponse(); r.read(); assert r.status == 200
upsert(0, a.sealed)
while True:
    info = call(port, "GET", "/collections/r")[1]
    mem = sum(s["points"] for s in info["segments"] if s["kind"] != "sealed")
    if mem == 0 and info["optimiser"]["state"] == "idle":
        break
    time.sleep(0.5)
sealed_before = sum(s["points"] for s in info["segments"] if s["kind"] == "sealed")
upsert(a.sealed, a.sealed + a.tail)
info = call(port, "GET", "/collections/r")[1]
p.send_signal(signal.SIGKILL); p.wait()
p, port, listen_s, t0 = start()
q = np.ones(a.dim, np.float32)
while True:
    st, js = call(port, "POST", "/collections/r/search", {"vector": q, "k": 10})
    if st == 200:
        break
    time.sleep(0.01)
first_search_s = time.perf_counter() - t0
after = call(port, "GET", "/collections/r")[1]
p.send_signal(signal.SIGTERM); p.wait()
print(json.dumps({"sealed_points": sealed_before, "wal_points_at_kill": sum(s["points"] for s in info["segments"] if s["kind"] != "sealed"),
                  "wal_bytes_at_kill": info["wal_bytes"], "listening_s": round(listen_s, 3), "first_search_s": round(first_search_s, 3),
                  "points_after_restart": after["points"], "expected_points": a.sealed + a.tail}))
