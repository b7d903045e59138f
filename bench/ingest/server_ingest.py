"""VectorWise's own write path over HTTP, measured from one Python process.

    VECTORWISE_CACHE_BYTES=0 vectorwise serve --data-dir DIR ...   # no answer cache
    python bench/ingest/server_ingest.py --url http://127.0.0.1:8000 --n 1000000 [--body form]

Makes N x D clustered unit vectors (64 Gaussian clusters, seed 1) with three
payload fields, encodes every batch body first (orjson, f32 shortest form), so
the clock measures the server: upserts of --batch points over one keep-alive
connection, while a second connection searches (balanced profile) and times
it. Then waits until the optimiser is idle, times the same searches at rest,
measures recall@10 against exact numpy truth, deletes --delete-share of the
points, waits again and measures recall of what is left. Prints one JSON line.
"""
import argparse, http.client, json, threading, time, urllib.parse
import numpy as np
import orjson

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--n", type=int, default=1_000_000)
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--batch", type=int, default=1000)
ap.add_argument("--collection", default="ingest")
ap.add_argument("--seal-points", type=int, default=None)
ap.add_argument("--queries", type=int, default=300)
ap.add_argument("--delete-share", type=float, default=0.3)
ap.add_argument("--rate", type=float, default=0, help="points/s to send at (0: as fast as the server takes them)")
ap.add_argument("--body", choices=["json", "form"], default="json",
                help="upserts as JSON, or as multipart/form-data with the vectors in raw float32")
ap.add_argument("--exit-after-writes", action="store_true",
                help="print the ingest figures and exit at the last write's 200 (then SIGKILL the server to keep "
                     "the collection as the last write left it, for `vectorwise search --collection`)")
a = ap.parse_args()
u = urllib.parse.urlparse(a.url)
C = f"/collections/{a.collection}"

def conn():
    return http.client.HTTPConnection(u.hostname, u.port, timeout=600)

BOUNDARY = b"vw-ingest-5e0c2b1d"
# Searches answered by the server's answer cache: the same queries repeat, so
# a server with its cache on times the cache, not the search. Start it with
# VECTORWISE_CACHE_BYTES=0; a run that met the cache says so and fails.
CACHE_HITS = [0]
# Upserts refused with 503 because the optimiser was behind (then retried).
REFUSED = [0]
FORM = "multipart/form-data; boundary=" + BOUNDARY.decode()

def call(c, method, path, body=None, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
    for attempt in (0, 1):
        try:
            c.request(method, path, body=data, headers={"content-type": content_type})
            r = c.getresponse()
            raw = r.read()
            break
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # An idle keep-alive connection closed by the server's header
            # timeout: reconnect once.
            c.close()
            if attempt:
                raise
    if r.getheader("x-vectorwise-cache") == "hit":
        CACHE_HITS[0] += 1
    return r.status, (json.loads(raw) if raw else None)

rng = np.random.default_rng(1)
centres = rng.standard_normal((64, a.dim)).astype(np.float32)
x = centres[rng.integers(0, 64, a.n)] + 0.3 * rng.standard_normal((a.n, a.dim)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
q = centres[rng.integers(0, 64, a.queries)] + 0.3 * rng.standard_normal((a.queries, a.dim)).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
def form(lo, hi):
    parts = [(b"ids", b"application/json", orjson.dumps(list(range(lo, hi)))),
             (b"vectors", b"application/octet-stream", np.ascontiguousarray(x[lo:hi], dtype="<f4").tobytes()),
             (b"payloads", b"application/json", orjson.dumps([{"tag": f"t{i % 100}", "price": (i % 1000) / 10, "n": i} for i in range(lo, hi)]))]
    out = b"".join(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\nContent-Type: ' + ctype
                   + b"\r\n\r\n" + data + b"\r\n" for name, ctype, data in parts)
    return out + b"--" + BOUNDARY + b"--\r\n"

bodies = []
for s in range(0, a.n, a.batch):
    if a.body == "form":
        bodies.append(form(s, min(a.n, s + a.batch)))
        continue
    pts = [{"id": i, "vector": x[i], "payload": {"tag": f"t{i % 100}", "price": (i % 1000) / 10, "n": i}} for i in range(s, min(a.n, s + a.batch))]
    bodies.append(orjson.dumps({"points": pts}, option=orjson.OPT_SERIALIZE_NUMPY))

def truth(live):
    ids = np.flatnonzero(live)
    out = []
    for v in q:
        d = x[ids] @ v
        out.append(set(ids[np.argpartition(-d, 10)[:10]].tolist()))
    return out

def searches(c, stop=None):
    lat, found = [], []
    while True:
        for v in q:
            t = time.perf_counter()
            st, js = call(c, "POST", f"{C}/search", {"vector": v, "k": 10})
            lat.append(time.perf_counter() - t)
            found.append([h["id"] for h in js["hits"]])
            if stop is not None and stop.is_set():
                return lat, found
        if stop is None:
            return lat, found

def wait_idle(c):
    """Until the optimiser has been idle, with the same segments, for 2 s
    (a lane is briefly idle between two steps)."""
    t = time.time()
    calm, last = 0, None
    while True:
        st, info = call(c, "GET", C)
        shape = [(g["id"], g["kind"]) for g in info["segments"]]
        quiet = not any(g["kind"] == "frozen" for g in info["segments"]) and info["optimiser"]["state"] == "idle"
        calm = calm + 1 if quiet and shape == last else 0
        last = shape
        if calm >= 10:
            return time.time() - t - 2.0, info
        time.sleep(0.2)

def recall(found, want):
    return float(np.mean([len(set(f) & w) / 10 for f, w in zip(found, want)]))

c, s = conn(), conn()
body = {"dimension": a.dim, "metric": "cosine"}
if a.seal_points:
    body["seal_points"] = a.seal_points
print(call(c, "PUT", C, body)[0])
stop = threading.Event()
during = {}
t = threading.Thread(target=lambda: during.update(r=searches(s, stop)))
t.start()
t0 = time.perf_counter()
for k, b in enumerate(bodies):
    if a.rate:
        ahead = t0 + k * a.batch / a.rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    while True:
        st, js = call(c, "PUT", f"{C}/points", b, FORM if a.body == "form" else "application/json")
        if st != 503:
            break
        # The optimiser stayed behind past the server's wait (--write-backlog-points):
        # nothing was written; retry after its Retry-After, as the Python client does.
        REFUSED[0] += 1
        time.sleep(1)
    assert st == 200, (st, js)
ingest_s = time.perf_counter() - t0
stop.set(); t.join()
if a.exit_after_writes:
    print(json.dumps({"n": a.n, "ingest_points_per_s": round(a.n / ingest_s), "refused_503": REFUSED[0]}), flush=True)
    raise SystemExit(0)
# After the last write: search p50 over successive windows, while the
# optimiser seals and merges what the ingest left (searches "at full indexed
# speed within seconds of the last write"?).
after, t_last = [], time.perf_counter()
# A third connection watches the optimiser (4 polls a second): the last time
# it was busy, or the segment list changed, is when it settled.
busy_until, watching = [0.0], threading.Event()
def watch():
    w, shape = conn(), None
    while not watching.is_set():
        st, info = call(w, "GET", C)
        now = time.perf_counter() - t_last
        new_shape = [(g["id"], g["kind"]) for g in info["segments"]]
        if any(g["kind"] == "frozen" for g in info["segments"]) or info["optimiser"]["state"] != "idle" or new_shape != shape:
            busy_until[0] = now
        shape = new_shape
        time.sleep(0.25)
watcher = threading.Thread(target=watch)
watcher.start()
for window in (2, 5, 10, 20, 40):
    lat = []
    while time.perf_counter() - t_last < window:
        for v in q[:50]:
            t1 = time.perf_counter()
            call(s, "POST", f"{C}/search", {"vector": v, "k": 10})
            lat.append(time.perf_counter() - t1)
    after.append((window, round(1000 * float(np.median(lat)), 3)))
watching.set(); watcher.join()
idle_s, info = wait_idle(c)
# Settled within the 40 s of windows: when the watcher last saw it busy;
# else 40 s plus the wait.
idle_s = busy_until[0] if idle_s <= 0.5 and busy_until[0] < 39 else idle_s + 40
rest_lat, rest_found = searches(s)
live = np.ones(a.n, bool)
want = truth(live)
drop = rng.choice(a.n, int(a.delete_share * a.n), replace=False)
for i in range(0, len(drop), 10_000):
    assert call(c, "POST", f"{C}/points/delete", {"ids": drop[i:i + 10_000]})[0] == 200
live[drop] = False
idle2_s, info2 = wait_idle(c)
_, del_found = searches(s)
p50 = lambda l: 1000 * float(np.median(l))
print(json.dumps({
    "n": a.n, "dim": a.dim, "batch": a.batch, "body": a.body, "rate_asked": a.rate, "points_per_s": round(a.n / ingest_s),
    "search_p50_ms_during_ingest": round(p50(during["r"][0]), 3), "searches_during_ingest": len(during["r"][0]),
    "optimiser_idle_after_s": round(idle_s, 1),
    "search_p50_ms_after_last_write_by_window_s": after, "segments": [(g["kind"], g["points"], g["method"]) for g in info["segments"]],
    "search_p50_ms_at_rest": round(p50(rest_lat), 3), "recall_at_10_at_rest": round(recall(rest_found, want), 4),
    "deleted": len(drop), "optimiser_idle_after_delete_s": round(idle2_s, 1),
    "recall_at_10_after_delete": round(recall(del_found, truth(live)), 4),
    "segments_after_delete": [(g["kind"], g["points"], g["deleted"], g["method"]) for g in info2["segments"]],
    "cache_hits": CACHE_HITS[0], "upserts_refused_behind": REFUSED[0],
}))
if CACHE_HITS[0]:
    raise SystemExit(f"{CACHE_HITS[0]} searches were answered by the answer cache: start the server with VECTORWISE_CACHE_BYTES=0")
