#!/usr/bin/env python3
"""Ingest / reopen / crash benchmark for embedded vector databases (see README.md here).

The parent process makes the data and the exact truth once, then runs every step of every
peer in a fresh child process (`ingest.py _child ...`), one peer at a time:

  main    create the database, ingest in batches (points/s), build the index when the peer
          has an explicit step (timed), search the queries one by one (recall@k, p50/p95)
  strace  a few batches under `strace -f`: does each call fsync/fdatasync/msync(MS_SYNC)
          before it returns? (observed durability at return)
  reopen  a new process opens the database made by `main`: time to the first answered query
  crash   a new database, a child ingesting and printing each acknowledged batch, SIGKILL
          to its whole process group at a random moment, then `verify` in a new process:
          every acknowledged id must be there

VectorWise is driven over HTTP (its server is a separate process), so its steps run in the
parent with http.client keep-alive connections.
"""
import argparse
import http.client
import json

import orjson
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PY_PEERS = ["qdrant-edge", "lancedb", "chromadb", "milvus-lite"]
ALL_PEERS = PY_PEERS + ["vectorwise"]
COLL = "bench"


# --------------------------------------------------------------------------- data

def make_data(n, nq, dim, seed, clusters=64, spread=0.6):
    """n + nq unit vectors from `clusters` Gaussian clusters; payload columns for the n."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    total = n + nq
    lab = rng.integers(0, clusters, total)
    x = centres[lab] + rng.standard_normal((total, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float32)
    tag = rng.integers(0, 100, n).astype(np.int16)
    price = np.round(rng.uniform(1, 1000, n), 2)
    nval = rng.integers(0, 1_000_000, n).astype(np.int64)
    return x[:n].copy(), x[n:].copy(), tag, price, nval


def exact_truth(base, queries, k):
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 100):
        sims = queries[s:s + 100] @ base.T  # unit vectors: cosine similarity
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[s:s + 100] = np.take_along_axis(part, order, 1)
    return out


class Data:
    def __init__(self, d):
        d = Path(d)
        self.base = np.load(d / "base.npy", mmap_mode="r")
        self.queries = np.load(d / "queries.npy")
        self.truth = np.load(d / "truth.npy")
        self.tag = np.load(d / "tag.npy")
        self.price = np.load(d / "price.npy")
        self.nval = np.load(d / "n.npy")
        self.n, self.dim = self.base.shape

    def payloads(self, lo, hi):
        return [{"tag": "tag%02d" % self.tag[i], "price": float(self.price[i]), "n": int(self.nval[i])}
                for i in range(lo, hi)]

    def batches(self, batch):
        for lo in range(0, self.n, batch):
            hi = min(self.n, lo + batch)
            yield lo, hi, np.asarray(self.base[lo:hi])


# --------------------------------------------------------------------------- peers (embedded)

class QdrantEdge:
    name = "qdrant-edge"
    index_step = "EdgeShard.optimize() (builds HNSW on segments over the indexing threshold)"
    settings = "Distance.Cosine, defaults otherwise (HNSW m=16, ef_construct=100, WAL on)"

    def __init__(self):
        import qdrant_edge as q
        self.q = q

    def create(self, path, dim):
        q = self.q
        cfg = q.EdgeConfig(vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine))
        self.s = q.EdgeShard.create(str(path), cfg)

    def open(self, path, dim):
        self.s = self.q.EdgeShard.load(str(path))

    def insert(self, lo, hi, vecs, payloads):
        q = self.q
        pts = [q.Point(i, v, p) for i, v, p in zip(range(lo, hi), vecs.tolist(), payloads)]
        self.s.update(q.UpdateOperation.upsert_points(pts))

    def build_index(self):
        changed = self.s.optimize()
        info = self.s.info()
        return {"optimized": changed, "segments": info.segments_count,
                "indexed_vectors": info.indexed_vectors_count}

    def search(self, qv, k):
        q = self.q
        r = self.s.query(q.QueryRequest(limit=k, query=q.Query.Nearest(qv.tolist()),
                                        with_payload=False, with_vector=False))
        return [p.id for p in r]

    def present(self, ids):
        got = set()
        for s in range(0, len(ids), 1000):
            got.update(r.id for r in self.s.retrieve([int(i) for i in ids[s:s + 1000]], False, False))
        return got

    def count(self):
        return self.s.info().points_count

    def close(self):
        self.s.close()


class LanceDB:
    name = "lancedb"
    index_step = "table.create_index(IvfHnswSq(distance_type='cosine'))"
    settings = "IVF_HNSW_SQ, default partitions/m/ef; search defaults; one add() per batch"

    def __init__(self):
        import lancedb
        import pyarrow as pa
        self.lancedb, self.pa = lancedb, pa

    def _schema(self, dim):
        pa = self.pa
        return pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), dim)),
                          pa.field("tag", pa.string()), pa.field("price", pa.float64()),
                          pa.field("n", pa.int64())])

    def create(self, path, dim):
        self.dim = dim
        self.db = self.lancedb.connect(str(path))
        self.t = self.db.create_table(COLL, schema=self._schema(dim))

    def open(self, path, dim):
        self.dim = dim
        self.db = self.lancedb.connect(str(path))
        self.t = self.db.open_table(COLL)

    def insert(self, lo, hi, vecs, payloads):
        pa = self.pa
        tb = pa.table({
            "id": pa.array(np.arange(lo, hi, dtype=np.int64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), self.dim),
            "tag": [p["tag"] for p in payloads],
            "price": [p["price"] for p in payloads],
            "n": [p["n"] for p in payloads],
        }, schema=self._schema(self.dim))
        self.t.add(tb)

    def build_index(self):
        from lancedb.index import IvfHnswSq
        self.t.create_index("vector", config=IvfHnswSq(distance_type="cosine"))
        idx = self.t.list_indices()
        return {"indices": [str(getattr(i, "index_type", i)) for i in idx]}

    def search(self, qv, k):
        qb = self.t.search(qv).distance_type("cosine").limit(k).select(["id"])
        if hasattr(qb, "disable_scoring_autoprojection"):
            qb = qb.disable_scoring_autoprojection()
        r = qb.to_arrow()
        return r.column("id").to_pylist()

    def present(self, ids):
        got = set()
        for s in range(0, len(ids), 1000):
            chunk = ", ".join(str(int(i)) for i in ids[s:s + 1000])
            r = self.t.search().where(f"id IN ({chunk})").select(["id"]).limit(2000).to_arrow()
            got.update(r.column("id").to_pylist())
        return got

    def count(self):
        return self.t.count_rows()

    def close(self):
        self.t = self.db = None


class Chroma:
    name = "chromadb"
    index_step = None
    settings = "PersistentClient, hnsw space=cosine, defaults otherwise (HNSW updated during add)"

    def __init__(self):
        import chromadb
        self.chromadb = chromadb

    def create(self, path, dim):
        self.c = self.chromadb.PersistentClient(path=str(path))
        self.col = self.c.create_collection(COLL, configuration={"hnsw": {"space": "cosine"}})

    def open(self, path, dim):
        self.c = self.chromadb.PersistentClient(path=str(path))
        self.col = self.c.get_collection(COLL)

    def insert(self, lo, hi, vecs, payloads):
        self.col.add(ids=[str(i) for i in range(lo, hi)], embeddings=vecs, metadatas=payloads)

    def build_index(self):
        return None

    def search(self, qv, k):
        r = self.col.query(query_embeddings=qv[None, :], n_results=k, include=[])
        return [int(i) for i in r["ids"][0]]

    def present(self, ids):
        got = set()
        for s in range(0, len(ids), 1000):
            r = self.col.get(ids=[str(int(i)) for i in ids[s:s + 1000]], include=[])
            got.update(int(i) for i in r["ids"])
        return got

    def count(self):
        return self.col.count()

    def close(self):
        try:
            self.c.close()
        except Exception:
            pass


class MilvusLite:
    name = "milvus-lite"
    index_step = "client.flush() then wait until describe_index reports every row indexed"
    settings = "MilvusClient(local .db), quick-setup collection: AUTOINDEX, COSINE, consistency Strong"

    def __init__(self):
        from pymilvus import MilvusClient
        self.MilvusClient = MilvusClient

    def create(self, path, dim):
        Path(path).mkdir(parents=True, exist_ok=True)
        self.c = self.MilvusClient(str(Path(path) / "milvus.db"))
        self.c.create_collection(COLL, dimension=dim, metric_type="COSINE", auto_id=False)

    def open(self, path, dim):
        self.c = self.MilvusClient(str(Path(path) / "milvus.db"))
        self.c.load_collection(COLL)

    def insert(self, lo, hi, vecs, payloads):
        rows = [dict(p, id=i, vector=v) for i, v, p in zip(range(lo, hi), vecs.tolist(), payloads)]
        self.c.insert(COLL, rows)

    def build_index(self):
        self.c.flush(COLL)
        name = self.c.list_indexes(COLL)[0]
        deadline = time.time() + 1800
        info = {}
        while time.time() < deadline:
            info = self.c.describe_index(COLL, name)
            if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= info.get("total_rows", 0):
                break
            time.sleep(0.2)
        return {k: info.get(k) for k in ("index_type", "indexed_rows", "total_rows", "pending_index_rows")}

    def search(self, qv, k):
        r = self.c.search(COLL, data=[qv.tolist()], limit=k, output_fields=["id"])
        return [h["id"] for h in r[0]]

    def present(self, ids):
        got = set()
        for s in range(0, len(ids), 1000):
            r = self.c.get(COLL, ids=[int(i) for i in ids[s:s + 1000]], output_fields=["id"])
            got.update(h["id"] for h in r)
        return got

    def count(self):
        r = self.c.query(COLL, filter="", output_fields=["count(*)"])
        return int(r[0]["count(*)"])

    def close(self):
        self.c.close()


PEER_CLASSES = {c.name: c for c in (QdrantEdge, LanceDB, Chroma, MilvusLite)}


# --------------------------------------------------------------------------- child process

def child_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--acked")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    peer = PEER_CLASSES[a.peer]()
    data = Data(a.data)
    import_s = time.perf_counter() - t_start
    res = {"import_s": import_s}

    def dump():
        if a.out:
            Path(a.out).write_text(json.dumps(res))

    if a.mode == "main":
        t0 = time.perf_counter()
        peer.create(a.dir, data.dim)
        res["create_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lat = []
        for lo, hi, v in data.batches(a.batch):
            pl = data.payloads(lo, hi)
            t1 = time.perf_counter()
            peer.insert(lo, hi, v, pl)
            lat.append(time.perf_counter() - t1)
        ingest_s = time.perf_counter() - t0
        res.update(ingest_s=ingest_s, points_per_s=data.n / ingest_s,
                   batch_p50_ms=1000 * float(np.median(lat)), batch_max_ms=1000 * float(np.max(lat)))
        t0 = time.perf_counter()
        info = peer.build_index()
        res["index_s"] = (time.perf_counter() - t0) if info is not None else None
        res["index_info"] = info
        res["count"] = peer.count()
        k = a.k
        lat, hits = [], 0
        for qi, qv in enumerate(data.queries):
            t1 = time.perf_counter()
            ids = peer.search(qv, k)
            lat.append(time.perf_counter() - t1)
            hits += len(set(int(i) for i in ids[:k]) & set(data.truth[qi, :k].tolist()))
        res.update(recall=hits / (k * len(data.queries)), p50_ms=1000 * float(np.median(lat)),
                   p95_ms=1000 * float(np.percentile(lat, 95)), nq=len(data.queries))
        t0 = time.perf_counter()
        peer.close()
        res["close_s"] = time.perf_counter() - t0
        dump()
    elif a.mode == "reopen":
        t0 = time.perf_counter()
        peer.open(a.dir, data.dim)
        res["open_s"] = time.perf_counter() - t0
        deadline, err, tries = time.perf_counter() + 300, None, 0
        while time.perf_counter() < deadline:
            tries += 1
            try:
                ids = peer.search(data.queries[0], a.k)
                if len(ids) == a.k:
                    break
                err = f"{len(ids)} hits"
            except Exception as e:  # not ready yet
                err = repr(e)
            time.sleep(0.05)
        else:
            res["error"] = f"no answer within 300 s: {err}"
        res["first_query_s"] = time.perf_counter() - t0
        res["tries"] = tries
        res["count"] = peer.count()
        peer.close()
        dump()
    elif a.mode == "crash":
        peer.create(a.dir, data.dim)
        print("READY", flush=True)
        for lo, hi, v in data.batches(a.batch):
            peer.insert(lo, hi, v, data.payloads(lo, hi))
            print(f"ACK {lo} {hi}", flush=True)
        print("DONE", flush=True)
        peer.close()
    elif a.mode == "strace":
        peer.create(a.dir, data.dim)
        marker = os.open(os.devnull, os.O_WRONLY)
        os.write(marker, b"@@START\n")
        for b, (lo, hi, v) in enumerate(data.batches(a.batch)):
            if b >= a.batches:
                break
            pl = data.payloads(lo, hi)
            os.write(marker, b"@@CALL %d\n" % b)
            peer.insert(lo, hi, v, pl)
            os.write(marker, b"@@ACK %d\n" % b)
        sys.stdout.flush()
        os._exit(0)  # no close(): syncs made at close are not syncs made by the calls
    elif a.mode == "verify":
        t0 = time.perf_counter()
        peer.open(a.dir, data.dim)
        res["open_s"] = time.perf_counter() - t0
        acked = np.load(a.acked)
        res["acked"] = int(len(acked))
        try:
            got = peer.present(acked)
        except Exception as e:  # the database opened but cannot read its points back
            res["read_error"] = repr(e)[:500]
            try:
                res["count"] = peer.count()
            except Exception as e2:
                res["count_error"] = repr(e2)[:300]
            dump()
            return
        res["lost"] = int(len(acked) - len(got & set(acked.tolist())))
        res["count"] = peer.count()
        peer.close()
        dump()


# --------------------------------------------------------------------------- parent: helpers

def run_child(mode, peer, cfg, ddir, timeout, extra=()):
    out = Path(cfg.work) / f"{peer}-{mode}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", mode, "--peer", peer,
           "--data", cfg.data_dir, "--dir", str(ddir), "--batch", str(cfg.batch), "--k", str(cfg.k),
           "--out", str(out), *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"{peer} {mode} failed (rc {p.returncode}): {p.stderr[-2000:]}")
    r = json.loads(out.read_text())
    r["process_wall_s"] = wall
    return r


SYNC_RE = re.compile(r"\b(fsync|fdatasync|msync|sync_file_range|syncfs|sync)\(")


def parse_strace(path):
    """Per call (between @@CALL i and @@ACK i): which durability syscalls were made."""
    calls, cur = [], None
    for line in open(path, errors="replace"):
        if "@@CALL" in line:
            cur = {"syncs": []}
        elif "@@ACK" in line:
            if cur is not None:
                calls.append(cur)
            cur = None
        elif cur is not None and "resumed>" not in line:
            m = SYNC_RE.search(line)
            if m:
                name = m.group(1)
                if name == "msync" and "MS_SYNC" not in line:
                    continue  # MS_ASYNC only schedules the write-back
                if name == "sync_file_range":
                    continue  # starts write-back, no durability (man 2 sync_file_range)
                cur["syncs"].append(name)
    synced = sum(1 for c in calls if c["syncs"])
    kinds = sorted({s for c in calls for s in c["syncs"]})
    per_call = float(np.mean([len(c["syncs"]) for c in calls])) if calls else 0.0
    return {"calls": len(calls), "calls_with_sync": synced, "sync_kinds": kinds,
            "syncs_per_call": per_call}


def strace_probe(peer, cfg):
    if not shutil.which("strace"):
        return {"skipped": "strace not installed"}
    ddir = Path(cfg.work) / f"{peer}-strace"
    trace = Path(cfg.work) / f"{peer}.strace"
    cmd = ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,msync,sync_file_range,syncfs,sync,write",
           "-e", "signal=none", "-s", "16", "-o", str(trace),
           sys.executable, str(Path(__file__).resolve()), "_child", "strace", "--peer", peer,
           "--data", cfg.data_dir, "--dir", str(ddir), "--batch", str(cfg.batch),
           "--batches", str(cfg.strace_batches)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, start_new_session=True)
    if p.returncode != 0:
        return {"error": p.stderr[-1500:]}
    r = parse_strace(trace)
    trace.unlink(missing_ok=True)
    shutil.rmtree(ddir, ignore_errors=True)
    return r


def crash_test(peer, cfg, est_ingest_s, rng):
    ddir = Path(cfg.work) / f"{peer}-crash"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", "crash", "--peer", peer,
           "--data", cfg.data_dir, "--dir", str(ddir), "--batch", str(cfg.batch)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    acked_hi, ready, done = [0], threading.Event(), threading.Event()
    acked_ranges = []

    def reader():
        for line in p.stdout:
            if line.startswith("READY"):
                ready.set()
            elif line.startswith("ACK "):
                _, lo, hi = line.split()
                acked_ranges.append((int(lo), int(hi)))
            elif line.startswith("DONE"):
                done.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    if not ready.wait(600):
        os.killpg(p.pid, signal.SIGKILL)
        return {"error": "child never became ready"}
    kill_after = rng.uniform(0.2, 0.8) * est_ingest_s
    finished = done.wait(kill_after)
    os.killpg(p.pid, signal.SIGKILL)  # the whole group: milvus-lite's server process too
    p.wait()
    th.join(5)
    acked = np.array([i for lo, hi in acked_ranges for i in range(lo, hi)], dtype=np.int64)
    apath = Path(cfg.work) / f"{peer}-acked.npy"
    np.save(apath, acked)
    res = {"kill_after_s": kill_after, "finished_before_kill": finished, "acked_batches": len(acked_ranges)}
    try:
        v = run_child("verify", peer, cfg, ddir, 1800, ["--acked", str(apath)])
        if v.get("read_error"):
            res["error"] = f"reopened, but reading the acked ids failed: {v['read_error']}"
            res.update(acked=v.get("acked"), count_after=v.get("count"), count_error=v.get("count_error"))
        else:
            res.update(acked=v["acked"], lost=v["lost"], count_after=v["count"], reopen_open_s=v["open_s"])
    except Exception as e:
        res["error"] = f"reopen after SIGKILL failed: {e}"
    shutil.rmtree(ddir, ignore_errors=True)
    return res


def default_vw_bin():
    own = REPO / "target/release/vectorwise"
    if own.exists():
        return str(own)
    try:  # a git worktree: look in the main work tree's target/
        common = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                capture_output=True, text=True, check=True).stdout.strip()
        return str(Path(common).parent / "target/release/vectorwise")
    except Exception:
        return str(own)


def pkg_versions():
    from importlib.metadata import version, PackageNotFoundError
    out = {}
    for p in ["numpy", "qdrant-edge-py", "lancedb", "pyarrow", "chromadb", "pymilvus", "milvus-lite"]:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


# --------------------------------------------------------------------------- VectorWise over HTTP

class VWSkip(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


FORM_BOUNDARY = b"vw-ingest-7d1c0b2e"


class VWClient:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def req(self, method, path, body=None, content_type="application/json"):
        # orjson writes numpy float32 rows directly, each value in its
        # shortest f32 form: what a Python user sending JSON would pick
        # (the standard library's json needs .tolist() and writes f64 reprs).
        # Bytes are sent as they are (a multipart body).
        data = body if body is None or isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        hdr = {"Content-Type": content_type} if data is not None else {}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=hdr)
                r = self.conn.getresponse()
                raw = r.read()
                try:
                    js = json.loads(raw) if raw else None
                except ValueError:
                    js = raw.decode(errors="replace")
                return r.status, js
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                if attempt:
                    raise


class VectorWise:
    name = "vectorwise"

    def __init__(self, cfg, body="form"):
        self.cfg = cfg
        self.bin = cfg.vw_bin
        self.proc = None
        self.body = body

    def check(self):
        if not Path(self.bin).exists():
            raise VWSkip(f"binary {self.bin} not found (cargo build --release -p vectorwise)")
        h = subprocess.run([self.bin, "serve", "--help"], capture_output=True, text=True).stdout
        if "--data-dir" not in h:
            raise VWSkip(f"{self.bin} serve has no --data-dir flag yet (collections API not in this build)")

    def prepare_demo_index(self):
        """A tiny demo index, so `serve` does not generate and build its 1M-point default."""
        d = Path(self.cfg.work) / "vw-demo"
        d.mkdir(exist_ok=True)
        vec, idx = d / "v.npy", d / "i.vwi"
        if not idx.exists():
            subprocess.run([self.bin, "generate", "--n", "1000", "--dim", str(self.cfg.dim), "--out", str(vec)],
                           check=True, capture_output=True)
            subprocess.run([self.bin, "build", "--vectors", str(vec), "--out", str(idx), "--metric", "cosine",
                            "--no-calibrate"], check=True, capture_output=True)
        return vec, idx

    def start(self, ddir, wrap=()):
        vec, idx = self.prepare_demo_index()
        self.port = free_port()
        env = dict(os.environ, VECTORWISE_WAL_SYNC="always", VECTORWISE_CACHE_BYTES="0")  # peers have no answer cache
        self.log = open(Path(self.cfg.work) / "vw-server.log", "a")
        self.proc = subprocess.Popen([*wrap, self.bin, "serve", "--data-dir", str(ddir), "--port", str(self.port),
                                      "--host", "127.0.0.1", "--index", str(idx), "--vectors", str(vec)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.cli = VWClient(self.port)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vectorwise serve exited with {self.proc.returncode} (see vw-server.log)")
            try:
                st, _ = self.cli.req("GET", "/collections")
                return st
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("vectorwise serve did not answer within 120 s")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def create(self):
        st, js = self.cli.req("PUT", f"/collections/{COLL}", {"dimension": self.cfg.dim, "metric": "cosine"})
        if st == 404:
            raise VWSkip("PUT /collections/{name} answers 404: collections routes not in this build")
        if st not in (200, 201):
            raise RuntimeError(f"create collection: {st} {js}")

    def upsert(self, data, lo, hi, vecs, cli=None):
        if self.body == "form":
            # multipart/form-data: ids and payloads as JSON parts, the vectors
            # as raw little-endian float32 (what the Python client sends).
            parts = [(b"ids", b"application/json", orjson.dumps(list(range(lo, hi)))),
                     (b"vectors", b"application/octet-stream", np.ascontiguousarray(vecs, dtype="<f4").tobytes()),
                     (b"payloads", b"application/json", orjson.dumps(data.payloads(lo, hi), option=orjson.OPT_SERIALIZE_NUMPY))]
            body = b"".join(b"--" + FORM_BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"" + name
                            + b"\"\r\nContent-Type: " + ctype + b"\r\n\r\n" + part + b"\r\n" for name, ctype, part in parts)
            body += b"--" + FORM_BOUNDARY + b"--\r\n"
            st, js = (cli or self.cli).req("PUT", f"/collections/{COLL}/points", body,
                                           content_type="multipart/form-data; boundary=" + FORM_BOUNDARY.decode())
        else:
            pts = [{"id": i, "vector": v, "payload": p}
                   for i, v, p in zip(range(lo, hi), vecs, data.payloads(lo, hi))]
            st, js = (cli or self.cli).req("PUT", f"/collections/{COLL}/points", {"points": pts})
        if st != 200:
            raise RuntimeError(f"upsert {lo}..{hi}: {st} {str(js)[:300]}")

    def search(self, qv, k, cli=None):
        st, js = (cli or self.cli).req("POST", f"/collections/{COLL}/search", {"vector": qv, "k": k})
        if st != 200:
            raise RuntimeError(f"search: {st} {str(js)[:300]}")
        return [h["id"] for h in js["hits"]]

    def info(self):
        st, js = self.cli.req("GET", f"/collections/{COLL}")
        return js if st == 200 else {"status": st}

    def present(self, ids):
        got = set()
        for s in range(0, len(ids), 1000):
            st, js = self.cli.req("POST", f"/collections/{COLL}/points/get",
                                  {"ids": [int(i) for i in ids[s:s + 1000]], "with_vector": False,
                                   "with_payload": False})
            if st != 200:
                raise RuntimeError(f"points/get: {st} {str(js)[:300]}")
            got.update(p["id"] for p in js["points"])
        return got

    def wait_optimiser(self, timeout=1800):
        """No explicit index step in the API: wait until the optimiser reports nothing to do."""
        t0 = time.perf_counter()
        info = self.info()
        while time.perf_counter() - t0 < timeout:
            opt = info.get("optimiser") or {}
            state = str(opt.get("state", "idle")).lower()
            busy = state not in ("idle", "ready", "done", "none") or \
                any(bool(opt.get(k)) for k in ("running", "pending", "busy", "queued", "active"))
            if not busy:
                break
            time.sleep(0.2)
            info = self.info()
        return time.perf_counter() - t0, info


def vw_strace_probe(vw, cfg, data):
    """The server under strace -f -ttt; a request counts as synced when a sync call's timestamp
    falls between the client's send and its receipt of the 200."""
    ddir = Path(cfg.work) / "vectorwise-strace"
    trace = Path(cfg.work) / "vectorwise.strace"
    vw.start(ddir, wrap=["strace", "-f", "-qq", "-ttt", "-e", "trace=fsync,fdatasync,msync,syncfs,sync",
                         "-e", "signal=none", "-o", str(trace)])
    vw.create()
    spans = []
    for b, (lo, hi, v) in enumerate(data.batches(cfg.batch)):
        if b >= cfg.strace_batches:
            break
        t0 = time.time()
        vw.upsert(data, lo, hi, v)
        spans.append((t0, time.time()))
    vw.stop(signal.SIGTERM)
    events = []
    for line in open(trace, errors="replace"):
        parts = line.split(None, 2)
        if len(parts) < 3 or "resumed>" in line:
            continue
        m = SYNC_RE.search(parts[2])
        if not m or (m.group(1) == "msync" and "MS_SYNC" not in line):
            continue
        try:
            events.append((float(parts[1]), m.group(1)))
        except ValueError:
            pass
    per = [[k for t, k in events if a <= t <= z] for a, z in spans]
    shutil.rmtree(ddir, ignore_errors=True)
    trace.unlink(missing_ok=True)
    return {"calls": len(per), "calls_with_sync": sum(1 for x in per if x),
            "sync_kinds": sorted({k for x in per for k in x}),
            "syncs_per_call": float(np.mean([len(x) for x in per])) if per else 0.0}


def run_vectorwise(cfg, data, rng, body):
    vw = VectorWise(cfg, body)
    what = "multipart/form-data (raw float32 vectors, JSON ids and payloads)" if body == "form" else "JSON"
    res = {"peer": f"vectorwise ({body})", "index_step": "none in the API; waits for the optimiser to be idle",
           "settings": f"HTTP upserts as {what}, VECTORWISE_WAL_SYNC=always, http.client keep-alive"}
    try:
        vw.check()
        ddir = Path(cfg.work) / "vectorwise-main"
        vw.start(ddir)
        vw.create()
        t0 = time.perf_counter()
        for lo, hi, v in data.batches(cfg.batch):
            vw.upsert(data, lo, hi, v)
        ingest_s = time.perf_counter() - t0
        res.update(ingest_s=ingest_s, points_per_s=data.n / ingest_s)
        res["index_s"], info = vw.wait_optimiser()
        res["index_info"] = {k: info.get(k) for k in ("points", "segments", "optimiser", "wal_bytes")}
        lat, hits = [], 0
        for qi, qv in enumerate(data.queries):
            t1 = time.perf_counter()
            ids = vw.search(qv, cfg.k)
            lat.append(time.perf_counter() - t1)
            hits += len(set(ids[:cfg.k]) & set(data.truth[qi, :cfg.k].tolist()))
        res.update(recall=hits / (cfg.k * len(data.queries)), p50_ms=1000 * float(np.median(lat)),
                   p95_ms=1000 * float(np.percentile(lat, 95)))
        vw.stop(signal.SIGTERM)
        # reopen: a new server process on the same data dir, time to the first answered query
        t0 = time.perf_counter()
        vw.start(ddir)
        while True:
            try:
                if len(vw.search(data.queries[0], cfg.k)) == cfg.k:
                    break
            except RuntimeError:
                pass
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("no answer within 300 s of restart")
            time.sleep(0.02)
        res["reopen_s"] = time.perf_counter() - t0
        res["count_after_reopen"] = vw.info().get("points")
        vw.stop(signal.SIGTERM)
        shutil.rmtree(ddir, ignore_errors=True)
        res["durable_doc"] = "200 once durable (fdatasync) and visible, per /tmp/spec/api.md"
        if cfg.strace_batches > 0 and shutil.which("strace"):
            res["strace"] = vw_strace_probe(vw, cfg, data)
        # crash: SIGKILL the server while a client thread ingests; the acked batches must be there
        ddir = Path(cfg.work) / "vectorwise-crash"
        vw.start(ddir)
        vw.create()
        acked = []
        cli = VWClient(vw.port)

        def ingest():
            try:
                for lo, hi, v in data.batches(cfg.batch):
                    vw.upsert(data, lo, hi, v, cli=cli)
                    acked.append((lo, hi))
            except Exception:
                pass

        th = threading.Thread(target=ingest, daemon=True)
        th.start()
        kill_after = rng.uniform(0.2, 0.8) * ingest_s
        th.join(kill_after)
        finished = not th.is_alive()
        vw.stop(signal.SIGKILL)
        th.join(60)
        ids = np.array([i for lo, hi in acked for i in range(lo, hi)], dtype=np.int64)
        vw.start(ddir)
        got = vw.present(ids)
        res["crash"] = {"kill_after_s": kill_after, "finished_before_kill": finished,
                        "acked": int(len(ids)), "lost": int(len(ids) - len(got)),
                        "count_after": vw.info().get("points")}
        vw.stop(signal.SIGTERM)
        shutil.rmtree(ddir, ignore_errors=True)
    except VWSkip as e:
        res["skipped"] = str(e)
    except Exception as e:
        res["error"] = repr(e)
    finally:
        vw.stop(signal.SIGKILL)
    return res


# --------------------------------------------------------------------------- parent: driver

def run_peer(peer, cfg, est_rng):
    cls = PEER_CLASSES[peer]
    res = {"peer": peer, "index_step": cls.index_step, "settings": cls.settings}
    ddir = Path(cfg.work) / f"{peer}-main"
    print(f"[{peer}] ingest + index + search ...", flush=True)
    try:
        m = run_child("main", peer, cfg, ddir, 7200)
    except Exception as e:
        res["error"] = str(e)
        return res
    res.update({k: m.get(k) for k in ("ingest_s", "points_per_s", "batch_p50_ms", "batch_max_ms", "index_s",
                                       "index_info", "count", "recall", "p50_ms", "p95_ms", "close_s",
                                       "import_s", "create_s")})
    print(f"[{peer}] {m['points_per_s']:.0f} pts/s, index {m['index_s']}, recall {m['recall']:.4f}, "
          f"p50 {m['p50_ms']:.2f} ms", flush=True)
    print(f"[{peer}] reopen ...", flush=True)
    try:
        r = run_child("reopen", peer, cfg, ddir, 1800)
        res.update(reopen_s=r["first_query_s"], reopen_open_s=r["open_s"], reopen_import_s=r["import_s"],
                   reopen_process_wall_s=r["process_wall_s"], count_after_reopen=r["count"],
                   reopen_error=r.get("error"))
    except Exception as e:
        res["reopen_error"] = str(e)
    shutil.rmtree(ddir, ignore_errors=True)
    if cfg.strace_batches > 0:
        print(f"[{peer}] strace probe ({cfg.strace_batches} batches) ...", flush=True)
        res["strace"] = strace_probe(peer, cfg)
    if not cfg.no_crash:
        print(f"[{peer}] crash test ...", flush=True)
        res["crash"] = crash_test(peer, cfg, m["ingest_s"], est_rng)
    return res


def durable_cell(r):
    s = r.get("strace") or {}
    if "calls" in s and s["calls"]:
        tag = "yes" if s["calls_with_sync"] == s["calls"] else ("no" if s["calls_with_sync"] == 0 else "partly")
        return f"{tag} ({s['calls_with_sync']}/{s['calls']} calls sync)"
    if r.get("durable_doc"):
        return "documented yes"
    return "?"


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(results):
    lines = ["| peer | points/s | durable at return? | index step s | recall@10 | p50 ms | reopen s | acked points lost after SIGKILL |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for r in results:
        if r.get("skipped") or (r.get("error") and r.get("points_per_s") is None):
            why = (r.get("skipped") or r.get("error")).strip().splitlines()[-1]
            lines.append(f"| {r['peer']} | skipped: {why[:200]} | | | | | | |")
            continue
        c = r.get("crash") or {}
        if "lost" in c:
            lost = f"{c['lost']} of {c['acked']}" + (" (finished before kill)" if c.get("finished_before_kill") else "")
        else:
            lost = c.get("error", "not run").splitlines()[0][:160]
        idx = "none" if r.get("index_s") is None else fmt(r["index_s"], ".2f")
        lines.append(f"| {r['peer']} | {fmt(r.get('points_per_s'), ',.0f')} | {durable_cell(r)} | {idx} | "
                     f"{fmt(r.get('recall'), '.4f')} | {fmt(r.get('p50_ms'), '.2f')} | {fmt(r.get('reopen_s'), '.2f')} | {lost} |")
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--peers", default=",".join(ALL_PEERS), help="comma-separated from " + ",".join(ALL_PEERS))
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strace-batches", type=int, default=10, help="batches traced per peer (0: no probe)")
    ap.add_argument("--no-crash", action="store_true")
    ap.add_argument("--vw-body", default="form,json",
                    help="VectorWise's upsert bodies to run, comma-separated: form (multipart, binary vectors), json")
    ap.add_argument("--vw-bin", default=os.environ.get("VECTORWISE_BIN") or default_vw_bin(),
                    help="default: target/release/vectorwise of this work tree, else of the main work tree")
    ap.add_argument("--out-dir", help="default bench/results/ingest-<n>-<gitshort>")
    ap.add_argument("--work-dir", help="where the databases go (default: a new temp dir, removed after)")
    cfg = ap.parse_args()

    def _term(*_):  # turn SIGTERM into an exception, so the finally blocks stop servers and clean up
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _term)
    peers = [p.strip() for p in cfg.peers.split(",") if p.strip()]
    for p in peers:
        if p not in ALL_PEERS:
            ap.error(f"unknown peer {p}; choose from {ALL_PEERS}")
    try:
        short = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except Exception:
        short = "nogit"
    out_dir = Path(cfg.out_dir or REPO / "bench" / "results" / f"ingest-{cfg.n}-{short}")
    out_dir.mkdir(parents=True, exist_ok=True)
    own_work = cfg.work_dir is None
    cfg.work = tempfile.mkdtemp(prefix="vw-ingest-") if own_work else cfg.work_dir
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    cfg.data_dir = str(Path(cfg.work) / "data")
    os.makedirs(cfg.data_dir, exist_ok=True)
    print(f"data: {cfg.n} x {cfg.dim} clustered unit vectors, {cfg.nq} queries, batch {cfg.batch}; work dir {cfg.work}",
          flush=True)
    t0 = time.perf_counter()
    base, queries, tag, price, nval = make_data(cfg.n, cfg.nq, cfg.dim, cfg.seed)
    truth = exact_truth(base, queries, cfg.k)
    for name, arr in [("base", base), ("queries", queries), ("truth", truth), ("tag", tag), ("price", price),
                      ("n", nval)]:
        np.save(Path(cfg.data_dir) / f"{name}.npy", arr)
    del base
    print(f"data + exact truth: {time.perf_counter() - t0:.1f} s", flush=True)
    rng = random.Random(cfg.seed)
    results = []
    meta = {"n": cfg.n, "dim": cfg.dim, "batch": cfg.batch, "nq": cfg.nq, "k": cfg.k, "seed": cfg.seed,
            "metric": "cosine", "data": "64 Gaussian clusters, spread 0.6, normalised; payload tag/price/n",
            "git": short, "versions": pkg_versions(), "cpus": os.cpu_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        for p in peers:
            runs = [(p, None)] if p != "vectorwise" else [(p, b) for b in cfg.vw_body.split(",") if b]
            for p, body in runs:
                if p == "vectorwise":
                    print(f"[vectorwise ({body})] ...", flush=True)
                    r = run_vectorwise(cfg, Data(cfg.data_dir), rng, body)
                    if r.get("skipped"):
                        print(f"[vectorwise] SKIPPED: {r['skipped']}", flush=True)
                else:
                    r = run_peer(p, cfg, rng)
                if r.get("error"):
                    print(f"[{p}] ERROR: {r['error'][-1500:]}", flush=True)
                results.append(r)
                (out_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1,
                                                                 default=str))
    finally:
        if own_work:
            shutil.rmtree(cfg.work, ignore_errors=True)
    md = table(results)
    (out_dir / "results.md").write_text(
        f"N={cfg.n}, dim={cfg.dim}, batch={cfg.batch}, {cfg.nq} queries, k={cfg.k}, cosine; git {short}\n\n{md}\n")
    print()
    print(md)
    print(f"\nwrote {out_dir / 'results.json'}")


if __name__ == "__main__":
    main()
