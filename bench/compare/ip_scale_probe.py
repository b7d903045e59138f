"""A diagnostic for `--metric ip`: does VectorWise's recall depend on the query's length?

Scaling a query by c > 0 leaves its inner-product ranking unchanged (q·x orders the points the
same way for every c), so the exact truth is the same for every scale. The engine serves ip in
an augmented L2 space (rows [x, sqrt(M² - |x|²)], query [q, 0]), where the distance is
|q|² + M² - 2 q·x: the ranking signal grows with |q| while the quantisation error of the stored
rows (4-bit codes, SQ8) does not. A recall that moves with c is lost in that space, not in the data.

Builds the three files the harness builds (graph, exhaustive scan, partitioned scan) once, then
runs `vectorwise bench` on the same queries scaled to |q| = 1, M and 10·M (M = the largest row
norm) as well as as given, against one NumPy truth. Writes probe.md and probe.json to --out-dir.

    .venv/bin/python bench/compare/ip_scale_probe.py --vectorwise target/release/vectorwise \
        --base bench/data/clustered-norms-100k/base.npy --queries bench/data/clustered-norms-100k/queries.npy \
        --out-dir bench/results/clustered-norms-100k-ip-<commit>
"""

import argparse, json, os, shutil, subprocess, tempfile
import numpy as np

import harness

SETTINGS = {
    "hnsw": ["ef=64", "ef=256", "ef=1024"],
    "scan": ["rerank=8", "rerank=32", "rerank=128", "exact"],
    "ivf": ["nprobe=16,rerank=32", "nprobe=64,rerank=32", "nprobe=64,rerank=128"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectorwise", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    x, q = harness.as_f32(a.base), harness.as_f32(a.queries)
    big = float(np.linalg.norm(x, axis=1).max())
    work = tempfile.mkdtemp(prefix="vw-ip-probe-")
    try:
        truth = harness.exact_truth(x, q, "ip", 100)
        tp = os.path.join(work, "truth.npy")
        np.save(tp, truth)
        lists = str(max(1, round(len(x) ** 0.5)))
        files = {}
        for kind, extra in [("hnsw", ["--method", "hnsw"]), ("scan", ["--method", "scan", "--scan-lists", "0"]),
                            ("ivf", ["--method", "scan", "--scan-lists", lists])]:
            files[kind] = os.path.join(work, f"{kind}.vwi")
            subprocess.run([a.vectorwise, "build", "--vectors", a.base, "--out", files[kind], "--metric", "ip", "--no-calibrate",
                            "--m", "32", "--ef-construction", "200", *extra], check=True, stdout=subprocess.DEVNULL)
        rows = []
        for name, scale in [("as given", None), ("|q| = 1", 1.0), ("|q| = M", big), ("|q| = 10·M", 10 * big)]:
            qq = q if scale is None else (q / np.linalg.norm(q, axis=1, keepdims=True) * scale).astype(np.float32)
            same = float((harness.exact_truth(x, qq, "ip", 10) == truth[:, :10]).mean())
            qp = os.path.join(work, "queries.npy")
            np.save(qp, qq)
            for kind, path in files.items():
                out = os.path.join(work, "setting.json")
                subprocess.run([a.vectorwise, "bench", "--index", path, "--queries-file", qp, "--truth-file", tp, "--k", "10",
                                "--settings", ";".join(SETTINGS[kind]), "--exact-queries", str(len(q)), "--out", out],
                               check=True, stdout=subprocess.DEVNULL)
                for r in json.load(open(out))["results"]:
                    rows.append(dict(queries=name, file=kind, setting=r["setting"], recall_mean=r["recall_mean"],
                                     latency_ms_p50=r["latency_ms_p50"], truth_ids_unchanged=same))
                    print(f"{name:10} {kind:5} {r['setting']:28} recall {r['recall_mean']:.4f}", flush=True)
    finally:
        shutil.rmtree(work)
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "probe.json"), "w") as f:
        json.dump(dict(base=a.base, queries=a.queries, n=len(x), nq=len(q), max_norm=big, rows=rows), f, indent=1)
    scales = list(dict.fromkeys(r["queries"] for r in rows))
    L = [f"# ip query-scale probe: {os.path.basename(os.path.dirname(os.path.abspath(a.base)))}", "",
         f"{len(x)} rows, {len(q)} queries, largest row norm M = {big:.1f}; recall@10 against one exact ip truth "
         "(scaling a query does not change its ranking; the share of top-10 ids equal to the unscaled truth: "
         + ", ".join(f"{s} {next(r['truth_ids_unchanged'] for r in rows if r['queries'] == s):.3f}" for s in scales)
         + f"). Command: `bench/compare/ip_scale_probe.py --base {a.base} --queries {a.queries}`", "",
         "| file | setting | " + " | ".join(f"queries {s}" for s in scales) + " |", "|---|---|" + "---|" * len(scales)]
    for kind in SETTINGS:
        for s in dict.fromkeys(r["setting"] for r in rows if r["file"] == kind):
            cells = [next((f"{r['recall_mean']:.4f}" for r in rows if r["file"] == kind and r["setting"] == s and r["queries"] == sc), "-") for sc in scales]
            L.append(f"| {kind} | {s} | " + " | ".join(cells) + " |")
    with open(os.path.join(a.out_dir, "probe.md"), "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
