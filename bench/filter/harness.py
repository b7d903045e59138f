#!/usr/bin/env python3
"""Filtered-search harness: VectorWise and its peers side by side in one run (README.md here).

    bash bench/filter/run.sh --n 200000            # every peer
    bash bench/filter/run.sh --smoke               # 5000 points, VectorWise + Faiss HNSW

Makes the data (vectorwise generate --kind clustered, queries = held-out rows of the same
generator), the payload columns (uncorrelated u2..u10000, correlated c2..c10000, price), one
engine-neutral filter per query for each filter set, and the exact filtered ground truth (numpy,
matrix products on the allowed subset). Then one worker process per engine (worker.py, each in
its own venv) builds its index, and the harness interleaves the engines: for each pass, for each
filter, every engine and configuration runs the same queries one at a time. Writes
bench/results/filter-<date>-<n>.md and .json.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
K = 10

# Selectivity (percent) -> how many equally likely values the field takes.
SELECTIVITIES = {"50": 2, "10": 10, "1": 100, "0.1": 1000, "0.01": 10000}
SLOW = {"lancedb", "milvus-lite", "chromadb", "hnswlib"}  # fewer queries, one pass

# engine -> (venv, [(config label, config)])
ENGINES = {
    "vectorwise": ("core", [("balanced", {"profile": "balanced"}),
                            ("high_accuracy", {"profile": "high_accuracy"}),
                            ("exact (recall_target 1.0)", {"recall_target": 1.0}),
                            ("HTTP round trip alone (GET /)", {"http_floor": True})]),
    "vectorwise-inproc": ("core", [("balanced, 1 thread", {"profile": "balanced"}),
                                   ("high_accuracy, 1 thread", {"profile": "high_accuracy"}),
                                   ("exact (recall_target 1.0), 1 thread", {"recall_target": 1.0})]),
    "qdrant-edge": ("qdrant-edge", [("default", {})]),
    "faiss-hnsw": ("faiss", [(f"efSearch {e}", {"ef": e}) for e in (32, 128, 512)]),
    "faiss-ivf": ("faiss", [(f"nprobe {p}", {"nprobe": p}) for p in (8, 32, 128)]),
    "hnswlib": ("hnswlib", [(f"ef {e}", {"ef": e}) for e in (64, 256)]),
    "lancedb": ("lancedb", [("IVF_PQ default", {}),
                            ("IVF_PQ nprobes 64 refine 10", {"nprobes": 64, "refine_factor": 10})]),
    "milvus-lite": ("milvus-lite", [("AUTOINDEX default", {})]),
    "chromadb": ("chromadb", [("default", {})]),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return None


# --------------------------------------------------------------------------- data

def make_data(a, d):
    """base.npy, queries.npy, cols.npz, payloads.jsonl, meta.json in d (kept for later runs)."""
    meta_f = d / "meta.json"
    want = {"n": a.n, "nq": a.nq, "dim": a.dim, "clusters": a.clusters, "seed": a.seed, "version": 2}
    if meta_f.exists():
        meta = json.loads(meta_f.read_text())
        if meta.get("recipe") == want:
            return meta
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("truth-*.npy"):
        f.unlink()
    t0 = time.perf_counter()
    raw = d / "raw.npy"
    # n + nq rows of one generator run: rows come in fixed blocks from per-block seeds, so the
    # last nq rows are held-out points of the same mixture (bench/compare does the same).
    subprocess.run([a.vw_bin, "generate", "--kind", "clustered", "--clusters", str(a.clusters), "--n",
                    str(a.n + a.nq), "--dim", str(a.dim), "--seed", str(a.seed), "--out", str(raw)],
                   check=True, capture_output=True)
    x = np.load(raw, mmap_mode="r")
    np.save(d / "base.npy", np.ascontiguousarray(x[:a.n]))
    np.save(d / "queries.npy", np.ascontiguousarray(x[a.n:]))
    del x
    raw.unlink()
    base = np.load(d / "base.npy", mmap_mode="r")
    rng = np.random.default_rng(a.seed + 1)
    cols = {}
    for m in SELECTIVITIES.values():
        cols[f"u{m}"] = rng.integers(0, m, a.n).astype(np.int32)
    # Correlated: the rank of each point's projection on the data's first principal direction
    # (power iteration on a sample), cut into m equal buckets; bucket 0 holds the points at one
    # end of the data, away from most queries.
    samp = np.asarray(base[rng.choice(a.n, min(a.n, 20000), replace=False)], dtype=np.float64)
    mu = samp.mean(0)
    c = samp - mu
    v = rng.standard_normal(a.dim)
    for _ in range(100):
        v = c.T @ (c @ v)
        v /= np.linalg.norm(v)
    proj = np.empty(a.n)
    for s in range(0, a.n, 100000):
        proj[s:s + 100000] = (np.asarray(base[s:s + 100000], dtype=np.float64) - mu) @ v
    rank = np.empty(a.n, dtype=np.int64)
    rank[np.argsort(proj, kind="stable")] = np.arange(a.n)
    for m in SELECTIVITIES.values():
        cols[f"c{m}"] = (rank * m // a.n).astype(np.int32)
    cols["price"] = rng.integers(0, 100000, a.n).astype(np.int32)
    np.savez(d / "cols.npz", **cols)
    keyword = [f for f in cols if f.startswith("u")]
    with open(d / "payloads.jsonl", "wb") as fh:
        names = list(cols)
        arrs = [cols[f] for f in names]
        kw = [f in keyword for f in names]
        for i in range(a.n):
            fh.write(orjson.dumps({f: (f"k{int(c[i])}" if k else int(c[i])) for f, c, k in zip(names, arrs, kw)}))
            fh.write(b"\n")
    qproj = (np.load(d / "queries.npy").astype(np.float64) - mu) @ v
    meta = {"recipe": want, "keyword_fields": keyword, "fields": list(cols),
            "principal_direction_query_rank_median": float(np.searchsorted(np.sort(proj), np.median(qproj)) / a.n),
            "make_s": time.perf_counter() - t0}
    meta_f.write_text(json.dumps(meta, indent=1))
    return meta


def make_filters(a, nq_all):
    """Engine-neutral filters, one condition per query (values vary across queries)."""
    qi = np.arange(nq_all)
    out = {"none": {"label": "unfiltered", "kind": "none", "sel_pct": 100.0, "cond": None}}
    for sel in a.selectivities:
        if sel == "range5":
            lo = (qi * 7919 % 95) * 1000  # a 5 % window of price 0..99999, moving with the query
            out["range5"] = {"label": "range 5%", "kind": "range", "sel_pct": 5.0,
                             "cond": {"kind": "range", "field": "price", "lo": lo.tolist(), "hi": (lo + 5000).tolist()}}
            continue
        kind, pct = sel[0], sel[1:]
        m = SELECTIVITIES[pct]
        if kind == "u":
            vals = (qi * 7919 % m).tolist()  # a different bucket for successive queries
            out[f"u{pct}"] = {"label": f"uncorr {pct}%", "kind": "uncorrelated", "sel_pct": float(pct),
                              "cond": {"kind": "match", "field": f"u{m}", "values": vals}}
        else:
            out[f"c{pct}"] = {"label": f"corr {pct}%", "kind": "correlated", "sel_pct": float(pct),
                              "cond": {"kind": "match", "field": f"c{m}", "values": [0] * nq_all}}
    return out


def truth_for(d, fid, flt, base, queries, cols, sqn):
    """Exact top-k ids (float64 re-rank of float32 candidates), -1 padded; allowed counts."""
    f = d / f"truth-{fid}.npy"
    fa = d / f"allowed-{fid}.npy"
    if f.exists() and fa.exists():
        return np.load(f), np.load(fa)
    nq = len(queries)
    out = np.full((nq, K), -1, dtype=np.int64)
    allowed = np.zeros(nq, dtype=np.int64)
    cond = flt["cond"]
    groups = {}
    for qi in range(nq):
        if cond is None:
            key = None
        elif cond["kind"] == "match":
            key = (cond["values"][qi],)
        else:
            key = (cond["lo"][qi], cond["hi"][qi])
        groups.setdefault(key, []).append(qi)
    for key, qis in groups.items():
        if cond is None:
            ids = None
        elif cond["kind"] == "match":
            ids = np.flatnonzero(cols[cond["field"]] == key[0])
        else:
            c = cols[cond["field"]]
            ids = np.flatnonzero((c >= key[0]) & (c < key[1]))
        n_allowed = base.shape[0] if ids is None else len(ids)
        allowed[qis] = n_allowed
        if n_allowed == 0:
            continue
        sub = base if ids is None else base[ids]
        subn = sqn if ids is None else sqn[ids]
        kk = min(n_allowed, 4 * K)
        for s in range(0, len(qis), 64):
            qq = np.asarray(qis[s:s + 64])
            Q = queries[qq]
            dist = subn[None, :] - 2.0 * (Q @ sub.T)
            cand = np.argpartition(dist, kk - 1, axis=1)[:, :kk] if kk < n_allowed else \
                np.tile(np.arange(n_allowed), (len(qq), 1))
            for j, qi in enumerate(qq):
                cj = cand[j]
                ex = ((sub[cj].astype(np.float64) - queries[qi].astype(np.float64)) ** 2).sum(1)
                order = np.lexsort((cj, ex))[:K]
                got = cj[order] if ids is None else ids[cj[order]]
                out[qi, :len(got)] = got
    np.save(f, out)
    np.save(fa, allowed)
    return out, allowed


# --------------------------------------------------------------------------- workers

class Worker:
    def __init__(self, engine, venv, a, data_dir, work):
        self.engine = engine
        py = HERE / ".venvs" / venv / "bin" / "python"
        self.error = None
        self.p = None
        if not py.exists():
            lg = HERE / ".venvs" / f"{venv}.log"
            self.error = f"venv {venv} missing" + (f": {lg.read_text()[-800:]}" if lg.exists() else "")
            return
        stamp = HERE / ".venvs" / venv / ".requirements.sha256"
        if not stamp.exists():
            lg = HERE / ".venvs" / f"{venv}.log"
            self.error = f"pip install of requirements/{venv}.txt failed: " + (lg.read_text()[-800:] if lg.exists() else "")
            return
        opts = {"bin": a.vw_bin}
        self.log = open(work / f"{engine}.log", "a")
        (work / engine).mkdir(parents=True, exist_ok=True)
        self.p = subprocess.Popen([str(py), str(HERE / "worker.py"), engine, "--data", str(data_dir),
                                   "--work", str(work / engine), "--opts", json.dumps(opts)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                  bufsize=1)
        r = self.recv()
        if "error" in r:
            self.error = r["error"]

    def recv(self):
        line = self.p.stdout.readline()
        if not line:
            return {"error": f"worker exited ({self.p.wait()}); see {self.log.name}"}
        return json.loads(line)

    def call(self, **cmd):
        if self.p is None or self.p.poll() is not None:
            return {"error": self.error or "worker not running"}
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return self.recv()

    def close(self):
        if self.p and self.p.poll() is None:
            try:
                self.p.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.p.stdin.flush()
                self.p.wait(60)
            except Exception:  # noqa: BLE001
                self.p.kill()


def score(ids, truth, allowed):
    """recall@10 (denominator min(k, allowed); queries with nothing allowed skipped), short answers."""
    rec, short = [], 0
    for i in range(len(ids)):
        want = min(K, int(allowed[i]))
        got = ids[i][ids[i] >= 0]
        if len(got) < want:
            short += 1
        if want == 0:
            continue
        t = set(truth[i][:want].tolist())
        rec.append(len(t & set(got.tolist())) / want)
    return (float(np.mean(rec)) if rec else None), short


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--nq", type=int, default=1000, help="queries for the fast engines")
    ap.add_argument("--nq-slow", type=int, default=200, help="queries for hnswlib, lancedb, milvus-lite, chromadb")
    ap.add_argument("--passes", type=int, default=3, help="passes over the queries (fast engines); median")
    ap.add_argument("--slow-passes", type=int, default=1)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--filter-selectivity", default="50,10,1,0.1,0.01,range5",
                    help="comma list: 50,10,1,0.1,0.01 (each both uncorrelated and correlated), u1 / c1 "
                         "for one kind only, range5 (price, ~5%%)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--smoke", action="store_true", help="5000 points, VectorWise + Faiss HNSW, < 1 min")
    ap.add_argument("--vw-bin", default=str(REPO / "target" / "release" / "vectorwise"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="output path without extension")
    ap.add_argument("--no-unfiltered", action="store_true")
    ap.add_argument("--prepare-only", action="store_true", help="make the data and the truth, then stop")
    ap.add_argument("--vw-extra", default="[]",
                    help='extra VectorWise request options to measure, a JSON list, e.g. [{"ef_search": 1000}]')
    ap.add_argument("--build-only", action="store_true", help="also build (and keep) every engine's index, then stop")
    a = ap.parse_args()
    if a.smoke:
        a.n, a.nq, a.passes, a.nq_slow = 5000, 200, 1, 50
        if a.filter_selectivity == ap.get_default("filter_selectivity"):
            a.filter_selectivity = "10,1,range5"
        if a.engines == ap.get_default("engines"):
            a.engines = "vectorwise,faiss-hnsw"
    sels = []
    for s in a.filter_selectivity.split(","):
        s = s.strip().rstrip("%")
        if s == "range5":
            sels.append(s)
        elif s[:1] in ("u", "c") and s[1:] in SELECTIVITIES:
            sels.append(s)
        elif s in SELECTIVITIES:
            sels += ["u" + s, "c" + s]
        else:
            ap.error(f"unknown selectivity {s!r}")
    a.selectivities = sels
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    for extra in json.loads(a.vw_extra):
        ENGINES["vectorwise"][1].append((json.dumps(extra, separators=(",", ":")), extra))
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e}")
    tag = "smoke" if a.smoke else str(a.n)
    data_dir = Path(a.data_dir) if a.data_dir else REPO / "bench" / "data" / f"filter-{tag}"
    # The data always holds at least 1000 queries (and their truth), so a run with fewer
    # (--nq 300) reuses the same files and measures their first rows.
    nq_all = max(a.nq, a.nq_slow, 200 if a.smoke else 1000)
    t_start = time.time()
    load_start = loadavg()
    log(f"data in {data_dir}")
    meta = make_data(argparse.Namespace(**{**vars(a), "nq": nq_all}), data_dir)
    filters = make_filters(a, nq_all)
    if a.no_unfiltered:
        filters.pop("none")
    (data_dir / "filters.json").write_text(json.dumps(filters))
    base = np.load(data_dir / "base.npy")
    queries = np.load(data_dir / "queries.npy")
    cols = dict(np.load(data_dir / "cols.npz"))
    sqn = (base.astype(np.float32) ** 2).sum(1)
    truth, allowed = {}, {}
    t0 = time.perf_counter()
    for fid, flt in filters.items():
        truth[fid], allowed[fid] = truth_for(data_dir, fid, flt, base, queries, cols, sqn)
    truth_s = time.perf_counter() - t0
    log(f"truth for {len(filters)} filters in {truth_s:.1f} s")
    del base
    if a.prepare_only:
        return
    for fid, flt in filters.items():
        flt["allowed_median"] = float(np.median(allowed[fid][:a.nq]))
        flt["measured_sel_pct"] = 100.0 * float(np.mean(allowed[fid][:a.nq])) / a.n
        flt["queries_under_k"] = int((allowed[fid][:a.nq] < K).sum())

    work = data_dir / "engines"
    work.mkdir(exist_ok=True)
    workers, builds, skipped = {}, {}, {}
    for e in engines:
        log(f"{e}: start + build")
        w = Worker(e, ENGINES[e][0], a, data_dir, work)
        if w.error:
            skipped[e] = w.error
            log(f"{e}: skipped: {w.error[:300]}")
            w.close()
            continue
        r = w.call(cmd="build")
        if "error" in r:
            skipped[e] = r["error"]
            log(f"{e}: build failed: {r['error'][:300]}")
            w.close()
            continue
        builds[e] = r
        log(f"{e}: built ({r.get('build_s') or r.get('wall_s'):.1f} s{', reused' if r.get('reused') else ''})")
        workers[e] = w

    if a.build_only:
        for w in workers.values():
            w.close()
        log(f"built: {json.dumps({e: b.get('build_s') for e, b in builds.items()})}; skipped: {skipped}")
        return
    runs = {}  # (engine, config label, fid) -> list of pass results
    live = list(workers)
    max_passes = max(a.passes, a.slow_passes)
    for p in range(max_passes):
        for fid in filters:
            order = live[p % max(1, len(live)):] + live[:p % max(1, len(live))]
            for e in order:
                slow = e in SLOW
                if p >= (a.slow_passes if slow else a.passes):
                    continue
                nq = min(a.nq_slow, nq_all) if slow else a.nq
                for label, cfg in ENGINES[e][1]:
                    if cfg.get("http_floor") and fid != "none":
                        continue  # the client's HTTP round trip: once per pass
                    if "recall_target" in cfg and p > 0 and filters[fid]["sel_pct"] > 1:
                        continue  # the exact reference: every filter once, the selective ones every pass
                    r = workers[e].call(cmd="search", filter=fid, config=cfg, nq=nq)
                    if "error" in r:
                        log(f"{e} {label} {fid}: error {r['error'][:300]}")
                        runs.setdefault((e, label, fid), []).append({"error": r["error"]})
                        continue
                    ids = np.asarray(r["ids"], dtype=np.int64)
                    lat = np.asarray(r["lat"]) * 1000
                    rec, short = score(ids, truth[fid][:nq], allowed[fid][:nq])
                    res = {"recall": rec, "short": short, "nq": nq, "p50_ms": float(np.percentile(lat, 50)),
                           "p95_ms": float(np.percentile(lat, 95)), "mean_ms": float(lat.mean()),
                           "extra": r.get("extra", {})}
                    runs.setdefault((e, label, fid), []).append(res)
                    log(f"pass {p} {fid:6} {e:12} {label:28} recall {rec if rec is None else round(rec, 4)} "
                        f"p50 {res['p50_ms']:.3f} ms p95 {res['p95_ms']:.3f} short {short} {r.get('extra') or ''}")
    for w in workers.values():
        w.close()

    # ---------------------------------------------------------------- aggregate + report
    summary = {}
    for (e, label, fid), rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            summary.setdefault(f"{e} / {label}", {})[fid] = {"error": rs[0]["error"]}
            continue
        recs = [r["recall"] for r in ok if r["recall"] is not None]
        summary.setdefault(f"{e} / {label}", {})[fid] = {
            "recall": ok[0]["recall"], "recall_min_over_passes": min(recs) if recs else None,
            "p50_ms": float(np.median([r["p50_ms"] for r in ok])),
            "p95_ms": float(np.median([r["p95_ms"] for r in ok])),
            "short": ok[0]["short"], "nq": ok[0]["nq"], "passes": len(ok),
            "p50_ms_each_pass": [round(r["p50_ms"], 4) for r in ok], "extra": ok[0]["extra"]}
    date = datetime.date.today().isoformat()
    try:
        # the engine's commit: the last one that touched the Rust code (bench/ commits do not count)
        commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", "crates", "Cargo.lock"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    if a.out:
        out = Path(a.out)
    elif a.smoke:
        out = HERE / ".smoke-results" / "filter-smoke"
    else:
        out = REPO / "bench" / "results" / f"filter-{date}-{a.n}"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"date": date, "commit": commit, "n": a.n, "dim": a.dim, "nq": a.nq, "nq_slow": a.nq_slow,
              "passes": a.passes, "slow_passes": a.slow_passes, "k": K, "data": meta,
              "filters": {fid: {k: v for k, v in f.items() if k != "cond"} | {"field": (f["cond"] or {}).get("field")}
                          for fid, f in filters.items()},
              "truth_s": truth_s, "builds": builds, "skipped": skipped, "results": summary,
              "load_start": load_start, "load_end": loadavg(), "wall_s": time.time() - t_start,
              "command": " ".join(sys.argv)}
    Path(str(out) + ".json").write_text(json.dumps(report, indent=1))
    md = render(report, filters, engines)
    Path(str(out) + ".md").write_text(md)
    print(md)
    log(f"wrote {out}.md / .json")
    if a.smoke:
        vw = summary.get("vectorwise / balanced", {})
        bad = [f for f, r in vw.items() if r.get("recall") is None or r["recall"] < 0.9]
        ok = bool(vw) and not bad and "vectorwise" in workers
        print(f"filter smoke: {1 if ok else 0} passed, {0 if ok else 1} failed")
        sys.exit(0 if ok else 1)


def ms(v):
    """Milliseconds: two decimals, three below 0.1 ms (in-process searches take microseconds)."""
    return f"{v:.3f}" if v < 0.1 else f"{v:.2f}"


def render(rep, filters, engines):
    fids = list(filters)
    lines = [f"# Filtered search, {rep['n']:,} x {rep['dim']} clustered (engine {rep['commit']}, {rep['date']})", ""]
    lines.append(f"`{rep['command']}` — {rep['nq']} queries for the fast engines ({rep['passes']} passes, median of "
                 f"the per-pass p50/p95), {rep['nq_slow']} for hnswlib / LanceDB / Milvus Lite / Chroma ({rep['slow_passes']} "
                 f"pass); load average {rep['load_start']} at start, {rep['load_end']} at end; wall {rep['wall_s']:.0f} s.")
    lines.append("")
    lines.append("Filters (allowed points: median per query; queries with fewer than k allowed):")
    lines.append("")
    for fid in fids:
        f = rep["filters"][fid]
        lines.append(f"- `{fid}` {f['label']}: field `{f['field']}`, {f['measured_sel_pct']:.3f} % allowed "
                     f"(median {f['allowed_median']:.0f} points), {f['queries_under_k']} queries under k")
    lines.append("")
    lines.append("## recall@10 / p50 ms")
    lines.append("")
    lines.append("| engine / config | " + " | ".join(filters[f]["label"] for f in fids) + " |")
    lines.append("|---|" + "---:|" * len(fids))
    res = rep["results"]
    order = [r for e in engines for r in res if r.startswith(e + " / ")]
    for row in order:
        cells = []
        for fid in fids:
            c = res[row].get(fid)
            if c is None:
                cells.append("")
            elif "error" in c:
                cells.append("error")
            elif c.get("extra", {}).get("note") == "GET / only":
                cells.append(f"p50 {c['p50_ms']:.3f}")
            else:
                rc = "-" if c["recall"] is None else f"{c['recall']:.3f}"
                cells.append(f"{rc} / {ms(c['p50_ms'])}" + (f" ({c['short']} short)" if c["short"] else ""))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("`(n short)`: queries answered with fewer than min(k, allowed) results.")
    lines.append("")
    lines.append("## p95 ms")
    lines.append("")
    lines.append("| engine / config | " + " | ".join(filters[f]["label"] for f in fids) + " |")
    lines.append("|---|" + "---:|" * len(fids))
    for row in order:
        cells = []
        for fid in fids:
            c = res[row].get(fid)
            cells.append("" if c is None or "error" in c else ms(c['p95_ms']))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    vw = [r for r in order if r.startswith("vectorwise")]
    if vw:
        lines.append("")
        lines.append("## VectorWise filter paths (x-vectorwise-filter-paths: queries)")
        lines.append("")
        lines.append("| config | filter | paths | settings | selectivity header (mean) |")
        lines.append("|---|---|---|---|---:|")
        for row in vw:
            for fid in fids:
                c = res[row].get(fid)
                if not c or "error" in c:
                    continue
                ex = c.get("extra", {})
                sel = ex.get("selectivity_mean")
                lines.append(f"| {row.split(' / ', 1)[1]} | {fid} | {ex.get('paths', {})} | {ex.get('settings', {})} | "
                             f"{'' if sel is None else f'{sel:.6f}'} |")
    lines.append("")
    lines.append("## Builds")
    lines.append("")
    for e, b in rep["builds"].items():
        bs = b.get("build_s")
        lines.append(f"- **{e}**: {b.get('info')}; build {'reused from an earlier run' if b.get('reused') else f'{bs:.1f} s'}")
    for e, err in rep["skipped"].items():
        lines.append(f"- **{e}**: not run: `{err[:500]}`")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
