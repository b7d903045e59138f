//! `vectorwise bench`: latency and recall@k against exact search.
//!
//! Two modes. `--url`: what the demo's benchmark.py did — sequential HTTP
//! requests to a running server, ground truth computed here from the vectors
//! file. `--index`: in-process, one thread, sweeping `--ef`, to see what the
//! engine itself does without HTTP.
//!
//! Query sets: `demo` (a random base vector + 0.1·Gaussian noise,
//! renormalised: the demo's queries) and `random` (uniform on the sphere).
//!
//! `--index` also drives the comparison harness (`bench/compare/`): it reads
//! queries (`--queries-file`) and exact neighbours (`--truth-file`) from files,
//! sweeps `--settings` (each a [`SearchParams`] text form), measures one query
//! at a time on one thread and the whole set in one `search_batch` call on
//! every core, and reports the index's load time, RSS and size as JSON.
//! `--truth-out` only computes exact ground truth with our exact search and
//! writes it (int32 `.npy`, one row of ids per query).

use crate::progress::bar;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vectorwise_index::Profile;
use vectorwise_index::plan::SearchRequest;
use vectorwise_index::{Index, Matrix, Method, Metric, SearchParams, dataset, exact};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["url", "index"])))]
pub struct Args {
    /// Benchmark a running server over HTTP.
    #[arg(long)]
    pub url: Option<String>,
    /// In --url mode, the API key to send (`Authorization: Bearer`), for a
    /// server that needs one.
    #[arg(long, requires = "url", env = "VECTORWISE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// In --url mode, also send the same queries to POST /search/batch in batches of this
    /// many; a query's time is its batch's round trip divided by the batch's size.
    #[arg(long, requires = "url", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,
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
    /// In --index mode, search settings to sweep instead of --ef, `;`-separated, each a
    /// `SearchParams` text form: "ef=64;ef=128;rerank=8;exact". `exact` is timed on
    /// --exact-queries queries.
    #[arg(long, value_delimiter = ';', conflicts_with = "ef")]
    pub settings: Vec<SearchParams>,
    /// In --index mode, queries from this file (float32 .npy or .fvecs) instead of the
    /// generated demo and random sets.
    #[arg(long, requires = "index")]
    pub queries_file: Option<PathBuf>,
    /// Exact neighbour ids of --queries-file (int32/int64 .npy or .ivecs, one row of >= k ids
    /// per query); computed here by exact search when absent.
    #[arg(long, requires = "queries_file")]
    pub truth_file: Option<PathBuf>,
    /// Compute the exact k nearest ids of --queries-file with our exact search, write them
    /// here (int32 .npy, shape (queries, k)) and stop.
    #[arg(long, requires = "queries_file", conflicts_with = "truth_file")]
    pub truth_out: Option<PathBuf>,
    /// Search profiles to measure, comma-separated (low_latency, balanced,
    /// high_accuracy): over HTTP each request names the profile; in-process each
    /// resolves through the index's calibration at --k.
    #[arg(long, value_delimiter = ',', value_parser = crate::build::parse_profile)]
    pub profiles: Vec<Profile>,
    /// In --index mode, time each query with the whole thread pool, as the server runs
    /// one (from 200k points the scan splits a query over the cores); by default the
    /// one-at-a-time runs use one thread (the `QPS 1t` column).
    #[arg(long, requires = "index")]
    pub split_queries: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}



#[derive(Debug, Serialize)]
struct Summary {
    query_set: String,
    /// `hnsw` or `exact` (in-process), `http` or `http-batch` (through a server, at its
    /// `ef_search`; batch rows are named `<set> b<size>`).
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
        "{:<21} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7}",
        "queries", "ef", "avg ms", "p50 ms", "p95 ms", "p99 ms", "QPS", "recall", "min", "max"
    );
    for r in rows {
        let ef = r.ef_search.map_or(r.method.to_string(), |e| e.to_string());
        println!(
            "{:<21} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.0} {:>8.4} {:>7.2} {:>7.2}",
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

/// The demo and random query sets over `base`, with their exact neighbours'
/// ids by `truth` (ids can differ from rows: a partitioned index reorders).
fn query_sets(
    base: &[f32],
    dim: usize,
    n: usize,
    seed: u64,
    truth: &dyn Fn(&Matrix) -> Result<Vec<Vec<u32>>>,
) -> Result<Vec<QuerySet>> {
    let sets = [("demo", dataset::noisy_queries(base, dim, n, seed)), ("random", dataset::sphere(n, dim, seed.wrapping_add(1)))];
    let mut out = Vec::new();
    for (name, queries) in sets {
        let start = Instant::now();
        let truth = truth(&queries)?;
        println!("ground truth for {n} {name} queries by exact search: {:.1} s", start.elapsed().as_secs_f64());
        out.push(QuerySet { name, queries, truth });
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.queries >= 1 && a.k >= 1, "--queries and --k must be at least 1");
    let rows = match (&a.url, &a.index) {
        (Some(url), None) => http(&a, url)?,
        (None, Some(path)) => return in_process(&a, path), // writes its own report
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

/// `--index` mode: each setting on each query set, one query at a time on one
/// thread and then as one batch on every core; the index's load time, size
/// and RSS. Prints a row per setting as it finishes and writes the report.
fn in_process(a: &Args, path: &Path) -> Result<()> {
    let rss_before_load = rss_bytes();
    let start = Instant::now();
    let index = Index::open(path)?;
    let open_seconds = start.elapsed().as_secs_f64();
    let rss_after_load = rss_bytes();
    let info = index.info();
    println!(
        "index {}: {} vectors x {} dims, M={}, efConstruction={}, opened in {open_seconds:.3} s, kernels {}",
        path.display(), info.count, info.dim, info.hnsw_m, info.ef_construction, info.simd
    );
    if let Some(out) = &a.truth_out {
        let queries_file = a.queries_file.as_deref().context("--truth-out needs --queries-file")?;
        return write_truth(&index, queries_file, a.k, out);
    }
    let sets = match &a.queries_file {
        Some(file) => vec![file_query_set(&index, file, a.truth_file.as_deref(), a.k)?],
        None => query_sets(&index.vectors(), index.dim(), a.queries, a.seed, &|q| exact_truth(&index, q, a.k))?,
    };
    let mut settings: Vec<(Option<Profile>, SearchParams)> = if !a.profiles.is_empty() {
        index.calibration().context("--profiles needs a calibrated index: run `vectorwise calibrate`")?;
        a.profiles.iter().map(|&p| (Some(p), index.plan(a.k, SearchRequest::Profile(p)).params)).collect()
    } else {
        Vec::new()
    };
    if a.settings.is_empty() && a.profiles.is_empty() {
        let exact = (a.exact_queries > 0).then(SearchParams::exact);
        settings.extend(a.ef.iter().map(|&ef| (None, SearchParams::hnsw(ef))).chain(exact.map(|e| (None, e))));
    } else {
        settings.extend(a.settings.iter().map(|&s| (None, s)));
    }
    print_setting_header();
    let mut rows = Vec::new();
    for set in &sets {
        for (profile, params) in &settings {
            let mut row = measure_setting(&index, set, params, a.k, a.exact_queries, a.split_queries)?;
            if let Some(p) = profile {
                row.setting = format!("{p}: {}", row.setting);
            }
            print_setting_row(&row);
            rows.push(row);
        }
    }
    let report = serde_json::json!({
        "index": {
            "path": path,
            "index_type": info.index_type,
            "count": info.count,
            "dim": info.dim,
            "hnsw_m": info.hnsw_m,
            "ef_construction": info.ef_construction,
            "build_seconds": info.build_seconds,
            "file_size_bytes": info.file_size_bytes,
            "load_seconds": open_seconds,
            "rss_before_load_bytes": rss_before_load,
            "rss_after_load_bytes": rss_after_load,
            "rss_after_runs_bytes": rss_bytes(),
            "simd": info.simd,
        },
        "k": a.k,
        "batch_threads": rayon::current_num_threads(),
        "results": rows,
    });
    if let Some(out) = &a.out {
        let json = serde_json::to_vec_pretty(&report)?;
        vectorwise_index::write_atomic(out, |w| w.write_all(&json))?;
        println!("results written to {}", out.display());
    }
    Ok(())
}

/// One search setting on one query set, `--index` mode.
#[derive(Debug, Serialize)]
struct SettingRow {
    query_set: &'static str,
    /// The setting's short form (`hnsw ef=64`, `scan rerank=8`, `exact`).
    setting: String,
    method: &'static str,
    ef_search: Option<usize>,
    rerank: Option<usize>,
    k: usize,
    /// Why the index cannot serve this setting (e.g. `rerank=` without quantised
    /// codes); a skipped row has no measurements.
    skipped: Option<String>,
    #[serde(flatten)]
    measured: Option<Measured>,
}

#[derive(Debug, Serialize)]
struct Measured {
    /// Queries timed one at a time on one thread.
    queries: usize,
    recall_mean: f64,
    /// 5th percentile of per-query recall (nearest rank).
    recall_p5: f64,
    recall_min: f64,
    latency_ms_avg: f64,
    latency_ms_p50: f64,
    latency_ms_p95: f64,
    latency_ms_p99: f64,
    qps_single_thread: f64,
    /// The whole query set in one `search_batch` call on every core, three times.
    batch_queries: usize,
    batch_seconds: Vec<f64>,
    /// `batch_queries` / the median of `batch_seconds`.
    qps_batch: f64,
    batch_recall_mean: f64,
}

/// The `p`-quantile of ascending `sorted` by nearest rank (the harness's Python side uses the same rule).
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn measure_setting(
    index: &Index,
    set: &QuerySet,
    params: &SearchParams,
    k: usize,
    exact_queries: usize,
    split_queries: bool,
) -> Result<SettingRow> {
    let mut row = SettingRow {
        query_set: set.name,
        setting: params.to_string(),
        method: params.method.as_str(),
        ef_search: matches!(params.method, Method::Hnsw | Method::Auto).then_some(params.ef_search),
        rerank: matches!(params.method, Method::Scan | Method::Auto).then_some(params.rerank),
        k,
        skipped: None,
        measured: None,
    };
    // One probe query, also a warm-up: a setting this index cannot serve is reported, not fatal.
    match index.search(set.queries.row(0), k, params) {
        Err(e @ vectorwise_index::Error::InvalidParameter { .. }) => {
            row.skipped = Some(e.to_string());
            return Ok(row);
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let take = if params.method == Method::Exact { exact_queries.max(1) } else { usize::MAX };
    // One thread unless asked otherwise: from 200k points the scan splits one
    // query over the pool (as the server runs it), which is not "QPS 1t".
    let single = |q: &[f32]| Ok(ids(index.search(q, k, params)?));
    let (lat, mut recalls) = if split_queries {
        measure(set, take, k, single)?
    } else {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        pool.install(|| measure(set, take, k, single))?
    };
    let mut ms: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    recalls.sort_by(f64::total_cmp);
    let total_ms: f64 = ms.iter().sum();
    let mut batch_seconds = Vec::with_capacity(3);
    let mut batch_recall = 0.0;
    for _ in 0..3 {
        let t = Instant::now();
        let found = index.search_batch(set.queries.as_slice(), k, params)?;
        batch_seconds.push(t.elapsed().as_secs_f64());
        batch_recall = found.into_iter().zip(&set.truth).map(|(hits, truth)| exact::recall_at(&ids(hits), truth, k)).sum::<f64>();
    }
    let mut sorted = batch_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    row.measured = Some(Measured {
        queries: ms.len(),
        recall_mean: recalls.iter().sum::<f64>() / recalls.len() as f64,
        recall_p5: nearest_rank(&recalls, 0.05),
        recall_min: recalls[0],
        latency_ms_avg: total_ms / ms.len() as f64,
        latency_ms_p50: nearest_rank(&ms, 0.5),
        latency_ms_p95: nearest_rank(&ms, 0.95),
        latency_ms_p99: nearest_rank(&ms, 0.99),
        qps_single_thread: ms.len() as f64 / (total_ms / 1e3),
        batch_queries: set.queries.len(),
        batch_seconds,
        qps_batch: set.queries.len() as f64 / sorted[1],
        batch_recall_mean: batch_recall / set.queries.len() as f64,
    });
    Ok(row)
}

fn print_setting_header() {
    println!(
        "{:<7} {:<18} {:>6} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "queries", "setting", "n", "recall", "p5", "min", "avg ms", "p50 ms", "p95 ms", "p99 ms", "QPS 1t", "QPS batch"
    );
}

fn print_setting_row(r: &SettingRow) {
    match (&r.measured, &r.skipped) {
        (Some(m), _) => println!(
            "{:<7} {:<18} {:>6} {:>7.4} {:>6.2} {:>6.2} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.0} {:>9.0}",
            r.query_set, r.setting, m.queries, m.recall_mean, m.recall_p5, m.recall_min, m.latency_ms_avg, m.latency_ms_p50,
            m.latency_ms_p95, m.latency_ms_p99, m.qps_single_thread, m.qps_batch
        ),
        (None, reason) => println!("{:<7} {:<18} skipped: {}", r.query_set, r.setting, reason.as_deref().unwrap_or("")),
    }
}

/// This process's resident set (VmRSS), in bytes; `None` where /proc is missing.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
    kib.parse::<u64>().ok().map(|k| k * 1024)
}

fn load_queries(index: &Index, file: &Path) -> Result<Matrix> {
    let queries = Matrix::load(file).with_context(|| format!("cannot read queries from {}", file.display()))?;
    anyhow::ensure!(
        queries.dim() == index.dim() && !queries.is_empty(),
        "{} holds {} x {} but the index has dimension {}",
        file.display(), queries.len(), queries.dim(), index.dim()
    );
    Ok(queries)
}

/// Exact neighbours of each row of `queries`, by our exact search on every core.
fn exact_truth(index: &Index, queries: &Matrix, k: usize) -> Result<Vec<Vec<u32>>> {
    let start = Instant::now();
    let truth = index
        .exact_search_batch(queries.as_slice(), k)?
        .into_iter()
        .map(|t| t.into_iter().map(|n| n.id as u32).collect())
        .collect();
    println!("ground truth for {} queries by exact search: {:.1} s", queries.len(), start.elapsed().as_secs_f64());
    Ok(truth)
}

/// The `--queries-file` set, with its truth read from `truth_file` or computed here.
fn file_query_set(index: &Index, file: &Path, truth_file: Option<&Path>, k: usize) -> Result<QuerySet> {
    let queries = load_queries(index, file)?;
    let truth = match truth_file {
        Some(t) => read_truth(t, queries.len(), k)?,
        None => exact_truth(index, &queries, k)?,
    };
    Ok(QuerySet { name: "file", queries, truth })
}

/// `--truth-out`: exact k nearest ids of each query as an int32 `.npy` of shape (queries, k).
fn write_truth(index: &Index, queries_file: &Path, k: usize, out: &Path) -> Result<()> {
    let queries = load_queries(index, queries_file)?;
    let truth = exact_truth(index, &queries, k)?;
    let mut body = Vec::with_capacity(queries.len() * k * 4);
    for row in &truth {
        // Fewer than k points in the index: pad with -1, as Faiss does.
        for j in 0..k {
            body.extend_from_slice(&row.get(j).map_or(-1, |&o| o as i32).to_le_bytes());
        }
    }
    let header = npy_header("<i4", queries.len(), k);
    vectorwise_index::write_atomic(out, |w| {
        w.write_all(&header)?;
        w.write_all(&body)
    })?;
    println!("exact ground truth ({} x {k}) written to {}", queries.len(), out.display());
    Ok(())
}

/// A NumPy 1.0 header for a C-ordered 2-D array, padded to 64 bytes.
fn npy_header(descr: &str, rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

/// Neighbour ids, `rows` rows of at least `k`: NumPy `.npy` (int32/int64/uint32/uint64,
/// 2-D, C order) or `.ivecs`. Keeps the first `k` of each row.
fn read_truth(path: &Path, rows: usize, k: usize) -> Result<Vec<Vec<u32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (width, values) = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ivecs")) {
        parse_ivecs(&bytes)
    } else {
        parse_int_npy(&bytes)
    }
    .with_context(|| format!("{}: not a ground-truth file", path.display()))?;
    let found = values.len() / width.max(1);
    anyhow::ensure!(found == rows, "{} has {found} rows but there are {rows} queries", path.display());
    anyhow::ensure!(width >= k, "{} has {width} ids per query, fewer than k = {k}", path.display());
    values
        .chunks_exact(width)
        .map(|row| {
            row[..k]
                .iter()
                .map(|&id| u32::try_from(id).with_context(|| format!("{}: id {id} is not a row number", path.display())))
                .collect()
        })
        .collect()
}

fn parse_ivecs(bytes: &[u8]) -> Result<(usize, Vec<i64>)> {
    anyhow::ensure!(bytes.len() >= 4, "empty .ivecs file");
    let width = u32::from_le_bytes(bytes[..4].try_into()?) as usize;
    let row = 4 + 4 * width;
    anyhow::ensure!(width > 0 && bytes.len() % row == 0, "size {} is not a multiple of a row ({row} bytes)", bytes.len());
    let mut values = Vec::with_capacity(bytes.len() / row * width);
    for r in bytes.chunks_exact(row) {
        anyhow::ensure!(u32::from_le_bytes(r[..4].try_into()?) as usize == width, "rows of different widths");
        values.extend(r[4..].chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap()))));
    }
    Ok((width, values))
}

fn parse_int_npy(bytes: &[u8]) -> Result<(usize, Vec<i64>)> {
    anyhow::ensure!(bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY", "not a NumPy .npy file");
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes.get(8..12).context("truncated header")?.try_into()?) as usize, 12),
    };
    let header = std::str::from_utf8(bytes.get(start..start + len).context("truncated header")?)?;
    let field = |name: &str| header.split_once(&format!("'{name}':")).map(|(_, rest)| rest.trim_start());
    let descr = field("descr").and_then(|d| d.split(['\'', '"']).nth(1)).context("no 'descr'")?;
    anyhow::ensure!(field("fortran_order").is_some_and(|f| f.starts_with("False")), "not a C-ordered array");
    let shape = field("shape").and_then(|s| s.strip_prefix('(')).and_then(|s| s.split(')').next()).context("no 'shape'")?;
    let dims: Vec<usize> = shape.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    let [rows, width] = dims[..] else { bail!("expected a 2-D array, got shape {dims:?}") };
    let data = &bytes[start + len..];
    let size = match descr {
        "<i4" | "<u4" => 4,
        "<i8" | "<u8" => 8,
        other => bail!("dtype '{other}' not supported (int32 or int64 ids)"),
    };
    anyhow::ensure!(data.len() == rows * width * size, "data is {} bytes, shape ({rows}, {width}) needs {}", data.len(), rows * width * size);
    let values = match descr {
        "<i4" => data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap()))).collect(),
        "<u4" => data.chunks_exact(4).map(|c| i64::from(u32::from_le_bytes(c.try_into().unwrap()))).collect(),
        "<i8" => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        _ => data.chunks_exact(8).map(|c| i64::try_from(u64::from_le_bytes(c.try_into().unwrap())).unwrap_or(-1)).collect(),
    };
    Ok((width, values))
}

#[cfg(test)]
mod harness_tests {
    use super::*;

    #[test]
    fn truth_files_round_trip_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<i64> = (0..12).collect(); // 3 queries x 4 ids
        let npy = |descr: &str, size: usize| {
            let mut b = npy_header(descr, 3, 4);
            for &v in &ids {
                b.extend_from_slice(&v.to_le_bytes()[..size]);
            }
            b
        };
        let mut ivecs = Vec::new();
        for row in ids.chunks(4) {
            ivecs.extend_from_slice(&4u32.to_le_bytes());
            row.iter().for_each(|&v| ivecs.extend_from_slice(&(v as i32).to_le_bytes()));
        }
        for (name, bytes) in [("a.npy", npy("<i4", 4)), ("b.npy", npy("<i8", 8)), ("c.npy", npy("<u8", 8)), ("d.ivecs", ivecs)] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let t = read_truth(&p, 3, 2).unwrap();
            assert_eq!(t, vec![vec![0, 1], vec![4, 5], vec![8, 9]], "{name}");
            assert!(read_truth(&p, 4, 2).unwrap_err().to_string().contains("3 rows"), "{name}");
            assert!(read_truth(&p, 3, 5).unwrap_err().to_string().contains("fewer than k"), "{name}");
        }
        let p = dir.path().join("f.npy");
        std::fs::write(&p, npy("<f4", 4)).unwrap();
        assert!(format!("{:#}", read_truth(&p, 3, 2).unwrap_err()).contains("'<f4' not supported"));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((nearest_rank(&v, 0.05), nearest_rank(&v, 0.5), nearest_rank(&v, 0.99)), (5.0, 50.0, 99.0));
        assert_eq!(nearest_rank(&[3.0], 0.05), 3.0);
    }
}

fn http(a: &Args, url: &str) -> Result<Vec<Summary>> {
    let url = url.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let auth = a.api_key.as_ref().map(|k| format!("Bearer {k}"));
    let with_key = |request: ureq::RequestBuilder<ureq::typestate::WithBody>| match &auth {
        Some(v) => request.header("authorization", v),
        None => request,
    };
    let mut stats_request = agent.get(format!("{url}/stats"));
    if let Some(v) = &auth {
        stats_request = stats_request.header("authorization", v);
    }
    let stats: serde_json::Value = stats_request
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
    if stats["ids"] == "user" {
        bail!("the server answers the ids given at build, not rows of {}: serve an index built without --ids", a.vectors.display());
    }
    // The server's ids are the rows of the vectors file; the truth is exact
    // search in the server's metric's space (see vectorwise_index::metric).
    let metric: Metric = stats["metric"].as_str().unwrap_or("l2").parse().map_err(anyhow::Error::msg)?;
    let space = metric.prepare_rows(&base)?;
    let space_norm = Metric::space_norm(space.row(0));
    let by_rows = |q: &Matrix| -> Result<Vec<Vec<u32>>> {
        let mut prepared = Vec::with_capacity(q.len() * space.dim());
        for row in q.rows() {
            prepared.extend_from_slice(&metric.prepare_query(row, base.dim(), space_norm)?);
        }
        Ok(exact::search_many(space.as_slice(), space.dim(), &prepared, a.k)
            .into_iter()
            .map(|t| t.into_iter().map(|s| s.offset).collect())
            .collect())
    };
    let sets = query_sets(base.as_slice(), base.dim(), a.queries, a.seed, &by_rows)?;
    // Answers the server's hot-query cache gave (the same query searched
    // before): their latency is the cache's, not a search's.
    let cache_hits = std::cell::Cell::new(0usize);
    let search = |q: &[f32], profile: Option<Profile>| -> Result<Vec<u32>> {
        let mut body = serde_json::json!({ "query_vector": q, "k": a.k });
        if let Some(p) = profile {
            body["profile"] = p.as_str().into();
        }
        let mut resp = with_key(agent.post(format!("{url}/search"))).send_json(body).context("search request failed")?;
        let status = resp.status();
        if resp.headers().get("x-vectorwise-cache").is_some_and(|v| v == "hit") {
            cache_hits.set(cache_hits.get() + 1);
        }
        let body: serde_json::Value = resp.body_mut().read_json()?;
        anyhow::ensure!(status == 200, "search answered {status}: {body}");
        Ok(body["indices"].as_array().context("no indices")?.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect())
    };
    for q in sets[0].queries.rows().take(20) {
        // Warm-up (connections, page cache) with the queries doubled: the
        // same work, other bytes, so the timed searches are not cache hits.
        let doubled: Vec<f32> = q.iter().map(|x| x * 2.0).collect();
        search(&doubled, None)?;
    }
    cache_hits.set(0);
    let profiles: Vec<Option<Profile>> =
        if a.profiles.is_empty() { vec![None] } else { a.profiles.iter().copied().map(Some).collect() };
    let mut rows = Vec::new();
    for set in &sets {
        for &profile in &profiles {
            let name = profile.map_or(set.name.to_owned(), |p| format!("{} {p}", set.name));
            let pb = bar(a.queries as u64, &name);
            let (lat, rec) = measure(set, usize::MAX, a.k, |q| {
                pb.inc(1);
                search(q, profile)
            })?;
            pb.finish_and_clear();
            if cache_hits.get() > 0 {
                eprintln!(
                    "warning: {name}: {} of {} answers came from the server's hot-query cache (these queries were searched \
                     before, e.g. by a bench with this --seed): their latency is the cache's; time searches with another \
                     --seed or a server started with --cache-bytes 0",
                    cache_hits.get(),
                    a.queries
                );
                cache_hits.set(0);
            }
            let ef = if profile.is_some() { None } else { stats["hnsw_efSearch"].as_u64().map(|e| e as usize) };
            rows.push(summarise(&name, "http", ef, a.k, lat, &rec));
        }
    }
    if let Some(size) = a.batch {
        rows.extend(http_batches(a, &agent, auth.as_deref(), url, &sets, size as usize, stats["hnsw_efSearch"].as_u64())?);
    }
    Ok(rows)
}

/// `--batch`: the same query sets through `POST /search/batch`, `size` queries a
/// request. Each query gets its batch's time / its size, so the percentiles
/// are over batches and the average compares directly with the one-by-one rows.
fn http_batches(
    a: &Args,
    agent: &ureq::Agent,
    auth: Option<&str>,
    url: &str,
    sets: &[QuerySet],
    size: usize,
    ef: Option<u64>,
) -> Result<Vec<Summary>> {
    let search_batch = |queries: &[f32], dim: usize| -> Result<Vec<Vec<u32>>> {
        let queries: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        let mut request = agent.post(format!("{url}/search/batch"));
        if let Some(v) = auth {
            request = request.header("authorization", v);
        }
        let mut resp = request
            .send_json(serde_json::json!({ "query_vectors": queries, "k": a.k }))
            .context("batch search request failed")?;
        let status = resp.status();
        let body: serde_json::Value = resp.body_mut().with_config().limit(256 << 20).read_json()?;
        anyhow::ensure!(status == 200, "batch search answered {status}: {body}");
        let results = body["results"].as_array().context("no results")?;
        anyhow::ensure!(results.len() == queries.len(), "{} results for {} queries", results.len(), queries.len());
        Ok(results
            .iter()
            .map(|r| r["indices"].as_array().into_iter().flatten().filter_map(|v| v.as_u64()).map(|v| v as u32).collect())
            .collect())
    };
    let dim = sets[0].queries.dim();
    search_batch(&sets[0].queries.as_slice()[..size.min(sets[0].queries.len()) * dim], dim)?; // warm-up
    let mut rows = Vec::new();
    for set in sets {
        let (mut lat, mut rec) = (Vec::new(), Vec::new());
        for (queries, truths) in set.queries.as_slice().chunks(size * dim).zip(set.truth.chunks(size)) {
            let t = Instant::now();
            let found = search_batch(queries, dim)?;
            let per_query = t.elapsed() / truths.len() as u32;
            for (ids, truth) in found.iter().zip(truths) {
                lat.push(per_query);
                rec.push(exact::recall_at(ids, truth, a.k));
            }
        }
        let name = format!("{} b{size}", set.name);
        rows.push(summarise(&name, "http-batch", ef.map(|e| e as usize), a.k, lat, &rec));
    }
    Ok(rows)
}
