//! `vectorwise bench`: latency and recall@k against exact search.
//!
//! Two modes. `--url`: what the demo's benchmark.py did — sequential HTTP
//! requests to a running server, ground truth computed here from the vectors
//! file. `--index`: in-process, one thread, sweeping `--ef`, to see what the
//! engine itself does without HTTP.
//!
//! Query sets: `demo` (a random base vector + 0.1·Gaussian noise,
//! renormalised: the demo's queries) and `random` (uniform on the sphere).

use crate::progress::bar;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vectorwise_index::{Index, Matrix, SearchParams, dataset, exact};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["url", "index"])))]
pub struct Args {
    /// Benchmark a running server over HTTP.
    #[arg(long)]
    pub url: Option<String>,
    /// Benchmark an index file in-process (no HTTP), sweeping --ef.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// The vectors the server indexed (for ground truth in --url mode).
    #[arg(long, env = "VECTORWISE_VECTORS_PATH", default_value = "data/vectors.npy")]
    pub vectors: PathBuf,
    /// Queries per query set.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Neighbours per query (recall@k).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Seed for the queries.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Beam widths to sweep in --index mode.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512,1024,2048,4096")]
    pub ef: Vec<usize>,
    /// In --index mode, also time exact search (a full scan) on this many queries per set.
    #[arg(long, default_value_t = 100)]
    pub exact_queries: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Summary {
    query_set: String,
    /// `hnsw` or `exact` (in-process), `http` (through a server, at its `ef_search`).
    method: &'static str,
    ef_search: Option<usize>,
    queries: usize,
    k: usize,
    latency_ms_avg: f64,
    latency_ms_median: f64,
    latency_ms_p95: f64,
    latency_ms_p99: f64,
    qps_sequential: f64,
    recall_mean: f64,
    recall_min: f64,
    recall_max: f64,
}

fn summarise(query_set: &str, method: &'static str, ef: Option<usize>, k: usize, mut lat: Vec<Duration>, recalls: &[f64]) -> Summary {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1]);
    let total: f64 = lat.iter().map(|d| d.as_secs_f64()).sum();
    Summary {
        query_set: query_set.into(),
        method,
        ef_search: ef,
        queries: lat.len(),
        k,
        latency_ms_avg: total * 1e3 / lat.len() as f64,
        latency_ms_median: pct(0.5),
        latency_ms_p95: pct(0.95),
        latency_ms_p99: pct(0.99),
        qps_sequential: lat.len() as f64 / total,
        recall_mean: recalls.iter().sum::<f64>() / recalls.len() as f64,
        recall_min: recalls.iter().copied().fold(f64::INFINITY, f64::min),
        recall_max: recalls.iter().copied().fold(0.0, f64::max),
    }
}

fn print_table(rows: &[Summary]) {
    println!(
        "{:<8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7}",
        "queries", "ef", "avg ms", "p50 ms", "p95 ms", "p99 ms", "QPS", "recall", "min", "max"
    );
    for r in rows {
        let ef = r.ef_search.map_or(r.method.to_string(), |e| e.to_string());
        println!(
            "{:<8} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.0} {:>8.4} {:>7.2} {:>7.2}",
            r.query_set, ef, r.latency_ms_avg, r.latency_ms_median, r.latency_ms_p95, r.latency_ms_p99, r.qps_sequential, r.recall_mean, r.recall_min, r.recall_max
        );
    }
}

/// Runs `search` on each query in order, timing it and scoring its ids against the truth.
fn measure(
    set: &QuerySet,
    take: usize,
    k: usize,
    mut search: impl FnMut(&[f32]) -> Result<Vec<u32>>,
) -> Result<(Vec<Duration>, Vec<f64>)> {
    let mut lat = Vec::with_capacity(take.min(set.truth.len()));
    let mut rec = Vec::with_capacity(lat.capacity());
    for (q, truth) in set.queries.rows().zip(&set.truth).take(take) {
        let t = Instant::now();
        let ids = search(q)?;
        lat.push(t.elapsed());
        rec.push(exact::recall_at(&ids, truth, k));
    }
    Ok((lat, rec))
}

fn ids(hits: Vec<vectorwise_index::Neighbor>) -> Vec<u32> {
    hits.iter().map(|h| h.id as u32).collect()
}

struct QuerySet {
    name: &'static str,
    queries: Matrix,
    truth: Vec<Vec<u32>>,
}

fn query_sets(base: &[f32], dim: usize, n: usize, k: usize, seed: u64) -> Result<Vec<QuerySet>> {
    let sets = [("demo", dataset::noisy_queries(base, dim, n, seed)), ("random", dataset::sphere(n, dim, seed.wrapping_add(1)))];
    let mut out = Vec::new();
    for (name, queries) in sets {
        let start = Instant::now();
        let truth = exact::search_many(base, dim, queries.as_slice(), k)
            .into_iter()
            .map(|t| t.into_iter().map(|s| s.offset).collect())
            .collect();
        println!("ground truth for {n} {name} queries by exact search: {:.1} s", start.elapsed().as_secs_f64());
        out.push(QuerySet { name, queries, truth });
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.queries >= 1 && a.k >= 1, "--queries and --k must be at least 1");
    let rows = match (&a.url, &a.index) {
        (Some(url), None) => http(&a, url)?,
        (None, Some(path)) => in_process(&a, path)?,
        _ => bail!("give exactly one of --url or --index"),
    };
    if a.url.is_some() {
        print_table(&rows); // --index mode printed each row as it finished
    }
    if let Some(out) = &a.out {
        let json = serde_json::to_vec_pretty(&serde_json::json!({ "results": rows }))?;
        vectorwise_index::write_atomic(out, |w| w.write_all(&json))?;
        println!("results written to {}", out.display());
    }
    Ok(())
}

fn in_process(a: &Args, path: &PathBuf) -> Result<Vec<Summary>> {
    let start = Instant::now();
    let index = Index::open(path)?;
    let info = index.info();
    println!(
        "index {}: {} vectors x {} dims, M={}, efConstruction={}, opened in {:.3} s, kernels {}",
        path.display(), info.count, info.dim, info.hnsw_m, info.ef_construction, start.elapsed().as_secs_f64(), info.simd
    );
    let sets = query_sets(index.vectors(), index.dim(), a.queries, a.k, a.seed)?;
    let mut rows = Vec::new();
    for set in &sets {
        for &ef in &a.ef {
            let params = SearchParams::hnsw(ef);
            let (lat, rec) = measure(set, usize::MAX, a.k, |q| Ok(ids(index.search(q, a.k, &params)?)))?;
            rows.push(summarise(set.name, "hnsw", Some(ef), a.k, lat, &rec));
            print_table(&rows[rows.len() - 1..]);
        }
        if a.exact_queries > 0 {
            let (lat, rec) = measure(set, a.exact_queries, a.k, |q| Ok(ids(index.exact_search(q, a.k)?)))?;
            rows.push(summarise(set.name, "exact", None, a.k, lat, &rec));
            print_table(&rows[rows.len() - 1..]);
        }
    }
    Ok(rows)
}

fn http(a: &Args, url: &str) -> Result<Vec<Summary>> {
    let url = url.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let stats: serde_json::Value = agent
        .get(format!("{url}/stats"))
        .call()
        .with_context(|| format!("cannot reach {url}"))?
        .body_mut()
        .read_json()
        .context("/stats did not answer JSON (is the index loaded?)")?;
    println!("server: {stats}");
    let base = Matrix::load(&a.vectors).with_context(|| format!("cannot read {}", a.vectors.display()))?;
    if stats["total_vectors"].as_u64() != Some(base.len() as u64) || stats["dimension"].as_u64() != Some(base.dim() as u64) {
        bail!(
            "the server indexes {} x {} but {} holds {} x {}: ground truth would be wrong",
            stats["total_vectors"], stats["dimension"], a.vectors.display(), base.len(), base.dim()
        );
    }
    let sets = query_sets(base.as_slice(), base.dim(), a.queries, a.k, a.seed)?;
    let search = |q: &[f32]| -> Result<Vec<u32>> {
        let mut resp = agent
            .post(format!("{url}/search"))
            .send_json(serde_json::json!({ "query_vector": q, "k": a.k }))
            .context("search request failed")?;
        let status = resp.status();
        let body: serde_json::Value = resp.body_mut().read_json()?;
        anyhow::ensure!(status == 200, "search answered {status}: {body}");
        Ok(body["indices"].as_array().context("no indices")?.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect())
    };
    for q in sets[0].queries.rows().take(20) {
        search(q)?; // warm-up: connections, page cache
    }
    let mut rows = Vec::new();
    for set in &sets {
        let pb = bar(a.queries as u64, set.name);
        let (lat, rec) = measure(set, usize::MAX, a.k, |q| {
            pb.inc(1);
            search(q)
        })?;
        pb.finish_and_clear();
        rows.push(summarise(set.name, "http", stats["hnsw_efSearch"].as_u64().map(|e| e as usize), a.k, lat, &rec));
    }
    Ok(rows)
}
