#!/usr/bin/env python3
"""One engine of the filtered-search harness, in its own venv and process (see README.md).

    <venv>/bin/python worker.py ENGINE --data DIR --work DIR [--opts JSON]

Talks JSON lines with harness.py: a command on stdin, one answer line on the protocol stream
(the process's original stdout; whatever the engine's library prints goes to stderr):

    {"cmd": "build"}                       -> {"build_s", "info", "reused"}
    {"cmd": "search", "filter": F, "config": C, "nq": n}
                                           -> {"ids": [[...]], "lat": [...], "extra": {...}}
    {"cmd": "quit"}

Every engine gets the same data (DIR: base.npy, queries.npy, cols.npz, filters.json) and the
same engine-neutral filter of each query (filters.json: a `match` of one value on a field, or a
`range` lo <= price < hi; the value changes from query to query), which it translates into its
own filter language. Only the call that answers one query is timed. Faiss and hnswlib get a
ready bitmap / allow-set per distinct filter value, made before the clock starts (they have no
payload store); every other engine evaluates the filter inside the timed call, as an application
would see it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K = 10


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Data:
    def __init__(self, d):
        d = Path(d)
        self.dir = d
        self.base = np.load(d / "base.npy", mmap_mode="r")
        self.queries = np.load(d / "queries.npy")
        cols = np.load(d / "cols.npz")
        self.cols = {k: cols[k] for k in cols.files}
        self.filters = json.loads((d / "filters.json").read_text())
        self.meta = json.loads((d / "meta.json").read_text())
        self.n, self.dim = self.base.shape
        self.keyword = set(self.meta["keyword_fields"])

    def value(self, field, v):
        """A column value as the payload holds it (keyword fields are strings)."""
        return f"k{int(v)}" if field in self.keyword else int(v)

    def payload(self, i):
        return {f: self.value(f, c[i]) for f, c in self.cols.items()}

    def mask(self, cond, qi):
        """The allowed points of query qi under one engine-neutral filter (numpy bool array)."""
        if cond is None:
            return None
        col = self.cols[cond["field"]]
        if cond["kind"] == "match":
            return col == cond["values"][qi]
        return (col >= cond["lo"][qi]) & (col < cond["hi"][qi])

    def key(self, cond, qi):
        if cond is None:
            return None
        if cond["kind"] == "match":
            return (cond["field"], cond["values"][qi])
        return (cond["field"], cond["lo"][qi], cond["hi"][qi])


def ids_matrix(rows):
    out = np.full((len(rows), K), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        r = list(r)[:K]
        out[i, :len(r)] = r
    return out


# --------------------------------------------------------------------------- Faiss

class FaissBase:
    def __init__(self, data, work, opts):
        import faiss
        self.faiss, self.d, self.work, self.opts = faiss, data, Path(work), opts
        self._bm = {}

    def bitmap(self, cond, qi):
        key = self.d.key(cond, qi)
        if key not in self._bm:
            m = self.d.mask(cond, qi)
            bits = np.packbits(m, bitorder="little")
            self._bm[key] = (bits, self.faiss.IDSelectorBitmap(self.d.n, self.faiss.swig_ptr(bits)))
            if len(self._bm) > 4096:
                self._bm.pop(next(iter(self._bm)))
        return self._bm[key][1]

    def build(self):
        f = self.work / "index.faiss"
        if f.exists():
            self.index = self.faiss.read_index(str(f))
            return {"reused": True, "info": self.describe()}
        self.faiss.omp_set_num_threads(os.cpu_count())
        t0 = time.perf_counter()
        self.index = self.make()
        base = np.ascontiguousarray(self.d.base, dtype=np.float32)
        if not self.index.is_trained:
            self.index.train(base)
        self.index.add(base)
        s = time.perf_counter() - t0
        self.work.mkdir(parents=True, exist_ok=True)
        self.faiss.write_index(self.index, str(f))
        return {"build_s": s, "info": self.describe()}

    def search(self, flt, config, nq):
        faiss = self.faiss
        faiss.omp_set_num_threads(1)
        cond = flt["cond"]
        sels = [self.bitmap(cond, qi) if cond else None for qi in range(nq)]  # before the clock
        rows, lat = [], []
        for qi in range(nq):
            q = self.d.queries[qi:qi + 1]
            p = self.params(config, sels[qi])
            t = time.perf_counter()
            _, I = self.index.search(q, K, params=p)
            lat.append(time.perf_counter() - t)
            rows.append([int(i) for i in I[0] if i >= 0])
        return rows, lat, {}


class FaissHNSW(FaissBase):
    def make(self):
        idx = self.faiss.IndexHNSWFlat(self.d.dim, self.opts.get("m", 32))
        idx.hnsw.efConstruction = self.opts.get("ef_construction", 100)
        return idx

    def describe(self):
        return f"IndexHNSWFlat M={self.opts.get('m', 32)} efConstruction={self.opts.get('ef_construction', 100)}"

    def params(self, config, sel):
        return self.faiss.SearchParametersHNSW(sel=sel, efSearch=int(config["ef"]))


class FaissIVF(FaissBase):
    def nlist(self):
        n = self.d.n
        return int(2 ** round(np.log2(2 * np.sqrt(n))))

    def make(self):
        q = self.faiss.IndexFlatL2(self.d.dim)
        idx = self.faiss.IndexIVFFlat(q, self.d.dim, self.nlist())
        idx.cp.seed = 1234
        self._q = q
        return idx

    def describe(self):
        return f"IndexIVFFlat nlist={self.nlist()}"

    def params(self, config, sel):
        return self.faiss.SearchParametersIVF(sel=sel, nprobe=int(config["nprobe"]))


# --------------------------------------------------------------------------- hnswlib

class Hnswlib:
    def __init__(self, data, work, opts):
        import hnswlib
        self.h, self.d, self.work, self.opts = hnswlib, data, Path(work), opts
        self._allow = {}

    def build(self):
        f = self.work / "index.hnswlib"
        self.index = self.h.Index(space="l2", dim=self.d.dim)
        m, efc = self.opts.get("m", 32), self.opts.get("ef_construction", 100)
        info = f"hnswlib M={m} ef_construction={efc}, filter = frozenset.__contains__ of the allowed ids"
        if f.exists():
            self.index.load_index(str(f), max_elements=self.d.n)
            return {"reused": True, "info": info}
        t0 = time.perf_counter()
        self.index.init_index(max_elements=self.d.n, ef_construction=efc, M=m, random_seed=1)
        self.index.set_num_threads(os.cpu_count())
        self.index.add_items(np.asarray(self.d.base), np.arange(self.d.n))
        s = time.perf_counter() - t0
        self.work.mkdir(parents=True, exist_ok=True)
        self.index.save_index(str(f))
        return {"build_s": s, "info": info}

    def allow(self, cond, qi):
        key = self.d.key(cond, qi)
        if key not in self._allow:
            allowed = frozenset(np.flatnonzero(self.d.mask(cond, qi)).tolist())
            self._allow[key] = allowed.__contains__  # label -> bool, a C-level call
            if len(self._allow) > 2048:
                self._allow.pop(next(iter(self._allow)))
        return self._allow[key]

    def search(self, flt, config, nq):
        self.index.set_num_threads(1)
        self.index.set_ef(int(config["ef"]))
        cond = flt["cond"]
        fns = [self.allow(cond, qi) if cond else None for qi in range(nq)]
        rows, lat, errors = [], [], 0
        for qi in range(nq):
            q = self.d.queries[qi]
            t = time.perf_counter()
            try:
                labels, _ = self.index.knn_query(q, k=K, filter=fns[qi])
                r = labels[0].tolist()
            except RuntimeError:
                # fewer than k found: hnswlib raises instead of returning a short list
                r = None
            lat.append(time.perf_counter() - t)
            if r is None:
                errors += 1
                r = []
            rows.append(r)
        return rows, lat, {"raised_fewer_than_k": errors}


# --------------------------------------------------------------------------- Qdrant's engine

class QdrantEdge:
    def __init__(self, data, work, opts):
        import qdrant_edge as q
        self.q, self.d, self.work, self.opts = q, data, Path(work), opts

    def build(self):
        q = self.q
        path = self.work / "shard"
        done = self.work / "built"
        info = ("EdgeShard, Distance.Euclid, HNSW defaults (m 16, ef_construct 100), payload indexes "
                "(keyword / integer) declared before the upsert, optimize() after it")
        if done.exists():
            self.s = q.EdgeShard.load(str(path))
            return {"reused": True, "info": info, "segments": self.s.info().segments_count}
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        t0 = time.perf_counter()
        cfg = q.EdgeConfig(vectors=q.EdgeVectorParams(size=self.d.dim, distance=q.Distance.Euclid))
        self.s = q.EdgeShard.create(str(path), cfg)
        for f in self.d.cols:
            kind = q.PayloadSchemaType.Keyword if f in self.d.keyword else q.PayloadSchemaType.Integer
            self.s.update(q.UpdateOperation.create_field_index(f, kind))
        B = 1000
        for lo in range(0, self.d.n, B):
            hi = min(self.d.n, lo + B)
            vecs = np.asarray(self.d.base[lo:hi]).tolist()
            pts = [q.Point(i, vecs[i - lo], self.d.payload(i)) for i in range(lo, hi)]
            self.s.update(q.UpdateOperation.upsert_points(pts))
        t1 = time.perf_counter()
        self.s.optimize()
        self.s.flush()
        s = time.perf_counter() - t0
        done.write_text("ok")
        inf = self.s.info()
        return {"build_s": s, "upsert_s": t1 - t0, "optimize_s": time.perf_counter() - t1, "info": info,
                "segments": inf.segments_count, "indexed_vectors": inf.indexed_vectors_count}

    def qfilter(self, cond, qi):
        q = self.q
        if cond is None:
            return None
        f = cond["field"]
        if cond["kind"] == "match":
            c = q.FieldCondition(key=f, match=q.MatchValue(self.d.value(f, cond["values"][qi])))
        else:
            c = q.FieldCondition(key=f, range=q.RangeFloat(gte=float(cond["lo"][qi]), lt=float(cond["hi"][qi])))
        return q.Filter(must=[c])

    def search(self, flt, config, nq):
        q = self.q
        cond = flt["cond"]
        params = None
        if config.get("hnsw_ef") or config.get("exact"):
            params = q.SearchParams(hnsw_ef=config.get("hnsw_ef"), exact=bool(config.get("exact")))
        rows, lat = [], []
        for qi in range(nq):
            qv = self.d.queries[qi].tolist()
            fl = self.qfilter(cond, qi)
            t = time.perf_counter()
            r = self.s.query(q.QueryRequest(limit=K, query=q.Query.Nearest(qv), filter=fl, params=params,
                                            with_payload=False, with_vector=False))
            lat.append(time.perf_counter() - t)
            rows.append([p.id for p in r])
        return rows, lat, {}


# --------------------------------------------------------------------------- LanceDB

class LanceDB:
    def __init__(self, data, work, opts):
        import lancedb
        import pyarrow as pa
        self.lancedb, self.pa, self.d, self.work, self.opts = lancedb, pa, data, Path(work), opts

    def build(self):
        pa = self.pa
        done = self.work / "built"
        info = ("IVF_PQ (library defaults: partitions ~sqrt(n), sub-vectors dim/16, l2); scalar indexes "
                "BITMAP on keyword fields, BTREE on integer fields; where(..., prefilter=True)")
        if done.exists():
            self.db = self.lancedb.connect(str(self.work / "db"))
            self.t = self.db.open_table("bench")
            return {"reused": True, "info": info}
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        t0 = time.perf_counter()
        self.db = self.lancedb.connect(str(self.work / "db"))
        fields = [pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), self.d.dim))]
        for f in self.d.cols:
            fields.append(pa.field(f, pa.string() if f in self.d.keyword else pa.int64()))
        schema = pa.schema(fields)
        self.t = None
        B = 50000
        for lo in range(0, self.d.n, B):
            hi = min(self.d.n, lo + B)
            cols = {"id": pa.array(np.arange(lo, hi, dtype=np.int64)),
                    "vector": pa.FixedSizeListArray.from_arrays(
                        pa.array(np.asarray(self.d.base[lo:hi], dtype=np.float32).ravel()), self.d.dim)}
            for f, c in self.d.cols.items():
                cols[f] = pa.array([f"k{v}" for v in c[lo:hi]]) if f in self.d.keyword else \
                    pa.array(c[lo:hi].astype(np.int64))
            tb = pa.table(cols, schema=schema)
            if self.t is None:
                self.t = self.db.create_table("bench", tb, schema=schema)
            else:
                self.t.add(tb)
        from lancedb.index import IvfPq
        t1 = time.perf_counter()
        self.t.create_index("vector", config=IvfPq(distance_type="l2"))
        for f in self.d.cols:
            self.t.create_scalar_index(f, index_type="BITMAP" if f in self.d.keyword else "BTREE")
        s = time.perf_counter() - t0
        done.write_text("ok")
        return {"build_s": s, "index_s": time.perf_counter() - t1, "info": info,
                "indices": [str(i) for i in self.t.list_indices()]}

    def where(self, cond, qi):
        f = cond["field"]
        if cond["kind"] == "match":
            v = self.d.value(f, cond["values"][qi])
            return f"{f} = '{v}'" if isinstance(v, str) else f"{f} = {v}"
        return f"{f} >= {int(cond['lo'][qi])} AND {f} < {int(cond['hi'][qi])}"

    def search(self, flt, config, nq):
        cond = flt["cond"]
        rows, lat = [], []
        for qi in range(nq):
            qv = self.d.queries[qi]
            t = time.perf_counter()
            qb = self.t.search(qv).distance_type("l2").limit(K).select(["id"])
            if cond is not None:
                qb = qb.where(self.where(cond, qi), prefilter=True)
            if config.get("nprobes"):
                qb = qb.nprobes(int(config["nprobes"]))
            if config.get("refine_factor"):
                qb = qb.refine_factor(int(config["refine_factor"]))
            r = qb.to_arrow().column("id").to_pylist()
            lat.append(time.perf_counter() - t)
            rows.append(r)
        return rows, lat, {}


# --------------------------------------------------------------------------- Milvus Lite

class MilvusLite:
    def __init__(self, data, work, opts):
        from pymilvus import DataType, MilvusClient
        self.MilvusClient, self.DataType, self.d, self.work, self.opts = MilvusClient, DataType, data, Path(work), opts

    def build(self):
        done = self.work / "built"
        info = "MilvusClient(local .db); schema with every payload field; vector index AUTOINDEX (L2)"
        if done.exists():
            self.c = self.MilvusClient(str(self.work / "milvus.db"))
            self.c.load_collection("bench")
            return {"reused": True, "info": info + "; " + (self.work / "built").read_text()}
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        DT = self.DataType
        t0 = time.perf_counter()
        self.c = self.MilvusClient(str(self.work / "milvus.db"))
        schema = self.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DT.INT64, is_primary=True)
        schema.add_field("vector", DT.FLOAT_VECTOR, dim=self.d.dim)
        for f in self.d.cols:
            if f in self.d.keyword:
                schema.add_field(f, DT.VARCHAR, max_length=16)
            else:
                schema.add_field(f, DT.INT64)
        ip = self.c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
        self.c.create_collection("bench", schema=schema, index_params=ip)
        B = 2000
        for lo in range(0, self.d.n, B):
            hi = min(self.d.n, lo + B)
            vecs = np.asarray(self.d.base[lo:hi]).tolist()
            rows = [dict(self.d.payload(i), id=i, vector=vecs[i - lo]) for i in range(lo, hi)]
            self.c.insert("bench", rows)
        self.c.flush("bench")
        # scalar indexes, where this Milvus Lite takes them
        scalar = []
        for f in self.d.cols:
            try:
                sp = self.c.prepare_index_params()
                sp.add_index(field_name=f, index_type="INVERTED", index_name=f"ix_{f}")
                self.c.create_index("bench", sp)
                scalar.append(f)
            except Exception as e:  # noqa: BLE001
                log(f"milvus scalar index on {f}: {e!r}")
                break
        name = "vector"
        deadline = time.time() + 3600
        while time.time() < deadline:
            try:
                inf = self.c.describe_index("bench", self.c.list_indexes("bench", field_name="vector")[0])
            except Exception:  # noqa: BLE001
                inf = {}
            if inf.get("pending_index_rows", 0) == 0 and inf.get("indexed_rows", 0) >= inf.get("total_rows", 0):
                break
            time.sleep(0.5)
        self.c.load_collection("bench")
        s = time.perf_counter() - t0
        note = f"scalar INVERTED indexes on {len(scalar)}/{len(self.d.cols)} fields; vector index {inf.get('index_type')}"
        done.write_text(note)
        return {"build_s": s, "info": info + "; " + note, "index": {k: str(v) for k, v in inf.items()}, "name": name}

    def expr(self, cond, qi):
        f = cond["field"]
        if cond["kind"] == "match":
            v = self.d.value(f, cond["values"][qi])
            return f'{f} == "{v}"' if isinstance(v, str) else f"{f} == {v}"
        return f"{f} >= {int(cond['lo'][qi])} and {f} < {int(cond['hi'][qi])}"

    def search(self, flt, config, nq):
        cond = flt["cond"]
        rows, lat = [], []
        for qi in range(nq):
            qv = self.d.queries[qi].tolist()
            kw = {"filter": self.expr(cond, qi)} if cond else {}
            t = time.perf_counter()
            r = self.c.search("bench", data=[qv], limit=K, output_fields=[], **kw)
            lat.append(time.perf_counter() - t)
            rows.append([h["id"] for h in r[0]])
        return rows, lat, {}


# --------------------------------------------------------------------------- Chroma

class Chroma:
    def __init__(self, data, work, opts):
        import chromadb
        self.chromadb, self.d, self.work, self.opts = chromadb, data, Path(work), opts

    def build(self):
        done = self.work / "built"
        info = "PersistentClient, hnsw space l2 (defaults: M 16, construction_ef 100, search_ef 100), metadata where"
        if done.exists():
            self.c = self.chromadb.PersistentClient(path=str(self.work / "db"))
            self.col = self.c.get_collection("bench")
            return {"reused": True, "info": info}
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        t0 = time.perf_counter()
        self.c = self.chromadb.PersistentClient(path=str(self.work / "db"))
        self.col = self.c.create_collection("bench", configuration={"hnsw": {"space": "l2"}})
        B = 5000
        for lo in range(0, self.d.n, B):
            hi = min(self.d.n, lo + B)
            self.col.add(ids=[str(i) for i in range(lo, hi)], embeddings=np.asarray(self.d.base[lo:hi]),
                         metadatas=[self.d.payload(i) for i in range(lo, hi)])
        s = time.perf_counter() - t0
        done.write_text("ok")
        return {"build_s": s, "info": info}

    def where(self, cond, qi):
        f = cond["field"]
        if cond["kind"] == "match":
            return {f: self.d.value(f, cond["values"][qi])}
        return {"$and": [{f: {"$gte": int(cond["lo"][qi])}}, {f: {"$lt": int(cond["hi"][qi])}}]}

    def search(self, flt, config, nq):
        cond = flt["cond"]
        rows, lat, errors = [], [], 0
        for qi in range(nq):
            qv = self.d.queries[qi:qi + 1]
            kw = {"where": self.where(cond, qi)} if cond else {}
            t = time.perf_counter()
            try:
                r = self.col.query(query_embeddings=qv, n_results=K, include=[], **kw)
                ids = [int(i) for i in r["ids"][0]]
            except Exception as e:  # noqa: BLE001
                ids = []
                errors += 1
                if errors == 1:
                    log(f"chroma query error: {e!r}")
            lat.append(time.perf_counter() - t)
            rows.append(ids)
        return rows, lat, {"errors": errors}


# --------------------------------------------------------------------------- VectorWise (HTTP)

class VectorWise:
    """`vectorwise import` of the base with its payloads (one sealed segment), `vectorwise serve`
    on that data dir, `PUT /collections/bench/index` for every payload field, then searches over
    one keep-alive http.client connection with orjson bodies."""

    def __init__(self, data, work, opts):
        import http.client

        import orjson
        self.http, self.orjson, self.d, self.work, self.opts = http.client, orjson, data, Path(work), opts
        self.bin = opts["bin"]
        self.proc = None

    def demo_index(self):
        d = self.work / "demo"
        d.mkdir(parents=True, exist_ok=True)
        vec, idx = d / "v.npy", d / "i.vwi"
        if not idx.exists():
            subprocess.run([self.bin, "generate", "--n", "1000", "--dim", str(self.d.dim), "--out", str(vec)],
                           check=True, capture_output=True)
            subprocess.run([self.bin, "build", "--vectors", str(vec), "--out", str(idx), "--metric", "l2",
                            "--no-calibrate"], check=True, capture_output=True)
        return vec, idx

    def req(self, method, path, body=None):
        data = None if body is None else self.orjson.dumps(body, option=self.orjson.OPT_SERIALIZE_NUMPY)
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers={"content-type": "application/json"})
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, (self.orjson.loads(raw) if raw else None), r
            except (self.http.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = self.http.HTTPConnection("127.0.0.1", self.port, timeout=600)
                if attempt:
                    raise

    def build(self):
        ddir = self.work / "data"
        done = self.work / "built"
        res = {"info": "vectorwise import --metric l2 (one sealed segment, method auto), serve, "
                       "PUT /collections/bench/index per field (keyword / integer)"}
        if not done.exists():
            shutil.rmtree(ddir, ignore_errors=True)
            t0 = time.perf_counter()
            p = subprocess.run([self.bin, "import", "--collection", "bench", "--vectors", str(self.d.dir / "base.npy"),
                                "--payloads", str(self.d.dir / "payloads.jsonl"), "--metric", "l2",
                                "--data-dir", str(ddir)], capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"vectorwise import failed: {p.stderr[-2000:]}")
            res["import_s"] = time.perf_counter() - t0
            res["import_out"] = (p.stdout + p.stderr).strip()[-600:]
        else:
            res["reused"] = True
        vec, idx = self.demo_index()
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(self.work / "server.log", "a")
        # No answer cache: the passes repeat the queries, and peers have none.
        env = dict(os.environ, VECTORWISE_LOG_FORMAT="json", VECTORWISE_CACHE_BYTES="0")
        self.proc = subprocess.Popen([self.bin, "serve", "--data-dir", str(ddir), "--port", str(self.port),
                                      "--host", "127.0.0.1", "--index", str(idx), "--vectors", str(vec),
                                      "--monitor-sample-rate", str(self.opts.get("monitor", 0.01))],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.conn = self.http.HTTPConnection("127.0.0.1", self.port, timeout=600)
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vectorwise serve exited with {self.proc.returncode} (server.log)")
            try:
                st, js, _ = self.req("GET", "/collections/bench")
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("vectorwise serve did not answer within 300 s")
            time.sleep(0.1)
        t0 = time.perf_counter()
        for f in self.d.cols:
            st, js, _ = self.req("PUT", "/collections/bench/index",
                                 {"field": f, "type": "keyword" if f in self.d.keyword else "integer"})
            if st not in (200, 201):
                raise RuntimeError(f"PUT index {f}: {st} {js}")
        res["payload_index_s"] = time.perf_counter() - t0
        st, js, _ = self.req("GET", "/collections/bench")
        res["collection"] = js
        if not done.exists():
            done.write_text("ok")
            res["build_s"] = res["import_s"] + res["payload_index_s"]
        return res

    def vfilter(self, cond, qi):
        if cond is None:
            return None
        f = cond["field"]
        if cond["kind"] == "match":
            return {"must": [{"key": f, "match": {"value": self.d.value(f, cond["values"][qi])}}]}
        return {"must": [{"key": f, "range": {"gte": int(cond["lo"][qi]), "lt": int(cond["hi"][qi])}}]}

    def search(self, flt, config, nq):
        cond = flt["cond"]
        orjson = self.orjson
        if config.get("http_floor"):
            return self.floor(nq)
        bodies = []
        for qi in range(nq):  # encoded before the clock, as server_ingest.py does
            b = {"vector": self.d.queries[qi], "k": K}
            b.update(config)
            fl = self.vfilter(cond, qi)
            if fl is not None:
                b["filter"] = fl
            bodies.append(orjson.dumps(b, option=orjson.OPT_SERIALIZE_NUMPY))
        rows, lat, paths, sel, allowed, settings = [], [], {}, [], [], {}
        hdr = {"content-type": "application/json"}
        for qi in range(nq):
            t = time.perf_counter()
            for attempt in (0, 1):
                try:
                    self.conn.request("POST", "/collections/bench/search", body=bodies[qi], headers=hdr)
                    r = self.conn.getresponse()
                    raw = r.read()
                    break
                except (self.http.HTTPException, ConnectionError, OSError):
                    self.conn.close()
                    self.conn = self.http.HTTPConnection("127.0.0.1", self.port, timeout=600)
                    if attempt:
                        raise
                    t = time.perf_counter()
            lat.append(time.perf_counter() - t)
            if r.status != 200:
                raise RuntimeError(f"search: {r.status} {raw[:300]!r}")
            rows.append([h["id"] for h in orjson.loads(raw)["hits"]])
            p = r.getheader("x-vectorwise-filter-paths")
            if p is not None:
                paths[p] = paths.get(p, 0) + 1
            s = r.getheader("x-vectorwise-filter-selectivity")
            if s is not None:
                sel.append(float(s))
            a = r.getheader("x-vectorwise-filter-allowed")
            if a is not None:
                allowed.append(int(a))
            st = r.getheader("x-vectorwise-setting")
            if st is not None:
                settings[st] = settings.get(st, 0) + 1
            u = r.getheader("x-vectorwise-filter-unindexed")
            if u:
                paths["unindexed:" + u] = paths.get("unindexed:" + u, 0) + 1
        extra = {"paths": paths, "settings": dict(sorted(settings.items(), key=lambda kv: -kv[1])[:4])}
        if sel:
            extra["selectivity_mean"] = float(np.mean(sel))
        if allowed:
            extra["allowed_median"] = float(np.median(allowed))
        return rows, lat, extra

    def floor(self, nq):
        """The HTTP round trip alone on the same connection: GET / (health), nq times."""
        lat = []
        for _ in range(nq):
            t = time.perf_counter()
            self.conn.request("GET", "/")
            r = self.conn.getresponse()
            r.read()
            lat.append(time.perf_counter() - t)
        return [[] for _ in range(nq)], lat, {"note": "GET / only"}

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class VectorWiseInProcess(VectorWise):
    """The same collection as `vectorwise` (its own copy: import, serve, a payload index per
    field, then the server stopped), searched in-process by `vectorwise search --collection`:
    the store's search call as the server makes it, minus HTTP, timed in Rust per query after
    one untimed pass over the queries. `threads` in the config: the threads a search may use."""

    def build(self):
        res = super().build()
        super().close()  # the data directory is locked while a server has it
        self.proc = None
        res["info"] += "; then the server stopped and `vectorwise search --collection` in-process"
        return res

    def search(self, flt, config, nq):
        cond = flt["cond"]
        qn = self.work / "queries.npy"  # written for every call: the data's queries may change
        np.save(qn, np.ascontiguousarray(self.d.queries[:nq], dtype=np.float32))
        fpath = self.work / "filters.jsonl"
        with open(fpath, "w") as f:
            for qi in range(nq):
                f.write(json.dumps(self.vfilter(cond, qi)) + "\n")
        cmd = [self.bin, "search", "--collection", "bench", "--data-dir", str(self.work / "data"),
               "--query-file", str(qn), "--filters", str(fpath), "--k", str(K), "--warmup",
               "--threads", str(config.get("threads", 1))]
        if "profile" in config:
            cmd += ["--profile", config["profile"]]
        if "recall_target" in config:
            cmd += ["--recall-target", str(config["recall_target"])]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"vectorwise search: {p.stderr[-1000:]}")
        rows, lat, paths, settings = [], [], {}, {}
        for line in p.stdout.splitlines():
            r = json.loads(line)
            rows.append(r["ids"])
            lat.append(r["micros"] / 1e6)
            if r.get("paths"):
                paths[r["paths"]] = paths.get(r["paths"], 0) + 1
            if r.get("setting"):
                settings[r["setting"]] = settings.get(r["setting"], 0) + 1
        if len(rows) != nq:
            raise RuntimeError(f"vectorwise search answered {len(rows)} of {nq} queries")
        return rows, lat, {"paths": paths, "settings": settings}


ENGINES = {"faiss-hnsw": FaissHNSW, "faiss-ivf": FaissIVF, "hnswlib": Hnswlib, "qdrant-edge": QdrantEdge,
           "lancedb": LanceDB, "milvus-lite": MilvusLite, "chromadb": Chroma, "vectorwise": VectorWise,
           "vectorwise-inproc": VectorWiseInProcess}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=sorted(ENGINES))
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--opts", default="{}")
    a = ap.parse_args()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr, the protocol stays clean
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        data = Data(a.data)
        eng = ENGINES[a.engine](data, a.work, json.loads(a.opts))
    except Exception as e:  # noqa: BLE001
        send({"error": f"{type(e).__name__}: {e}"})
        return
    send({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "build":
                t0 = time.perf_counter()
                res = eng.build()
                res.setdefault("wall_s", time.perf_counter() - t0)
                send(res)
            elif cmd["cmd"] == "search":
                flt = data.filters[cmd["filter"]]
                rows, lat, extra = eng.search(flt, cmd["config"], int(cmd["nq"]))
                send({"ids": ids_matrix(rows).tolist(), "lat": lat, "extra": extra})
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            send({"error": f"{type(e).__name__}: {e}"})
    if hasattr(eng, "close"):
        eng.close()


if __name__ == "__main__":
    main()
