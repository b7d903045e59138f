"""The comparison harness: VectorWise (in-process, through `vectorwise bench --index`) against
Faiss and hnswlib on the same files, the same queries and the same thread counts, in one run.
`run.sh` is the front door (venv, release build, data); this file does the measuring.

Per engine configuration and search setting: recall@k (mean, 5th percentile, min) against exact
ground truth, single-thread latency (one query per call, one thread) and QPS, batch QPS (the whole
query set in one call on every core, median of 3); per configuration: build time on every core,
size on disk, load time and RSS after load in a fresh process. Each sweep goes up its knob until
recall reaches --target-recall or the mean latency --max-ms. Writes results.json, results.md and
recall_qps_<query set>.png to --out-dir.
"""

import argparse, gc, importlib.metadata, importlib.util, json, math, os, platform, shutil, subprocess, sys, tempfile, time
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NCORES = os.cpu_count() or 1

HNSW_EFS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
# Half steps from 8 on, the same on both sides (rerank and k_factor both count candidates per
# neighbour): with powers of two only, a sweep that lands just under a target pays for twice the
# depth (sphere-1m random: rerank 512 0.947, 1024 0.980).
RERANKS = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]
# The partitioned scan: lists read per query, each with a short and a long re-rank.
NPROBES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
# Per nprobe, deeper reranks until the target recall (4-bit codes of raw vectors on tight
# clusters need 32-64 candidates per neighbour: clustered-1m reached 0.75 at rerank 16); half
# steps (4, 6, 8, 12, ...), as RERANKS has from 8 on (the peers' IVF re-rank depth is fixed by their configuration).
IVF_RERANKS = [4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
K_FACTORS = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def nearest_rank(sorted_values, p):
    """The p-quantile by nearest rank: the same rule as `vectorwise bench`."""
    n = len(sorted_values)
    return float(sorted_values[min(max(math.ceil(n * p), 1), n) - 1])


def recalls(found, truth, k):
    t = truth[:, :k]
    return np.array([len(np.intersect1d(f[:k], r, assume_unique=False)) / k for f, r in zip(found, t)])


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- datasets

def vw(args, *cmd, capture=False, env=None):
    full = [args.vectorwise, *map(str, cmd)]
    env = {**os.environ, **env} if env else None
    if capture:
        return subprocess.run(full, check=True, capture_output=True, text=True, env=env).stdout
    subprocess.run(full, check=True, stdout=subprocess.DEVNULL, env=env)


def prepare(args):
    """{'base': path, 'sets': [(name, queries path, truth path or None)], 'notes': [...]}; generates what is missing."""
    d = args.data_dir
    os.makedirs(d, exist_ok=True)
    ds, notes = args.dataset, []
    if ds.startswith("sphere-") or ds == "smoke":
        n = parse_n(ds) if ds != "smoke" else 5000
        dim = 128 if ds != "smoke" else 32
        base = os.path.join(d, "base.npy")
        if not os.path.exists(base):
            vw(args, "generate", "--kind", "sphere", "--n", n, "--dim", dim, "--seed", 42, "--out", base)
        x = np.load(base, mmap_mode="r")
        demo, rnd = os.path.join(d, "queries-demo.npy"), os.path.join(d, "queries-random.npy")
        if not os.path.exists(demo):
            # The demo's queries: a random base row + 0.1 x Gaussian noise, renormalised (seeded).
            rng = np.random.default_rng(7)
            rows = rng.integers(0, len(x), args.nq)
            q = x[np.sort(rows)].astype(np.float32) + np.float32(0.1) * rng.standard_normal((args.nq, dim), dtype=np.float32)
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            np.save(demo, q.astype(np.float32))
        if not os.path.exists(rnd):
            vw(args, "generate", "--kind", "sphere", "--n", args.nq, "--dim", dim, "--seed", 4242, "--out", rnd)
        notes.append(f"base: `vectorwise generate --kind sphere --n {n} --dim {dim} --seed 42`; queries `demo`: {args.nq} random base rows + 0.1 x N(0,1) noise, renormalised (numpy seed 7); `random`: `vectorwise generate --kind sphere --n {args.nq} --seed 4242` (uniform on the sphere)")
        sets = [("demo", demo, None), ("random", rnd, None)]
        if ds == "smoke":
            sets = sets[:1]
        return dict(base=base, sets=sets, notes=notes)
    if ds.startswith("clustered-norms-"):
        n = parse_n(ds)
        # The clustered mixture below, then every row, base and query alike, times its own factor
        # 10^U(-1, 1): norms spread over two decades, so inner product and L2 rank differently
        # from the direction alone.
        base, qp = clustered_files(args, d, n, lambda x: x * norm_factors(len(x), NORMS_SEED)[:, None])
        notes.append(f"`vectorwise generate --kind clustered --clusters {args.clusters} --n {n + args.nq} --dim 128 --seed 42`, every row then "
                     f"multiplied by its own factor 10^U(-1,1) (log-uniform in [0.1, 10], numpy seed {NORMS_SEED}); the first {n} rows are the base, "
                     f"the last {args.nq} the queries (same distribution and scaling, not in the base)")
        return dict(base=base, sets=[("clustered-norms", qp, None)], notes=notes)
    if ds == "real-scaled":
        # The real set (bench/data/real-manpages, or --real-data) with each row times a factor
        # 10^U(-1, 1): real directions, norms spread over two decades (ip; cosine undoes it).
        src = args.real_data or os.path.join(ROOT, "bench", "data", "real-manpages")
        sb, sq = os.path.join(src, "base.npy"), os.path.join(src, "queries.npy")
        for p in (sb, sq):
            if not os.path.exists(p):
                sys.exit(f"{p} missing: run.sh real-scaled makes it (embed_text.py; REAL_DATA names another folder under bench/data)")
        base, qp, stamp = os.path.join(d, "base.npy"), os.path.join(d, "queries.npy"), os.path.join(d, "source.json")
        want = dict(source=os.path.abspath(src), base_bytes=os.path.getsize(sb), queries_bytes=os.path.getsize(sq), nq=args.nq, seed=NORMS_SEED)
        if not (os.path.exists(base) and os.path.exists(qp) and os.path.exists(stamp) and json.load(open(stamp)) == want):
            x = np.load(sb).astype(np.float32)
            q = np.load(sq).astype(np.float32)
            if args.nq < len(q):
                q = q[np.sort(np.random.default_rng(NORMS_SEED).choice(len(q), args.nq, replace=False))]
            x *= norm_factors(len(x), NORMS_SEED)[:, None]
            q *= norm_factors(len(q), NORMS_SEED + 1)[:, None]
            np.save(base, x)
            np.save(qp, q)
            json.dump(want, open(stamp, "w"))
        n, nq = len(np.load(base, mmap_mode="r")), len(np.load(qp, mmap_mode="r"))
        meta = os.path.join(src, "meta.json")
        what = f"the real set in {os.path.relpath(src, ROOT)}"
        if os.path.exists(meta):
            m = json.load(open(meta))
            what += f" ({m['model']}; {m['base'][0]} base sentences, {m['queries'][0]} held-out queries, {m['text']})"
        notes.append(f"{what}; every base row multiplied by its own factor 10^U(-1,1) (log-uniform in [0.1, 10], numpy seed {NORMS_SEED}), "
                     f"the queries likewise (seed {NORMS_SEED + 1}); {n} base rows, {nq} queries")
        return dict(base=base, sets=[("held-out", qp, None)], notes=notes)
    if ds.startswith("clustered-"):
        n = parse_n(ds)
        base, qp = clustered_files(args, d, n, lambda x: x)
        notes.append(f"`vectorwise generate --kind clustered --clusters {args.clusters} --n {n + args.nq} --dim 128 --seed 42`: {args.clusters} anisotropic Gaussian clusters (per-axis spread 0.05-0.5, Gaussian centres); the first {n} rows are the base, the last {args.nq} the queries (same distribution, not in the base)")
        return dict(base=base, sets=[("clustered", qp, None)], notes=notes)
    if ds.startswith("real-"):
        base, qp = os.path.join(d, "base.npy"), os.path.join(d, "queries.npy")
        for p in (base, qp):
            if not os.path.exists(p):
                sys.exit(f"{p} missing: run.sh {ds} makes it (embed_text.py)")
        meta = os.path.join(d, "meta.json")
        if os.path.exists(meta):
            m = json.load(open(meta))
            notes.append(f"{m['model']} from PyPI package {m['model_package']}; {m['base'][0]} base sentences and {m['queries'][0]} held-out queries (from {m['held_out_pages']} of {m['man_pages']} man pages kept out of the base), {m['text']}")
        return dict(base=base, sets=[("held-out", qp, None)], notes=notes)
    if ds == "custom":
        if not (args.base and args.queries):
            sys.exit("custom needs --base and --queries")
        notes.append(f"base {args.base}, queries {args.queries}, truth {args.truth or 'computed by our exact search'}")
        return dict(base=args.base, sets=[("custom", args.queries, args.truth)], notes=notes)
    sys.exit(f"unknown dataset {ds}")


def clustered_files(args, d, n, transform):
    """base.npy and queries.npy in `d`, made once: n + nq points of one seeded clustered mixture,
    `transform`ed; the first n are the base (rows do not depend on the total, so this base equals
    `generate --n n` before the transform), the last nq the held-out queries."""
    base, qp = os.path.join(d, "base.npy"), os.path.join(d, "queries.npy")
    if not (os.path.exists(base) and os.path.exists(qp)):
        full = os.path.join(d, "all.npy")
        vw(args, "generate", "--kind", "clustered", "--clusters", args.clusters, "--n", n + args.nq, "--dim", 128, "--seed", 42, "--out", full)
        x = transform(np.load(full))
        np.save(base, x[:n])
        np.save(qp, x[n:])
        os.remove(full)
    return base, qp


def parse_n(name):
    s = name.rsplit("-", 1)[1]
    return int(float(s[:-1]) * (1_000_000 if s.endswith("m") else 1000))


NORMS_SEED = 4343


def norm_factors(n, seed):
    """Per-row scale factors, log-uniform in [0.1, 10] (seeded): 10^U(-1, 1)."""
    return (10.0 ** np.random.default_rng(seed).uniform(-1.0, 1.0, n)).astype(np.float32)


# The metric each dataset is run with when --metric is not given: what it used before metrics
# existed (l2), except for the sets made for inner product.
DEFAULT_METRIC = {"real-scaled": "ip"}


def default_metric(dataset):
    return DEFAULT_METRIC.get(dataset, "l2")


def as_f32(path):
    """Queries/base as a float32 C array from .npy or .fvecs."""
    if path.endswith(".fvecs"):
        raw = np.fromfile(path, dtype=np.int32)
        dim = raw[0]
        return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32).copy()
    return np.ascontiguousarray(np.load(path), dtype=np.float32)


def as_ids(path):
    if path.endswith(".ivecs"):
        raw = np.fromfile(path, dtype=np.int32)
        return raw.reshape(-1, raw[0] + 1)[:, 1:].astype(np.int64)
    return np.load(path).astype(np.int64)


METRIC_NOTES = {
    "l2": "metric l2: squared Euclidean on the raw vectors; VectorWise `build --metric l2`, Faiss METRIC_L2, hnswlib space 'l2'; truth: exact squared L2 by NumPy",
    "ip": "metric ip: inner product on the raw vectors (nearest = largest q.x); VectorWise `build --metric ip` (MIPS->NN augmentation inside), "
          "Faiss METRIC_INNER_PRODUCT, hnswlib space 'ip'; truth: exact largest inner products by NumPy",
    "cosine": "metric cosine: VectorWise `build --metric cosine` and hnswlib space 'cosine' get the raw vectors and normalise them themselves; "
              "Faiss gets base and queries normalised by the harness and uses METRIC_INNER_PRODUCT; truth: exact, by NumPy on the normalised vectors",
}


# ---------------------------------------------------------------- VectorWise

def build_vectorwise(args, ds):
    """`vectorwise build` on every core, timed: one file per method when the binary has
    `build --method` (a graph-only file and a scan-codes-only file, so each has its own build
    time, size and RSS), else one file. Our index also serves the exact ground truth."""
    help_text = subprocess.run([args.vectorwise, "build", "--help"], capture_output=True, text=True).stdout
    n = len(np.load(ds["base"], mmap_mode="r"))
    lists = args.ivf_lists or max(1, round(math.sqrt(n)))
    VW_SWEEPS["ivf"] = (f"VectorWise IVF 4-bit scan ({lists} lists) + exact rerank", VW_SWEEPS["ivf"][1])
    exhaustive = ["--scan-lists", 0] if "--scan-lists" in help_text else []
    plan = [("hnsw", ["--method", "hnsw"]), ("scan", ["--method", "scan", *exhaustive])]
    if "--scan-lists" in help_text:
        plan.append(("ivf", ["--method", "scan", "--scan-lists", lists]))
    if "--scan-dsub" in help_text:
        # Twice the code bytes (Faiss PQ64x4fs's budget at 128-d; the engine raises dsub to
        # ceil(dim / 256) for vectors wider than 512): fewer candidates for high recall.
        plan.append(("scan2", ["--method", "scan", "--scan-dsub", 2, *exhaustive]))
        # Between the two (22 bytes a point at 128-d; the engine raises dsub past 3 above 768-d).
        plan.append(("scan3", ["--method", "scan", "--scan-dsub", 3, *exhaustive]))
    if "--method" not in help_text:
        plan = [("all", [])]
    metric = []
    if "--metric" in help_text:
        metric = ["--metric", args.metric]
    elif args.metric != "l2":
        sys.exit(f"--metric {args.metric}: this binary ({args.vectorwise}) has no `build --metric` (l2 only)")
    wanted = set(args.vw_methods.split(","))
    unknown = wanted - set(VW_METHODS)
    if unknown:
        sys.exit(f"--vw-methods: unknown {', '.join(sorted(unknown))} (choose from {', '.join(VW_METHODS)})")
    missing = wanted - {p[0] for p in plan}
    if missing and plan != [("all", [])]:
        log(f"VectorWise: this binary cannot build {', '.join(sorted(missing))}; skipped")
    plan = [p for p in plan if p[0] in wanted or p[0] == "all"]
    built = []
    for kind, extra in plan:
        path = os.path.join(args.work_dir, f"vectorwise-{kind}.vwi")
        log(f"VectorWise: build {' '.join(map(str, metric + extra)) or '(default)'} M=32 efC=200 on {NCORES} threads")
        la = os.getloadavg()[0]
        t = time.time()
        vw(args, "build", "--vectors", ds["base"], "--out", path, "--m", 32, "--ef-construction", 200, *metric, *extra)
        built.append((kind, path, time.time() - t, la))
    return built


# The files `--vw-methods` can ask for (VW_SWEEPS also has `exact`, swept on the scan file).
VW_METHODS = ("hnsw", "scan", "scan2", "scan3", "ivf")

VW_SWEEPS = {
    "hnsw": ("VectorWise HNSW M32 efC200", [f"ef={e}" for e in HNSW_EFS]),
    "scan": ("VectorWise 4-bit scan + exact rerank", [f"rerank={r}" for r in RERANKS]),
    "scan2": ("VectorWise 4-bit scan, dsub 2 (2x code bytes) + exact rerank", [f"rerank={r}" for r in RERANKS]),
    "scan3": ("VectorWise 4-bit scan, dsub 3 (1.4x code bytes at 128-d) + exact rerank", [f"rerank={r}" for r in RERANKS]),
    "ivf": ("VectorWise IVF 4-bit scan + exact rerank",  # the label gets the list count at build
            [f"nprobe={p},rerank={r}" for p in NPROBES for r in IVF_RERANKS]),
    "exact": ("VectorWise exact scan", ["exact"]),
}


def run_vectorwise(args, sets, results, built):
    """Sweeps each family on the file built for it (`all`: every family on one file); each
    setting is one `vectorwise bench --index` process, so load time and RSS come from a fresh one."""
    out = os.path.join(args.work_dir, "vw-setting.json")
    for kind, path, wall, la in built:
        families = {"hnsw": ["hnsw"], "scan": ["scan", "exact"], "scan2": ["scan2"], "scan3": ["scan3"], "ivf": ["ivf"], "all": ["hnsw", "scan", "exact"]}[kind]
        for family in families:
            label, sweep = VW_SWEEPS[family]
            cfg = dict(engine="VectorWise", config=label, family=family, file=os.path.basename(path),
                       build_seconds_wall=wall, size_bytes=os.path.getsize(path), loadavg_at_build=la, rows=[])
            facts = None
            for set_name, qpath, tpath in sets:
                nq = len(np.load(qpath, mmap_mode="r"))
                reached = set()  # ivf: the nprobe values that reached the target
                ran = []  # (setting, row) in sweep order
                for s in sweep:
                    nprobe = int(s.split(",")[0].split("=")[1]) if family == "ivf" else None
                    if nprobe in reached:
                        continue
                    vw(args, "bench", "--index", path, "--queries-file", qpath, "--truth-file", tpath, "--k", args.k,
                       "--settings", s, "--exact-queries", nq, "--out", out)
                    rep = json.load(open(out))
                    facts = facts or rep["index"]
                    r = rep["results"][0]
                    if r["skipped"]:
                        log(f"  {label} [{set_name}] {s}: not served ({r['skipped']})")
                        cfg["skipped"] = f"{s}: {r['skipped']}"
                        break
                    row = dict(query_set=set_name, setting=r["setting"], family=family, queries=r["queries"],
                               recall_mean=r["recall_mean"], recall_p5=r["recall_p5"], recall_min=r["recall_min"],
                               latency_ms_mean=r["latency_ms_avg"], latency_ms_p50=r["latency_ms_p50"],
                               latency_ms_p95=r["latency_ms_p95"], latency_ms_p99=r["latency_ms_p99"],
                               qps_single=r["qps_single_thread"], qps_batch=r["qps_batch"], batch_seconds=r["batch_seconds"],
                               batch_recall_mean=r["batch_recall_mean"])
                    cfg["rows"].append(row)
                    ran.append((s, row))
                    log_row(label, row)
                    if family == "ivf" and row["latency_ms_mean"] < args.max_ms and not s.endswith(f"rerank={IVF_RERANKS[0]}"):
                        # A deeper rerank reached the target: more lists may still be cheaper there.
                        if done(args, row):
                            reached.add(nprobe)
                        continue
                    if done(args, row):
                        break
                batch_one_thread(args, path, qpath, tpath, nq, ran, out)
            cfg.update(build_seconds=facts["build_seconds"], load_seconds=facts["load_seconds"],
                       rss_before_load=facts["rss_before_load_bytes"], rss_after_load=facts["rss_after_load_bytes"],
                       rss_after_runs=facts["rss_after_runs_bytes"], simd=facts["simd"])
            results.append(cfg)


def batch_one_thread(args, path, qpath, tpath, nq, ran, out):
    """The whole query set in one `search_batch` call on one thread, for every setting the sweep
    ran: one more `vectorwise bench` process with all of them and RAYON_NUM_THREADS=1 (its
    `qps_batch` is then a one-thread batch; it says so in `batch_threads`)."""
    if not ran:
        return
    vw(args, "bench", "--index", path, "--queries-file", qpath, "--truth-file", tpath, "--k", args.k,
       "--settings", ";".join(s for s, _ in ran), "--exact-queries", nq, "--out", out, env={"RAYON_NUM_THREADS": "1"})
    rep = json.load(open(out))
    if rep.get("batch_threads") != 1:
        sys.exit(f"vectorwise bench ran its batch on {rep.get('batch_threads')} threads under RAYON_NUM_THREADS=1")
    for (s, row), r in zip(ran, rep["results"]):
        assert r["setting"] == row["setting"], (r["setting"], row["setting"])
        row.update(qps_batch_1t=r["qps_batch"], batch_1t_seconds=r["batch_seconds"], batch_1t_recall_mean=r["batch_recall_mean"])
        log(f"  {row['setting']} [{row['query_set']}]: {r['qps_batch']:.0f} QPS batch on 1 thread")


def done(args, row):
    return row["recall_mean"] >= args.target_recall or row["latency_ms_mean"] >= args.max_ms


def log_row(config, r):
    log(f"  {config} [{r['query_set']}] {r['setting']}: recall {r['recall_mean']:.4f} (p5 {r['recall_p5']:.2f}) "
        f"{r['latency_ms_mean']:.3f} ms mean, {r['qps_single']:.0f} QPS 1 thread, {r['qps_batch']:.0f} QPS batch")


# ---------------------------------------------------------------- peers

def measure(search_one, search_batch, set_threads, queries, truth, k, prep=None):
    """Single-thread one-query calls, the whole set in one call on one thread, then on every core
    (median of 3 each). prep (untimed): a query row (1 x d) to what search_one takes, for engines
    whose calls take their own request objects."""
    set_threads(1)
    items = [prep(queries[i : i + 1]) for i in range(len(queries))] if prep else [queries[i : i + 1] for i in range(len(queries))]
    for q in items[: min(10, len(items))]:
        search_one(q)  # warm-up
    lat = np.empty(len(queries))
    found = np.empty((len(queries), k), dtype=np.int64)
    pc = time.perf_counter
    for i in range(len(queries)):
        q = items[i]
        t = pc()
        ids = search_one(q)
        lat[i] = pc() - t
        found[i] = pad(ids[0], k)
    secs1 = []
    for _ in range(3):
        t = pc()
        ids = search_batch(queries)
        secs1.append(pc() - t)
    batch1_recall = float(recalls(np.array([pad(r, k) for r in ids]), truth, k).mean())
    set_threads(NCORES)
    secs = []
    for _ in range(3):
        t = pc()
        ids = search_batch(queries)
        secs.append(pc() - t)
    rec = np.sort(recalls(found, truth, k))
    ms = np.sort(lat * 1e3)
    return dict(queries=len(queries), recall_mean=float(rec.mean()), recall_p5=nearest_rank(rec, 0.05), recall_min=float(rec[0]),
                latency_ms_mean=float(ms.mean()), latency_ms_p50=nearest_rank(ms, 0.5), latency_ms_p95=nearest_rank(ms, 0.95),
                latency_ms_p99=nearest_rank(ms, 0.99), qps_single=float(len(ms) / (ms.sum() / 1e3)),
                qps_batch=float(len(queries) / sorted(secs)[1]), batch_seconds=secs,
                batch_recall_mean=float(recalls(np.array([pad(r, k) for r in ids]), truth, k).mean()),
                qps_batch_1t=float(len(queries) / sorted(secs1)[1]), batch_1t_seconds=secs1, batch_1t_recall_mean=batch1_recall)


def scaled_nlist(nominal, n):
    """nlist for n points when `nominal` is meant for 1M: scaled by n / 1M to the nearest power of 2."""
    return int(min(nominal, max(16, 2 ** round(math.log2(nominal * n / 1e6)))))


# Every peer `--engines` can name; `usearch` is both of its scalar types.
PEER_ENGINES = ("faiss-hnsw", "hnswlib", "faiss-pq64", "faiss-pq32", "faiss-ivfpq", "faiss-ivfflat", "faiss-flat",
                "scann", "usearch", "usearch-f32", "usearch-i8", "qdrant-edge")
DEFAULT_ENGINES = "faiss-hnsw,hnswlib,faiss-pq64,faiss-pq32,faiss-ivfpq,faiss-ivfflat,faiss-flat,scann,usearch,qdrant-edge"
# Where each peer's Python module comes from (a peer whose module is missing is listed as skipped).
PEER_MODULES = {"hnswlib": ("hnswlib", "requirements-hnswlib.txt"), "scann": ("scann", "requirements-peers.txt"),
                "usearch": ("usearch", "requirements-peers.txt"), "qdrant": ("qdrant_edge", "requirements-peers.txt")}
# ScaNN: leaves searched, and per leaves count the AH candidates re-ranked exactly (as multiples of
# k; half steps, like RERANKS and K_FACTORS).
SCANN_LEAVES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
SCANN_REORDER = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]


def peer_configs(args, base):
    """(label, kind, factory string or params dict or None, knob name, values, note). Faiss indexes
    are made with the metric's Faiss metric (`faiss_metric`; cosine: inner product on normalised
    vectors), hnswlib and USearch with the metric of the same name, ScaNN with squared_l2 or
    dot_product (cosine: dot product on normalised vectors), Qdrant with Euclid, Dot or Cosine; a
    configuration that cannot serve the metric is listed as skipped (`faiss_supports`,
    `usearch_i8_skip`), as is one whose package is not installed."""
    n, dim = base.shape
    out = []
    want = set(args.engines.split(","))
    unknown = want - set(PEER_ENGINES)
    if unknown:
        sys.exit(f"--engines: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PEER_ENGINES)})")
    if "faiss-hnsw" in want:
        out.append(("Faiss HNSWFlat M32 efC200", "faiss", "HNSW32,Flat", "efSearch", HNSW_EFS, ""))
    if "hnswlib" in want:
        out.append(("hnswlib M32 efC200", "hnswlib", None, "ef", HNSW_EFS, ""))
    for m in (64, 32):
        if f"faiss-pq{m}" in want:
            if dim % m:
                out.append((f"Faiss PQ{m}x4fs,RFlat", "skip", None, None, [], f"dimension {dim} is not a multiple of {m}"))
            else:
                out.append((f"Faiss PQ{m}x4fs,RFlat", "faiss", f"PQ{m}x4fs,RFlat", "k_factor", K_FACTORS, ""))
    if "faiss-ivfpq" in want:
        nl = scaled_nlist(4096, n)
        note = "" if nl == 4096 else f"nlist scaled from 4096 to {nl} for {n} points"
        m = 64 if dim % 64 == 0 else None
        if m is None:
            out.append((f"Faiss IVF{nl},PQ64x4fs,RFlat", "skip", None, None, [], f"dimension {dim} is not a multiple of 64"))
        else:
            for kf in (8, 64):
                out.append((f"Faiss IVF{nl},PQ64x4fs,RFlat k_factor={kf}", "faiss", f"IVF{nl},PQ64x4fs,RFlat", "nprobe",
                            [p for p in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096] if p <= nl], note, kf))
    if "faiss-ivfflat" in want:
        nl = scaled_nlist(1024, n)
        note = "" if nl == 1024 else f"nlist scaled from 1024 to {nl} for {n} points"
        out.append((f"Faiss IVF{nl},Flat", "faiss", f"IVF{nl},Flat", "nprobe", [p for p in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] if p <= nl], note))
    if "faiss-flat" in want:
        out.append((f"Faiss IndexFlat{'L2' if args.metric == 'l2' else 'IP'} (exact)", "faiss", "Flat", None, [None], ""))
    if "scann" in want:
        # ScaNN's README recipe: a k-means tree (leaves ~ 2 sqrt(n) here), asymmetric hashing
        # with 2 dimensions per 4-bit block, anisotropic loss (threshold 0.2) for dot product,
        # then an exact re-rank; swept over leaves_to_search x reorder (scann_sweep).
        leaves = max(1, round(2 * math.sqrt(n)))
        aniso = args.metric != "l2"
        outer = [v for v in SCANN_LEAVES if v < leaves] + [leaves]
        out.append((f"ScaNN tree {leaves} leaves, AH dims_per_block 2{', anisotropic 0.2' if aniso else ''} + reorder", "scann",
                    dict(leaves=leaves, anisotropic=aniso), "leaves_to_search,reorder", (outer, [max(args.k, f * args.k) for f in SCANN_REORDER]),
                    f"distance {SCANN_DISTANCE[args.metric]}{' on normalised vectors' if args.metric == 'cosine' else ''}; "
                    f"tree trained on {min(n, 250000)} points; reorder = AH candidates re-ranked exactly (pre_reorder_num_neighbors)"))
    for dtype in ("f32", "i8"):
        if "usearch" in want or f"usearch-{dtype}" in want:
            why = usearch_i8_skip(base, args.metric) if dtype == "i8" else None
            for conn in (16, 32):
                label = f"USearch {dtype} M{conn} efC200"
                if why:
                    out.append((label, "skip", None, None, [], why))
                else:
                    out.append((label, "usearch", dict(dtype=dtype, connectivity=conn), "expansion_search", HNSW_EFS,
                                f"metric {USEARCH_METRIC[args.metric]}, connectivity {conn}, expansion_add 200"))
    if "qdrant-edge" in want:
        out.append(("Qdrant edge HNSW m32 efC200", "qdrant", dict(), "hnsw_ef", HNSW_EFS,
                    f"qdrant-edge-py EdgeShard, Distance.{QDRANT_DISTANCE[args.metric]}, f32 vectors, no quantisation, one segment "
                    "(default_segment_number 1, indexing_threshold 1 KB so the graph is always built), no WAL; build = upserts of 1000 points + optimize()"))
    checked = []
    for c in out:
        why = faiss_supports(c[2], dim, args.metric) if c[1] == "faiss" else None
        if c[1] in PEER_MODULES and not why:
            mod, req = PEER_MODULES[c[1]]
            if importlib.util.find_spec(mod) is None:
                why = f"Python module {mod} not installed (bench/compare/{req}; run.sh installs it for every dataset but smoke)"
        checked.append((c[0], "skip", None, None, [], why) if why else c)
    return checked


SCANN_DISTANCE = {"l2": "squared_l2", "ip": "dot_product", "cosine": "dot_product"}
USEARCH_METRIC = {"l2": "l2sq", "ip": "ip", "cosine": "cos"}
QDRANT_DISTANCE = {"l2": "Euclid", "ip": "Dot", "cosine": "Cosine"}


def usearch_i8_skip(base, metric):
    """None when USearch's i8 vectors serve the metric, else why not. USearch casts a vector to i8
    by scaling it to unit length and then by 127 under every metric (USearch 2.26.6: [0.5, -2,
    0.01, 3] is stored as [17, -69, 0, 104] under l2sq, ip and cos alike), so the lengths are
    lost: right for cosine, and for l2 / ip only when every row already has unit length."""
    if metric == "cosine":
        return None
    norms = np.linalg.norm(base, axis=1)
    lo, hi = float(norms.min()), float(norms.max())
    if abs(lo - 1) < 1e-3 and abs(hi - 1) < 1e-3:
        return None
    return (f"USearch i8 scales every vector to unit length before the cast to 8 bits, so it ranks by direction only; "
            f"{metric} on this base (row norms {lo:.3g}-{hi:.3g}) needs the lengths")


def faiss_supports(factory, dim, metric):
    """None when this Faiss build makes `factory` with the metric's Faiss metric and keeps it, else why not."""
    import faiss

    try:
        index = faiss.index_factory(dim, factory, faiss_metric(metric))
    except RuntimeError as e:
        return f"Faiss cannot make {factory} with {metric}: {str(e).strip().splitlines()[-1]}"
    if index.metric_type != faiss_metric(metric):
        return f"Faiss made {factory} with metric {index.metric_type}, not {metric}'s"
    return None


HNSWLIB_SPACE = {"l2": "l2", "ip": "ip", "cosine": "cosine"}


def build_peer(args, kind, factory, base, dim, path):
    """base: what this kind of engine gets (for_faiss(...) for Faiss and ScaNN, the raw rows for
    the others). Qdrant's shard is made at `path` (a folder); the others are written there by
    save_peer."""
    metric = args.metric
    if kind == "faiss":
        import faiss
        faiss.omp_set_num_threads(NCORES)
        index = faiss.index_factory(dim, factory, faiss_metric(metric))
        if factory.startswith("HNSW"):
            faiss.downcast_index(index).hnsw.efConstruction = 200
        t = time.time()
        if not index.is_trained:
            index.train(base)
        index.add(base)
        return index, time.time() - t
    if kind == "scann":
        import scann
        leaves = factory["leaves"]
        t = time.time()
        b = scann.scann_ops_pybind.builder(base, args.k, SCANN_DISTANCE[metric]).tree(
            num_leaves=leaves, num_leaves_to_search=max(1, leaves // 20), training_sample_size=min(len(base), 250000))
        b = b.score_ah(2, anisotropic_quantization_threshold=0.2) if factory["anisotropic"] else b.score_ah(2)
        b = b.reorder(10 * args.k)
        b.set_n_training_threads(NCORES)
        index = b.build()
        return index, time.time() - t
    if kind == "usearch":
        from usearch.index import Index
        index = Index(ndim=dim, metric=USEARCH_METRIC[metric], dtype=factory["dtype"], connectivity=factory["connectivity"],
                      expansion_add=200, expansion_search=64)
        t = time.time()
        index.add(np.arange(len(base), dtype=np.uint64), base, threads=NCORES)
        return index, time.time() - t
    if kind == "qdrant":
        import qdrant_edge as qe
        cfg = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=getattr(qe.Distance, QDRANT_DISTANCE[metric])),
                            hnsw_config=qe.HnswIndexConfig(m=32, ef_construct=200, full_scan_threshold=10000, max_indexing_threads=NCORES),
                            optimizers=qe.EdgeOptimizersConfig(default_segment_number=1, indexing_threshold=1), wal_enabled=False)
        t = time.time()
        shard = qe.EdgeShard.create(path, cfg)
        for lo in range(0, len(base), 1000):
            rows = base[lo : lo + 1000].tolist()
            shard.update(qe.UpdateOperation.upsert_points([qe.Point(lo + i, v) for i, v in enumerate(rows)]))
        shard.optimize()
        shard.flush()
        secs = time.time() - t
        info = shard.info()
        if info.indexed_vectors_count != len(base):
            sys.exit(f"Qdrant edge indexed {info.indexed_vectors_count} of {len(base)} vectors")
        shard.close()
        return None, secs
    import hnswlib
    index = hnswlib.Index(space=HNSWLIB_SPACE[metric], dim=dim)
    index.init_index(max_elements=len(base), ef_construction=200, M=32, random_seed=42)
    t = time.time()
    index.add_items(base, num_threads=NCORES)
    return index, time.time() - t


def save_peer(kind, index, path):
    """Writes the index at `path` (ScaNN: a folder of assets; Qdrant's shard is already there)
    and returns its size in bytes, and for a folder the bytes its files take on disk (Qdrant
    sizes some files ahead of their contents)."""
    if kind == "faiss":
        import faiss
        faiss.write_index(index, path)
    elif kind == "scann":
        os.makedirs(path)
        index.serialize(path)
    elif kind == "usearch":
        index.save(path)
    elif kind == "hnswlib":
        index.save_index(path)
    if os.path.isdir(path):
        files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        return sum(os.path.getsize(f) for f in files), sum(os.stat(f).st_blocks * 512 for f in files)
    return os.path.getsize(path), None


def pad(ids, k):
    """An answer as a row of k ids (a short one padded with -1: ScaNN on few leaves, say)."""
    ids = list(ids)[:k]
    return ids + [-1] * (k - len(ids))


def peer_search(args, kind, factory, index, path, knob, dim):
    """(set_knob, set_threads, search_one, search_batch, prep, close) for one built peer.
    search_one gets one query row (1 x d, or what prep made of it) and answers [ids];
    search_batch gets every query and answers one row of ids per query; set_threads(1) makes
    both run on one thread, set_threads(NCORES) lets the batch use every core."""
    k = args.k
    state = dict(threads=1, knob=None)
    prep = close = None
    if kind == "faiss":
        import faiss

        inner = faiss.downcast_index(index)
        ivf = faiss.extract_index_ivf(index) if "IVF" in (factory or "") else None

        def set_knob(v):
            if knob == "efSearch":
                inner.hnsw.efSearch = v
            elif knob == "k_factor":
                inner.k_factor = v
            elif knob == "nprobe":
                ivf.nprobe = v

        search_one = search_batch = lambda q: index.search(q, k)[1]
        return set_knob, faiss.omp_set_num_threads, search_one, search_batch, prep, close
    if kind == "hnswlib":
        def set_knob(v):
            index.set_ef(max(v, k))

        search_one = search_batch = lambda q: index.knn_query(q, k=k)[0]
        return set_knob, index.set_num_threads, search_one, search_batch, prep, close
    if kind == "scann":
        # One query: `search` (the calling thread). The set: `search_batched` on one thread, or
        # `search_batched_parallel` over the searcher's threads in chunks of a quarter of the
        # set per thread (the default 256-query chunks would leave a core idle on 300 queries).
        def set_threads(t):
            state["threads"] = t
            index.set_num_threads(t)

        def search_one(q):
            L, R = state["knob"]
            return [index.search(q[0], k, R, L)[0]]

        def search_batch(qs):
            L, R = state["knob"]
            if state["threads"] == 1:
                return index.search_batched(qs, k, R, L)[0]
            return index.search_batched_parallel(qs, k, R, L, batch_size=max(1, min(256, math.ceil(len(qs) / (4 * state["threads"])))))[0]

        return lambda v: state.update(knob=v), set_threads, search_one, search_batch, prep, close
    if kind == "usearch":
        def set_knob(v):
            index.expansion_search = v

        search_one = lambda q: [index.search(q[0], k, threads=1).keys]
        search_batch = lambda qs: index.search(qs, k, threads=state["threads"]).keys
        return set_knob, lambda t: state.update(threads=t), search_one, search_batch, prep, close
    # Qdrant edge: the shard opened with a search pool of 1 thread, or of every core for the
    # batch (`query_batch`); a query is a list of floats (made before the clock, as
    # bench/filter does).
    import qdrant_edge as qe

    def set_threads(t):
        if state.get("shard") is not None and state["threads"] == t:
            return
        if state.get("shard") is not None:
            state["shard"].close()
        params = qe.EdgeVectorParams(size=dim, distance=getattr(qe.Distance, QDRANT_DISTANCE[args.metric]))
        state["shard"] = qe.EdgeShard.load(path, qe.EdgeConfig(vectors=params, max_search_threads=t))
        state["threads"] = t

    def request(v):
        return qe.QueryRequest(limit=k, query=qe.Query.Nearest(v), params=qe.SearchParams(hnsw_ef=state["knob"]),
                               with_payload=False, with_vector=False)

    search_one = lambda v: [[p.id for p in state["shard"].query(request(v))]]
    search_batch = lambda qs: [[p.id for p in r] for r in state["shard"].query_batch(qe.QueryBatchRequest([request(v) for v in qs.tolist()]))]
    prep = lambda q: q[0].tolist()

    def close():
        if state.get("shard") is not None:
            state["shard"].close()

    return lambda v: state.update(knob=v), set_threads, search_one, search_batch, prep, close


def run_peer(args, ds, sets, cfg_tuple, base, query_data, results):
    label, kind, factory, knob, values, note = cfg_tuple[:6]
    extra_kf = cfg_tuple[6] if len(cfg_tuple) > 6 else None
    dim = base.shape[1]
    if kind == "skip":
        log(f"{label}: skipped ({note})")
        results.append(dict(engine=label.split()[0], config=label, family="skipped", skipped=[note], rows=[]))
        return
    log(f"{label}: build on {NCORES} threads")
    la = os.getloadavg()[0]
    path = os.path.join(args.work_dir, "peer.index")
    normalised = kind in ("faiss", "scann")  # the engines that get normalised vectors under cosine
    index, build_s = build_peer(args, kind, factory, for_faiss(base, args.metric) if normalised else base, dim, path)
    size, allocated = save_peer(kind, index, path)
    if allocated is not None and abs(allocated - size) > 0.05 * size:
        note = f"{note}; files {mb(size)} MiB, {mb(allocated)} MiB of them on disk" if note else f"files {mb(size)} MiB, {mb(allocated)} MiB of them on disk"
    probe = json.loads(subprocess.run([sys.executable, __file__, "--load-probe", kind, path, str(dim), args.metric], check=True,
                                      capture_output=True, text=True).stdout)
    cfg = dict(engine=label.split()[0], config=label, family=family_of(factory, kind), build_seconds=build_s,
               size_bytes=size, load_seconds=probe["load_seconds"], rss_before_load=probe["rss_before"],
               rss_after_load=probe["rss_after"], loadavg_at_build=la, note=note, rows=[])
    if kind == "faiss" and extra_kf is not None:
        import faiss
        faiss.downcast_index(index).k_factor = extra_kf
    set_knob, set_threads, search_one, search_batch, prep, close = peer_search(args, kind, factory, index, path, knob, dim)
    for set_name, qpath, tpath in sets:
        queries, truth = query_data[set_name]
        if normalised:
            queries = for_faiss(queries, args.metric)

        def at(v):
            if v is not None:
                set_knob(v)
            r = measure(search_one, search_batch, set_threads, queries, truth, args.k, prep)
            setting = "exact" if not knob else ",".join(f"{a}={b}" for a, b in zip(knob.split(","), v if isinstance(v, tuple) else (v,)))
            row = dict(query_set=set_name, setting=setting, family=cfg["family"], **r)
            cfg["rows"].append(row)
            log_row(label, row)
            return row

        if kind == "scann":
            grid_sweep(args, at, *values)
            continue
        for v in values:
            if done(args, at(v)):
                break
    if close:
        close()
    cfg["rss_after_runs_harness"] = rss_bytes()
    results.append(cfg)
    del index
    gc.collect()
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def grid_sweep(args, at, outer, inner):
    """Two knobs, the second a re-rank depth (ScaNN: leaves_to_search x reorder). Per outer value,
    deeper re-ranks until recall reaches the target, stops gaining (< 0.002 a step: the leaves
    bound it), or a setting is no faster than the fastest one that already reached the target
    (deeper costs more); the sweep ends when the shallowest re-rank of an outer value reaches the
    target or is no faster than that fastest one (more leaves cost more), or at --max-ms."""
    best = math.inf  # mean ms of the fastest setting that reached the target
    for o in outer:
        prev = None
        for j, i in enumerate(inner):
            row = at((o, i))
            ms = row["latency_ms_mean"]
            if row["recall_mean"] >= args.target_recall:
                best = min(best, ms)
            stop = row["recall_mean"] >= args.target_recall or ms >= args.max_ms or ms >= best
            if j == 0 and stop:
                return
            if stop or (prev is not None and row["recall_mean"] - prev < 0.002):
                break
            prev = row["recall_mean"]


def family_of(factory, kind):
    if kind in ("hnswlib", "usearch", "qdrant") or (isinstance(factory, str) and factory.startswith("HNSW")):
        return "hnsw"
    if kind == "scann":
        return "ivf"
    if factory == "Flat":
        return "exact"
    return "ivf" if "IVF" in factory else "scan"


def load_probe(kind, path, dim, metric="l2"):
    """Runs in a fresh process: load time and RSS before/after loading one index file (ScaNN,
    Qdrant: folder)."""
    if kind == "faiss":
        import faiss
    elif kind == "hnswlib":
        import hnswlib
    elif kind == "scann":
        import scann
    elif kind == "usearch":
        from usearch.index import Index
    elif kind == "qdrant":
        import qdrant_edge as qe
    before = rss_bytes()
    t = time.time()
    if kind == "faiss":
        index = faiss.read_index(path)
    elif kind == "hnswlib":
        index = hnswlib.Index(space=HNSWLIB_SPACE[metric], dim=dim)
        index.load_index(path)
    elif kind == "scann":
        index = scann.scann_ops_pybind.load_searcher(path)
    elif kind == "usearch":
        index = Index.restore(path)
    else:
        index = qe.EdgeShard.load(path)
    secs = time.time() - t
    print(json.dumps(dict(load_seconds=secs, rss_before=before, rss_after=rss_bytes())))
    if kind == "qdrant":
        index.close()


# ---------------------------------------------------------------- ground truth

def metric_distances(x, q, metric):
    """Distances (float64, ascending = nearer) from each row of q to each row of x, as the engine
    returns them: l2 squared L2, ip -q.x, cosine squared L2 between unit vectors (2 - 2 cos)."""
    x, q = np.asarray(x, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    if x.ndim == 3:  # one row of points per query
        dots = np.einsum("qkd,qd->qk", x, q)
    else:
        dots = q @ x.T
    if metric == "ip":
        return -dots
    if metric == "cosine":
        return 2.0 - 2.0 * dots
    xx = (x * x).sum(-1)
    return xx - 2.0 * dots + (q * q).sum(-1)[:, None]


def exact_truth(base, queries, metric, kk):
    """The kk nearest row ids of each query under `metric`, by NumPy in float64 over every
    point (ties broken by the lower id): the ground truth every engine's recall is measured on."""
    x64 = np.asarray(base, dtype=np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    xx = (x64 * x64).sum(1)
    n = len(x64)
    out = np.empty((len(queries), kk), dtype=np.int32)
    step = max(1, (1 << 25) // n)
    for i in range(0, len(queries), step):
        q = np.asarray(queries[i : i + step], dtype=np.float64)
        if metric == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = -(q @ x64.T)
        if metric == "l2":
            d = xx + 2.0 * d  # + |q|^2, the same for every point
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(q), 1))
        dp = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, dp), axis=1)
        out[i : i + len(q)] = np.take_along_axis(part, order, axis=1)
    return out


def faiss_metric(metric):
    """The Faiss metric that serves `metric` (cosine: inner product on normalised vectors)."""
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def for_faiss(x, metric):
    """What Faiss (and ScaNN) get: cosine normalises base and queries (neither has a cosine metric)."""
    if metric != "cosine":
        return x
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def ground_truth(args, ds):
    """Truth paths per set: given, or exact by NumPy for --metric; cross-checked against Faiss's
    flat index (IndexFlatL2, or IndexFlatIP on the metric's vectors) on a sample."""
    import faiss

    base = as_f32(ds["base"])
    flat_name = "IndexFlatL2" if args.metric == "l2" else "IndexFlatIP" + (" on normalised vectors" if args.metric == "cosine" else "")
    out, checks = [], []
    for name, qpath, tpath in ds["sets"]:
        q = as_f32(qpath)
        if tpath is None:
            tpath = os.path.join(args.work_dir, f"truth-{name}.npy")
            kk = min(100, len(base))
            t = time.time()
            np.save(tpath, exact_truth(base, q, args.metric, kk))
            log(f"ground truth for {name}: exact {args.metric} by NumPy (float64, every point), {kk} neighbours, {time.time() - t:.1f} s")
        truth = as_ids(tpath)
        sample = np.random.default_rng(1).choice(len(q), size=min(args.check_sample, len(q)), replace=False)
        faiss.omp_set_num_threads(NCORES)
        flat = faiss.IndexFlat(base.shape[1], faiss_metric(args.metric))
        flat.add(for_faiss(base, args.metric))
        D, I = flat.search(for_faiss(q[sample], args.metric), args.k)
        D = D.astype(np.float64)
        theirs = D if args.metric == "l2" else (-D if args.metric == "ip" else 2.0 - 2.0 * D)
        same_ids = sum(set(a) == set(b) for a, b in zip(I, truth[sample, : args.k]))
        # Ties or float rounding may swap ids at the boundary; distances must still agree
        # (relative to each distance, or to the row's largest where a distance is near 0).
        ours = np.sort(metric_distances(base[truth[sample, : args.k]], q[sample], args.metric), axis=1)
        scale = np.maximum(np.abs(theirs), 1e-3 * np.abs(theirs).max(axis=1, keepdims=True)).clip(1e-6)
        worst = float(np.max(np.abs(ours - theirs) / scale))
        ok = worst < 1e-3
        checks.append(dict(query_set=name, sample=len(sample), same_id_sets=int(same_ids), max_rel_distance_diff=worst, ok=ok,
                           metric=args.metric, against=f"Faiss {flat_name}"))
        log(f"truth check vs Faiss {flat_name} on {len(sample)} {name} queries: same top-{args.k} ids for {same_ids}, "
            f"largest relative distance difference {worst:.2e} -> {'OK' if ok else 'MISMATCH'}")
        if not ok:
            sys.exit(f"ground truth disagrees with Faiss {flat_name}")
        del flat
        out.append((name, qpath, tpath))
    return out, checks


# ---------------------------------------------------------------- report

def best_at(rows, thr, key):
    ok = [r for r in rows if r["recall_mean"] >= thr and r.get(key) is not None]
    return max(ok, key=lambda r: r[key]) if ok else None


def mb(b):
    return f"{b / 2**20:.1f}" if b is not None else "-"


def report(args, ds, results, meta):
    for c in results:
        for r in c["rows"]:
            r["qps_p50"] = 1e3 / r["latency_ms_p50"]
    sets = [s[0] for s in ds["sets"]]
    metric = meta.get("metric", "l2")
    L = [f"# {args.dataset}, metric {metric}", ""]
    L += [f"- {n}" for n in ds["notes"]]
    L += [f"- machine: {meta['cpu']}, {NCORES} cores, load average {meta['loadavg_start'][0]:.1f} at start, "
          f"{meta['loadavg_end'][0]:.1f} at end (shared machine: read timings as ±10-20 %)",
          f"- versions: {meta['versions']}; k = {args.k}; {meta['queries']}; sweeps stop at recall {args.target_recall} or {args.max_ms} ms mean",
          f"- command: `{meta['command']}` ({meta['seconds']:.0f} s)", ""]
    L += ["## Engines", "", "| configuration | build s (all cores) | size MiB | load s | RSS after load MiB (added by load) | notes |", "|---|---|---|---|---|---|"]
    for c in results:
        if c["family"] == "skipped":
            L.append(f"| {c['config']} | - | - | - | - | skipped: {'; '.join(c['skipped'])} |")
            continue
        added = (c["rss_after_load"] - c["rss_before_load"]) if c.get("rss_after_load") and c.get("rss_before_load") else None
        note = c.get("note", "")
        if c["engine"] == "VectorWise":
            note = f"file {c['file']}: built in {c['build_seconds']:.1f} s ({c['build_seconds_wall']:.1f} s wall with reading and writing); memory-mapped; kernels {c['simd']}"
            if c.get("skipped"):
                note += f"; not served: {c['skipped']}"
        build = f"{c['build_seconds']:.1f}"
        L.append(f"| {c['config']} | {build} | {mb(c['size_bytes'])} | {c['load_seconds']:.3f} | {mb(c['rss_after_load'])} ({mb(added)}) | {note} |")
    L += ["", "## Against the issue's targets", "",
          "Best VectorWise configuration against the best peer configuration at each recall target (mean recall@10); ratio > 1: VectorWise faster. "
          "QPS 1 thread is queries / total time (the mean), which on a busy machine is dominated by a few preempted queries; "
          "1/p50 (the median query) is the steadier comparison there. Batch: the whole query set in one call, on one thread and on every core.", "",
          "| query set | target | VectorWise QPS 1 thread (config, setting) | best peer QPS 1 thread (config, setting) | ratio | ratio of 1/p50 (best of each by p50) | "
          "VectorWise batch QPS 1 thread | best peer batch QPS 1 thread | ratio | VectorWise batch QPS | best peer batch QPS | ratio |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ours = lambda c: c["engine"] == "VectorWise"
    cell = lambda c, r, key: f"{r[key]:.0f} ({c['config']}, {r['setting']})" if r else "not reached"
    ratio = lambda a, b, key: f"{a[key] / b[key]:.2f}" if a and b else "-"

    def best(s, thr, engines, key):
        cands = [(c, best_at([r for r in c["rows"] if r["query_set"] == s], thr, key)) for c in results if engines(c)]
        cands = [(c, r) for c, r in cands if r]
        return max(cands, key=lambda x: x[1][key]) if cands else (None, None)

    for s in sets:
        for thr in (0.95, 0.99):
            peers = lambda c: c["engine"] != "VectorWise"
            (vc, v), (pc, p) = best(s, thr, ours, "qps_single"), best(s, thr, peers, "qps_single")
            (vbc, vb), (pbc, pb) = best(s, thr, ours, "qps_batch"), best(s, thr, peers, "qps_batch")
            (v1c, v1), (p1c, p1) = best(s, thr, ours, "qps_batch_1t"), best(s, thr, peers, "qps_batch_1t")
            (_, v50), (_, p50) = best(s, thr, ours, "qps_p50"), best(s, thr, peers, "qps_p50")
            L.append(f"| `{s}` | ≥ {thr} | {cell(vc, v, 'qps_single')} | {cell(pc, p, 'qps_single')} | {ratio(v, p, 'qps_single')} | {ratio(v50, p50, 'qps_p50')} | "
                     f"{cell(v1c, v1, 'qps_batch_1t')} | {cell(p1c, p1, 'qps_batch_1t')} | {ratio(v1, p1, 'qps_batch_1t')} | "
                     f"{cell(vbc, vb, 'qps_batch')} | {cell(pbc, pb, 'qps_batch')} | {ratio(vb, pb, 'qps_batch')} |")
    L += ["", "## Against each peer engine", "",
          "Per peer engine, its fastest configuration and setting at each recall target against VectorWise's fastest, in each of the three ways of "
          "calling (each column picks its own best); ratio > 1: VectorWise faster.", "",
          "| query set | target | peer | QPS 1 thread, one query a call: VectorWise / peer = ratio | batch 1 thread: VectorWise / peer = ratio | "
          f"batch {NCORES} threads: VectorWise / peer = ratio | peer's settings (1 thread; batch 1 thread; batch) |",
          "|---|---|---|---|---|---|---|"]
    engines = list(dict.fromkeys(c["engine"] for c in results if c["engine"] != "VectorWise" and c["family"] != "skipped"))
    for s in sets:
        for thr in (0.95, 0.99):
            for e in engines:
                cols, where = [], []
                for key in ("qps_single", "qps_batch_1t", "qps_batch"):
                    (_, v), (pc, p) = best(s, thr, ours, key), best(s, thr, lambda c: c["engine"] == e, key)
                    cols.append(f"{v[key]:.0f} / {p[key]:.0f} = **{v[key] / p[key]:.2f}**" if v and p else
                                f"{v[key]:.0f} / not reached" if v else "-")
                    where.append((pc["config"], p["setting"]) if p else ("-", "-"))
                if len({w[0] for w in where}) == 1:
                    where = f"{where[0][0]}: {'; '.join(w[1] for w in where)}"
                else:
                    where = "; ".join(f"{c} {st}" for c, st in where)
                L.append(f"| `{s}` | ≥ {thr} | {e} | {' | '.join(cols)} | {where} |")
    for s in sets:
        L += ["", f"## Query set `{s}`: fastest setting at a recall target", "",
              "| target | configuration | setting | recall@10 mean / p5 | QPS 1 thread | 1/p50 | ms mean / p50 / p95 / p99 | best batch QPS 1 thread (setting, recall) | best batch QPS (setting, recall) |",
              "|---|---|---|---|---|---|---|---|---|"]
        for thr in (0.95, 0.99):
            line = []
            for c in results:
                rows = [r for r in c["rows"] if r["query_set"] == s]
                b, bb, b1 = best_at(rows, thr, "qps_single"), best_at(rows, thr, "qps_batch"), best_at(rows, thr, "qps_batch_1t")
                one = f"{b1['qps_batch_1t']:.0f} ({b1['setting']}, {b1.get('batch_1t_recall_mean', b1['recall_mean']):.4f})" if b1 else "-"
                if b:
                    line.append((b["qps_single"], f"| ≥ {thr} | {c['config']} | {b['setting']} | {b['recall_mean']:.4f} / {b['recall_p5']:.2f} | "
                                 f"{b['qps_single']:.0f} | {b['qps_p50']:.0f} | {b['latency_ms_mean']:.3f} / {b['latency_ms_p50']:.3f} / {b['latency_ms_p95']:.3f} / {b['latency_ms_p99']:.3f} | "
                                 f"{one} | {bb['qps_batch']:.0f} ({bb['setting']}, {bb['recall_mean']:.4f}) |"))
                elif rows:
                    top = max(rows, key=lambda r: r["recall_mean"])
                    line.append((-1, f"| ≥ {thr} | {c['config']} | not reached | best {top['recall_mean']:.4f} at {top['setting']} | - | - | - | - | - |"))
            L += [x[1] for x in sorted(line, key=lambda x: -x[0])]
        L += ["", f"## Query set `{s}`: every setting", "",
              "| configuration | setting | recall@10 mean | p5 | min | QPS 1 thread | ms mean | p50 | p95 | p99 | batch QPS 1 thread | batch QPS |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in results:
            for r in c["rows"]:
                if r["query_set"] == s:
                    L.append(f"| {c['config']} | {r['setting']} | {r['recall_mean']:.4f} | {r['recall_p5']:.2f} | {r['recall_min']:.2f} | "
                             f"{r['qps_single']:.0f} | {r['latency_ms_mean']:.3f} | {r['latency_ms_p50']:.3f} | {r['latency_ms_p95']:.3f} | "
                             f"{r['latency_ms_p99']:.3f} | {r['qps_batch_1t']:.0f} | {r['qps_batch']:.0f} |" if r.get("qps_batch_1t") is not None else
                             f"{r['latency_ms_p99']:.3f} | - | {r['qps_batch']:.0f} |")
        L += ["", f"![recall-QPS, {s}](recall_qps_{s}.png)"]
    return "\n".join(L) + "\n"


def plot(args, results, set_name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(21, 6))
    markers = "osD^v<>ph*X"
    for ax, key, title in ((axes[0], "qps_single", "single thread, one query per call"), (axes[1], "qps_batch_1t", "batch, all queries in one call, 1 thread"),
                           (axes[2], "qps_batch", f"batch, all queries in one call, {NCORES} threads")):
        for i, c in enumerate(results):
            rows = sorted((r for r in c["rows"] if r["query_set"] == set_name and r.get(key) is not None), key=lambda r: r["recall_mean"])
            if not rows:
                continue
            ax.plot([r["recall_mean"] for r in rows], [r[key] for r in rows], marker=markers[i % len(markers)],
                    linestyle="-" if c["engine"] == "VectorWise" else "--", linewidth=2.2 if c["engine"] == "VectorWise" else 1.2,
                    label=c["config"], markersize=5)
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{args.k}")
        ax.set_ylabel("queries per second")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        for thr in (0.95, 0.99):
            ax.axvline(thr, color="grey", linewidth=0.6, linestyle=":")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{args.dataset}, query set `{set_name}`: recall@{args.k} vs QPS (up and to the right is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--load-probe":
        return load_probe(sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", help="sphere-100k | sphere-1m | clustered-100k | clustered-1m | clustered-norms-100k | real-manpages | real-scaled | custom | smoke")
    ap.add_argument("--metric", choices=["l2", "ip", "cosine"],
                    help="what distances mean, for every engine and the ground truth: l2 (squared Euclidean), ip (inner product), "
                         "cosine (on normalised vectors); default: l2, except ip for real-scaled")
    ap.add_argument("--real-data", help="real-scaled: the folder holding the real set's base.npy and queries.npy (default bench/data/real-manpages)")
    ap.add_argument("--vectorwise", default=os.path.join(ROOT, "target", "release", "vectorwise"))
    ap.add_argument("--data-dir", help="where the dataset's files live (default bench/data/<dataset>)")
    ap.add_argument("--out-dir", help="results (default bench/results/<dataset>)")
    ap.add_argument("--base"), ap.add_argument("--queries"), ap.add_argument("--truth")
    ap.add_argument("--nq", type=int, default=1000, help="queries per generated query set")
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target-recall", type=float, default=0.995)
    ap.add_argument("--max-ms", type=float, default=50.0)
    ap.add_argument("--check-sample", type=int, default=200, help="queries whose ground truth Faiss's flat index re-checks")
    ap.add_argument("--smoke-check", action="store_true", help="CI's check after the run (always on for the smoke dataset)")
    ap.add_argument("--vw-methods", default="hnsw,scan,ivf",
                    help="VectorWise index files to build and sweep: hnsw, scan (exhaustive, also serves exact), scan2 (exhaustive, --scan-dsub 2), scan3 (exhaustive, --scan-dsub 3), ivf (partitioned scan)")
    ap.add_argument("--ivf-lists", type=int, help="lists of the partitioned (ivf) file; default about sqrt(n)")
    ap.add_argument("--engines", help=f"peers to run, from {', '.join(PEER_ENGINES)} (VectorWise always runs; usearch: usearch-f32 and usearch-i8)",
                    default=DEFAULT_ENGINES)
    ap.add_argument("--report-only", action="store_true", help="re-render results.md and the plots from results.json")
    args = ap.parse_args()
    args.data_dir = args.data_dir or os.path.join(ROOT, "bench", "data", args.dataset)
    args.metric = args.metric or default_metric(args.dataset)
    # A dataset's own metric keeps the old place; another metric gets its own.
    suffix = "" if args.metric == default_metric(args.dataset) else f"-{args.metric}"
    args.out_dir = args.out_dir or os.path.join(ROOT, "bench", "results", args.dataset + suffix)
    if args.report_only:
        saved = json.load(open(os.path.join(args.out_dir, "results.json")))
        meta, results = saved["meta"], saved["results"]
        names = sorted({r["query_set"] for c in results for r in c["rows"]}, key=lambda n: [r["query_set"] for c in results for r in c["rows"]].index(n))
        ds = dict(sets=[(n, None, None) for n in names], notes=meta["notes"])
        for n in names:
            plot(args, results, n, os.path.join(args.out_dir, f"recall_qps_{n}.png"))
        with open(os.path.join(args.out_dir, "results.md"), "w") as f:
            f.write(report(args, ds, results, meta))
        return
    os.makedirs(args.out_dir, exist_ok=True)
    args.work_dir = tempfile.mkdtemp(prefix="vw-compare-", dir=args.data_dir if os.path.isdir(args.data_dir) else None)
    start, la0 = time.time(), os.getloadavg()
    import faiss, matplotlib  # fail early when the venv is incomplete

    ds = prepare(args)
    ds["notes"].insert(0, METRIC_NOTES[args.metric])
    log(f"dataset {args.dataset}: base {ds['base']}, query sets {[s[0] for s in ds['sets']]}, metric {args.metric}")
    base = as_f32(ds["base"])
    n, dim = base.shape
    results = []
    built = build_vectorwise(args, ds)
    sets, checks = ground_truth(args, ds)
    query_data = {name: (as_f32(q), as_ids(tp)) for name, q, tp in sets}
    meta_q = ", ".join(f"`{name}`: {len(v[0])} queries" for name, v in query_data.items())
    run_vectorwise(args, sets, results, built)
    for cfg in peer_configs(args, base):
        run_peer(args, ds, sets, cfg, base, query_data, results)
    meta = dict(dataset=args.dataset, metric=args.metric, n=n, dim=dim, k=args.k, queries=meta_q, cpu=cpu_model(), cores=NCORES,
                loadavg_start=la0, loadavg_end=os.getloadavg(), seconds=time.time() - start,
                command=" ".join(["bench/compare/run.sh", args.dataset] + sys.argv[2:]),
                versions=versions(args), truth_checks=checks, notes=ds["notes"], date=time.strftime("%Y-%m-%d %H:%M"))
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(dict(meta=meta, results=results), f, indent=1)
    for s in sets:
        plot(args, results, s[0], os.path.join(args.out_dir, f"recall_qps_{s[0]}.png"))
    md = report(args, ds, results, meta)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(md)
    for p in os.listdir(args.work_dir):
        os.remove(os.path.join(args.work_dir, p))
    os.rmdir(args.work_dir)
    log(f"done in {time.time() - start:.0f} s: {args.out_dir}/results.md, results.json, recall_qps_*.png")
    print(md)
    if args.dataset == "smoke" or args.smoke_check:
        smoke_check(args, results, sets)


def smoke_check(args, results, sets):
    """CI's check: every output exists and both HNSWs reach recall 0.95 on the easy smoke set."""
    problems = [f"missing {f}" for f in ["results.md", "results.json"] + [f"recall_qps_{s[0]}.png" for s in sets]
                if not os.path.getsize(os.path.join(args.out_dir, f))]
    for c in results:
        if c["family"] in ("hnsw", "exact"):
            best = max((r["recall_mean"] for r in c["rows"]), default=0.0)
            if best < 0.95:
                problems.append(f"{c['config']}: best recall {best:.3f} < 0.95")
    if problems:
        sys.exit("smoke check failed: " + "; ".join(problems))
    # run.sh smoke prints the closing "smoke check: N passed, M failed" over its runs.
    print(f"smoke check ok: {args.dataset}, metric {args.metric}")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions(args):
    import faiss, numpy

    try:
        import hnswlib

        hv = f", hnswlib {getattr(hnswlib, '__version__', None) or importlib.metadata.version('hnswlib')}"
    except ImportError:
        hv = ""
    for dist in ("scann", "usearch", "qdrant-edge-py"):
        try:
            hv += f", {dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    v = subprocess.run([args.vectorwise, "--version"], capture_output=True, text=True).stdout.strip()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", "crates", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    # The engine's sources as of their last commit (later commits may touch only the harness).
    engine = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h", "--", "crates", "Cargo.toml", "Cargo.lock"],
                            capture_output=True, text=True).stdout.strip()
    if engine and engine != rev:
        rev = f"{rev}, engine sources as of {engine}"
    tree_bin = os.path.abspath(args.vectorwise) == os.path.join(ROOT, "target", "release", "vectorwise")
    origin = f"git {rev}{' + uncommitted changes' if dirty else ''}" if tree_bin else f"binary {args.vectorwise}, not built by run.sh"
    return f"{v} ({origin}), faiss {faiss.__version__}{hv}, numpy {numpy.__version__}, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
