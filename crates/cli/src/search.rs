//! `vectorwise search`: query an index file, or a collection of a data
//! directory in-process (no server), from the command line.

use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vectorwise_index::plan::SearchRequest;
use vectorwise_index::{Index, Matrix, Profile, SearchParams};
use vectorwise_store::{Store, SyncMode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Index file [env: VECTORWISE_INDEX_PATH] [default: data/index.vwi].
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Queries, one per row: .npy or .fvecs.
    #[arg(long)]
    pub query_file: PathBuf,
    /// Neighbours per query (with --collection at most 100,000).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// HNSW beam width, or with --collection a fixed number of candidates
    /// without a promise, as the API's `ef_search` [env:
    /// VECTORWISE_EF_SEARCH, index files only] [default: 64 for an index file].
    #[arg(long)]
    pub ef_search: Option<usize>,
    /// Scan every vector instead of walking the graph.
    #[arg(long)]
    pub exact: bool,
    /// Search this collection of --data-dir in-process instead of an index
    /// file. Prints `ids`, `distances` and `micros` (the time of the search
    /// call alone) per query. The directory is opened as `serve` opens it
    /// (a log left by a crash is recovered), so no server may have it open.
    #[arg(long, conflicts_with = "index")]
    pub collection: Option<String>,
    /// The data directory of --collection.
    #[arg(long, env = "VECTORWISE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// With --collection: a filter per query, JSON lines in the API's
    /// `filter` shape (`null`: none), one line per row of --query-file
    /// (blank lines are skipped).
    #[arg(long, requires = "collection")]
    pub filters: Option<PathBuf>,
    /// With --collection: `low_latency`, `balanced` (the default) or `high_accuracy`.
    #[arg(long, requires = "collection", conflicts_with_all = ["recall_target", "exact", "ef_search"])]
    pub profile: Option<String>,
    /// With --collection: the cheapest calibrated setting reaching this recall@k (1: exact).
    #[arg(long, requires = "collection", conflicts_with_all = ["exact", "ef_search"])]
    pub recall_target: Option<f64>,
    /// With --collection: search every query once, untimed, before the timed pass.
    #[arg(long, requires = "collection")]
    pub warmup: bool,
    /// With --collection: threads a search may use, 1 to 1024 (default: the
    /// cores, as the server splits a query; 1 times one thread, as most
    /// peers search).
    #[arg(long, requires = "collection", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// With --collection: sleep this many microseconds (at most 10 s)
    /// before each timed query, as a sequential client leaves the server
    /// idle between its requests (the pool's threads fall asleep).
    #[arg(long, requires = "collection", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub pause_us: u64,
}

/// Most neighbours a collection search asks for here.
const MAX_K: usize = 100_000;

pub fn run(a: Args) -> Result<()> {
    if let Some(name) = &a.collection {
        return run_collection(&a, name);
    }
    let path = a.index.clone().or_else(|| std::env::var_os("VECTORWISE_INDEX_PATH").map(PathBuf::from)).unwrap_or_else(|| "data/index.vwi".into());
    let ef_search = match a.ef_search {
        Some(ef) => ef,
        None => match std::env::var("VECTORWISE_EF_SEARCH") {
            Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("VECTORWISE_EF_SEARCH={v:?} is not a number"))?,
            Err(_) => 64,
        },
    };
    let index = Index::open(&path)?;
    let queries = Matrix::load(&a.query_file).with_context(|| format!("cannot read {}", a.query_file.display()))?;
    anyhow::ensure!(a.k >= 1, "--k must be at least 1");
    let mut out = std::io::stdout().lock();
    for (i, q) in queries.rows().enumerate() {
        let hits = if a.exact {
            index.exact_search(q, a.k)
        } else {
            index.search(q, a.k, &SearchParams { ef_search, ..SearchParams::default() })
        }
        .with_context(|| format!("query {i}"))?;
        let indices: Vec<u64> = hits.iter().map(|h| h.id).collect();
        let distances: Vec<f32> = hits.iter().map(|h| h.distance).collect();
        writeln!(out, "{}", serde_json::json!({ "indices": indices, "distances": distances }))?;
    }
    Ok(())
}

/// `--collection`: the store's own search, as `POST
/// /collections/{name}/search` runs it minus HTTP, timed per query.
fn run_collection(a: &Args, name: &str) -> Result<()> {
    anyhow::ensure!((1..=MAX_K).contains(&a.k), "--k must be from 1 to {MAX_K}");
    let queries = Matrix::load(&a.query_file).with_context(|| format!("cannot read {}", a.query_file.display()))?;
    // Every query is checked before any is answered.
    if let Some((row, _)) = queries.rows().enumerate().find(|(_, q)| q.iter().any(|x| !x.is_finite())) {
        anyhow::bail!("{}: row {row} holds a value that is not a finite number", a.query_file.display());
    }
    let filters = match &a.filters {
        Some(path) => read_filters(path, queries.len())?,
        None => vec![None; queries.len()],
    };
    let request = if a.exact {
        SearchRequest::RecallTarget(1.0)
    } else if let Some(t) = a.recall_target {
        anyhow::ensure!(t > 0.0 && t <= 1.0, "--recall-target must be in (0, 1]");
        SearchRequest::RecallTarget(t)
    } else if let Some(ef) = a.ef_search {
        anyhow::ensure!(ef >= 1, "--ef-search must be at least 1");
        SearchRequest::EfSearch(ef)
    } else {
        let p = a.profile.as_deref().unwrap_or("balanced");
        SearchRequest::Profile(p.parse::<Profile>().map_err(|e| anyhow::anyhow!("--profile: {e}"))?)
    };
    // Opening creates a missing directory (as `serve` does): not here.
    anyhow::ensure!(a.data_dir.is_dir(), "{} is not a data directory (no such directory)", a.data_dir.display());
    anyhow::ensure!(
        a.data_dir.join(name).is_dir(),
        "no collection '{name}' in {} (a data directory holds one folder per collection)",
        a.data_dir.display()
    );
    let store = Store::open(&a.data_dir, SyncMode::Always).with_context(|| format!("cannot open {}", a.data_dir.display()))?;
    let c = store.get(name).with_context(|| format!("no collection '{name}' in {}", a.data_dir.display()))?;
    // Searched as it is on disk: no seal or merge (of this collection or
    // another) writes to the folder or takes a core from the timed searches
    // meanwhile (the log's points are searched exactly, as the server does
    // until it seals them).
    store.close_and_wait();
    anyhow::ensure!(queries.dim() == c.dimension(), "--query-file has dimension {}, the collection {}", queries.dim(), c.dimension());
    let threads = a.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let opts = |filter: &Option<Arc<vectorwise_store::Filter>>| vectorwise_store::SearchOptions {
        k: a.k,
        request,
        with_payload: false,
        with_vector: false,
        payload_budget: usize::MAX,
        filter: filter.clone(),
    };
    pool.install(|| -> Result<()> {
        if a.warmup {
            for (i, (q, f)) in queries.rows().zip(&filters).enumerate() {
                c.search(q, &opts(f)).with_context(|| format!("query {i}"))?;
            }
        }
        let mut out = std::io::stdout().lock();
        for (i, (q, f)) in queries.rows().zip(&filters).enumerate() {
            let o = opts(f);
            if a.pause_us > 0 {
                std::thread::sleep(std::time::Duration::from_micros(a.pause_us));
            }
            let start = std::time::Instant::now();
            let found = c.search(q, &o).with_context(|| format!("query {i}"))?;
            let micros = start.elapsed().as_secs_f64() * 1e6;
            let ids: Vec<&vectorwise_store::PointId> = found.hits.iter().map(|h| &h.id).collect();
            let distances: Vec<f32> = found.hits.iter().map(|h| h.distance).collect();
            let mut line = serde_json::json!({ "ids": ids, "distances": distances, "micros": micros });
            if let Some(plan) = &found.plan {
                line["setting"] = plan.params.to_string().into();
            }
            if let Some(r) = &found.filter {
                line["allowed"] = r.allowed.into();
                line["live"] = r.live.into();
                line["paths"] = r.paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",").into();
            }
            if let Err(e) = writeln!(out, "{line}") {
                // A reader that stopped early (`| head`) ends the output, not an error.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        Ok(())
    })
}

/// One filter per query from JSON lines (blank lines skipped), each checked
/// as the API checks it.
fn read_filters(path: &Path, rows: usize) -> Result<Vec<Option<Arc<vectorwise_store::Filter>>>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut filters = Vec::with_capacity(rows);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        let text = if n == 0 { line.trim_start_matches('\u{feff}') } else { &line };
        if text.trim().is_empty() {
            continue;
        }
        let f = vectorwise_server::parse_filter(text).map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), n + 1))?;
        filters.push(f.map(Arc::new));
    }
    anyhow::ensure!(filters.len() == rows, "{}: {} filters for {rows} queries", path.display(), filters.len());
    Ok(filters)
}
