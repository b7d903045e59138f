"""Searches while writers wait on the write backlog: 8 writers upsert 1000-point batches (64-d,
JSON) as fast as the server takes them into a collection `s` (seal_points 5000) while one
prober searches it every 20 ms; prints the prober's latency percentiles, the writes' statuses
and the collection's stall counters. Standard library only.

    VECTORWISE_WRITE_BACKLOG_POINTS=10000 vectorwise serve --data-dir D --port 8751 &
    python3 bench/ingest/stall_search.py 8751 20        # port, seconds
"""
import http.client, json, random, sys, threading, time, statistics
port = int(sys.argv[1]); secs = float(sys.argv[2]); dim = 64
def conn(): return http.client.HTTPConnection("127.0.0.1", port, timeout=60)
c = conn()
c.request("PUT", "/collections/s", body=json.dumps({"dimension": dim, "metric": "l2", "seal_points": 5000}), headers={"content-type": "application/json"}); c.getresponse().read()
rng = random.Random(1)
bodies = []
for b in range(40):
    pts = [{"id": b * 1000 + i, "vector": [rng.random() for _ in range(dim)]} for i in range(1000)]
    bodies.append(json.dumps({"points": pts}).encode())
stop = time.time() + secs
codes = {}
def writer(w):
    cc = conn(); i = w
    while time.time() < stop:
        cc.request("PUT", "/collections/s/points", body=bodies[i % len(bodies)], headers={"content-type": "application/json"})
        r = cc.getresponse(); r.read(); codes[r.status] = codes.get(r.status, 0) + 1; i += 8
threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
for t in threads: t.start()
lat = []; pc = conn(); q = json.dumps({"vector": [0.5] * dim, "k": 10}).encode()
time.sleep(1)
while time.time() < stop:
    t = time.perf_counter(); pc.request("POST", "/collections/s/search", body=q, headers={"content-type": "application/json"}); pc.getresponse().read(); lat.append((time.perf_counter() - t) * 1e3)
    time.sleep(0.02)
for t in threads: t.join()
pc.request("GET", "/collections/s"); st = json.loads(pc.getresponse().read())
lat.sort()
print(f"searches {len(lat)}: p50 {statistics.median(lat):.2f} p99 {lat[int(0.99*len(lat))]:.1f} max {lat[-1]:.1f} ms; writes {codes}; optimiser waited {st['optimiser'].get('writes_waited')} refused {st['optimiser'].get('writes_refused')}; points {st['points']}")
