//! `vectorwise serve` and `vectorwise health`.
//!
//! The listener opens at once; the index is loaded (or, on a first run with
//! the default paths, generated and built) in the background, and until it is
//! ready `/` answers 503 `loading`, so orchestrators can tell "starting" from
//! "dead".

use crate::build::{HnswArgs, build};
use crate::generate::{Kind, generate};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use vectorwise_index::Index;
use vectorwise_index::Profile;
use vectorwise_server::monitor::MonitorConfig;
use vectorwise_server::{AppState, ServerConfig, app};



const DEFAULT_INDEX: &str = "data/index.vwi";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Index file to serve.
    #[arg(long, env = "VECTORWISE_INDEX_PATH", default_value = DEFAULT_INDEX)]
    pub index: PathBuf,
    /// Vectors file used when the index has to be built first.
    #[arg(long, env = "VECTORWISE_VECTORS_PATH", default_value = "data/vectors.npy")]
    pub vectors: PathBuf,
    /// Address to bind: loopback by default, so a server started without
    /// API keys is not reachable from other machines; `0.0.0.0` (or `::`)
    /// listens on every interface.
    #[arg(long, env = "VECTORWISE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind (0 picks a free one and logs it).
    #[arg(long, env = "VECTORWISE_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Allowed CORS origins: `*` or a comma-separated list.
    #[arg(long, env = "VECTORWISE_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Search profile of requests that name none: low_latency (recall@k >=
    /// 0.90), balanced (>= 0.95) or high_accuracy (>= 0.99), as calibrated
    /// for the index.
    #[arg(long, env = "VECTORWISE_PROFILE", default_value = "balanced", value_parser = crate::build::parse_profile)]
    pub profile: Profile,
    /// A fixed search depth for requests that name no profile instead (HNSW
    /// beam width, or the scan's candidates): no recall promise.
    #[arg(long, env = "VECTORWISE_EF_SEARCH")]
    pub ef_search: Option<usize>,
    /// Share of searches the live recall monitor re-runs exactly, in the
    /// background (0 turns it off).
    #[arg(long, env = "VECTORWISE_MONITOR_SAMPLE_RATE", default_value_t = MonitorConfig::default().sample_rate)]
    pub monitor_sample_rate: f64,
    /// Most of one core the monitor's exact re-runs may use.
    #[arg(long, env = "VECTORWISE_MONITOR_CPU_SHARE", default_value_t = MonitorConfig::default().cpu_share)]
    pub monitor_cpu_share: f64,
    /// Learn the served index's recall table again from live queries when
    /// they are unlike the indexed data (nine tenths or more of 300 searches
    /// widened), and keep it beside the index (`<index>.calibration.json`).
    /// Off by default: clients' queries then steer the table (README).
    #[arg(long, env = "VECTORWISE_LEARN_CALIBRATION", default_value_t = false, action = clap::ArgAction::Set)]
    pub learn_calibration: bool,
    /// Seconds between two learnings of the table at least; while a learnt
    /// table is served, the interval at which it is learnt again from the
    /// last queries (so that it follows the workload back).
    #[arg(long, env = "VECTORWISE_LEARN_EVERY", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub learn_every: u64,
    /// Largest k a request may ask for.
    #[arg(long, env = "VECTORWISE_MAX_K", default_value_t = 100)]
    pub max_k: usize,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, env = "VECTORWISE_BODY_LIMIT", default_value_t = 4 * 1024 * 1024)]
    pub body_limit: usize,
    /// Seconds a client may take to send a search's or a write's whole body, and the longest pause within any body (slower: 400).
    #[arg(long, env = "VECTORWISE_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,
    /// Seconds a client has to send a request's headers, from the
    /// connection's opening or its previous response: closes slow
    /// (slowloris) and idle keep-alive connections.
    #[arg(long, env = "VECTORWISE_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Open connections at most; past it the connection idle the longest is
    /// closed, or the new one refused with 503 when all are busy. Default:
    /// 1024, or the open-file limit less 64 when that is lower.
    #[arg(long, env = "VECTORWISE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a stop signal waits for requests in flight before the process
    /// exits anyway.
    #[arg(long, env = "VECTORWISE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Queries running or queued at once (a batch counts its queries, up to
    /// the whole bound); past it requests get 503 at once. Default: twice
    /// --max-batch (2048), so two full batches, or a batch and as many
    /// single searches, can wait at once.
    #[arg(long, env = "VECTORWISE_MAX_PENDING")]
    pub max_pending: Option<usize>,
    /// Most queries in one POST /search/batch (more: 422).
    #[arg(long, env = "VECTORWISE_MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,
    /// API keys: a file of one JSON object a line, `{"name", "role",
    /// "sha256", "collections"?}` (make lines with `vectorwise keys new`),
    /// read again on SIGHUP. With keys, every route but `/` and the docs
    /// needs one (`Authorization: Bearer <key>` or `api-key: <key>`).
    #[arg(long, env = "VECTORWISE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// One admin key, in plain (at least 16 visible ASCII characters); with
    /// or without a keys file. Prefer the environment variable: a flag's
    /// value shows in the process list.
    #[arg(long, env = "VECTORWISE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A key of its own for GET /metrics (then only it reads /metrics).
    #[arg(long, env = "VECTORWISE_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<String>,
    /// Searches and point reads per second per caller (its key, or its
    /// address without one); past it, 429 with Retry-After. Off by default.
    #[arg(long, env = "VECTORWISE_RATE_LIMIT_SEARCH")]
    pub rate_limit_search: Option<f64>,
    /// Writes (upserts, deletes, collection creation and deletion) per
    /// second per caller. Off by default.
    #[arg(long, env = "VECTORWISE_RATE_LIMIT_WRITE")]
    pub rate_limit_write: Option<f64>,
    /// Queries of batch searches per second per caller (a batch of n counts
    /// n). Off by default.
    #[arg(long, env = "VECTORWISE_RATE_LIMIT_BATCH")]
    pub rate_limit_batch: Option<f64>,
    /// Bytes the hot-query cache may hold: answers of repeated searches
    /// (`/search`, `/collections/{name}/search`), never served again once
    /// what they searched is written to. 0 turns it off.
    #[arg(long, env = "VECTORWISE_CACHE_BYTES", default_value_t = vectorwise_server::DEFAULT_CACHE_BYTES)]
    pub cache_bytes: u64,
    /// Batch jobs queued or running at once (POST /collections/{name}/jobs);
    /// past it, 503.
    #[arg(long, env = "VECTORWISE_MAX_JOBS", default_value_t = 16)]
    pub max_jobs: usize,
    /// Most queries in one batch job.
    #[arg(long, env = "VECTORWISE_MAX_JOB_QUERIES", default_value_t = 1_000_000)]
    pub max_job_queries: usize,
    /// Largest binary (.npy or raw float32) upload of a batch job, in bytes
    /// (a JSON job keeps --body-limit).
    #[arg(long, env = "VECTORWISE_JOB_BODY_LIMIT", default_value_t = 1 << 30)]
    pub job_body_limit: u64,
    /// Threads batch jobs search on, at the lowest priority (nice 19).
    #[arg(long, env = "VECTORWISE_JOB_THREADS", default_value_t = 1)]
    pub job_threads: usize,
    /// Hours a finished batch job and its answers are kept.
    #[arg(long, env = "VECTORWISE_JOB_RETENTION_HOURS", default_value_t = 24)]
    pub job_retention_hours: u64,
    /// A shared second cache tier in Redis, `redis://host:port[/db]`: after
    /// a memory miss the answer is looked up there (any replica naming the
    /// same Redis may have computed it on the same contents), and a search's
    /// answer is written there too. A Redis error or timeout is a miss; the
    /// server starts and serves without Redis. Off by default.
    #[arg(long, env = "VECTORWISE_CACHE_URL", hide_env_values = true)]
    pub cache_url: Option<String>,
    /// Longest a Redis command may take, milliseconds; slower is a miss.
    #[arg(long, env = "VECTORWISE_CACHE_TIMEOUT_MS", default_value_t = vectorwise_server::DEFAULT_CACHE_TIMEOUT.as_millis() as u64)]
    pub cache_timeout_ms: u64,
    /// How long Redis keeps an answer, seconds.
    #[arg(long, env = "VECTORWISE_CACHE_TTL_SECONDS", default_value_t = vectorwise_server::DEFAULT_CACHE_TTL.as_secs())]
    pub cache_ttl_seconds: u64,
    /// Serve HTTPS with this certificate chain (PEM, the server's
    /// certificate first); HTTP/2 to clients that offer it. Read again on
    /// SIGHUP (new connections get the new one).
    #[arg(long, env = "VECTORWISE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "VECTORWISE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "VECTORWISE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Where collections live (one folder each): their manifests, write-ahead
    /// logs and segments.
    #[arg(long, env = "VECTORWISE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// When an acknowledged write is durable: `always` (fdatasync before the
    /// 200, concurrent writers sharing one sync) or `interval:<ms>` (a
    /// background sync every interval; a crash may lose that long of
    /// acknowledged writes).
    #[arg(long, env = "VECTORWISE_WAL_SYNC", default_value = "always")]
    pub wal_sync: vectorwise_store::SyncMode,
    /// Written points not yet indexed (frozen, searched exactly) past which
    /// an upsert waits for the optimiser (a write stall; 503 with Retry-After
    /// after 5 s); at least twice a collection's seal_points; 0: never wait.
    /// Bounds how slow searches get during a fast ingest and how long
    /// indexing lags behind the last write.
    #[arg(long, env = "VECTORWISE_WRITE_BACKLOG_POINTS", default_value_t = vectorwise_store::DEFAULT_WRITE_BACKLOG)]
    pub write_backlog_points: usize,
    /// Snapshots a collection may keep; past it, taking one answers 409
    /// until one is deleted (each is a full copy). 0: no limit.
    #[arg(long, env = "VECTORWISE_MAX_SNAPSHOTS", default_value_t = vectorwise_store::DEFAULT_MAX_SNAPSHOTS)]
    pub max_snapshots: usize,
    /// Build the index if it is missing even when --index is not the default path.
    #[arg(long)]
    pub auto_build: bool,
    /// Vectors to generate when building on first run.
    #[arg(long, env = "VECTORWISE_DATASET_N", default_value_t = 1_000_000)]
    pub dataset_n: usize,
    /// Dimension of the generated vectors.
    #[arg(long, env = "VECTORWISE_DATASET_DIM", default_value_t = 128)]
    pub dataset_dim: usize,
    #[command(flatten)]
    pub hnsw: HnswArgs,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Base URL of the service (`https://` for a server with --tls-cert).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Trust this certificate (PEM) for an https URL, e.g. the server's own
    /// self-signed one.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Do not check the server's certificate (a health probe on loopback,
    /// which sends no key).
    #[arg(long, conflicts_with = "ca_cert")]
    pub insecure: bool,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

pub fn run(a: Args) -> Result<()> {
    init_logging(a.log_format);
    anyhow::ensure!((0.0..=1.0).contains(&a.monitor_sample_rate), "--monitor-sample-rate must be in 0..=1");
    anyhow::ensure!(
        a.monitor_cpu_share > 0.0 && a.monitor_cpu_share <= 1.0,
        "--monitor-cpu-share must be in (0, 1]"
    );
    let monitor =
        MonitorConfig { sample_rate: a.monitor_sample_rate, cpu_share: a.monitor_cpu_share, ..MonitorConfig::default() };
    let config = ServerConfig {
        default_profile: a.profile,
        ef_search: a.ef_search,
        monitor,
        max_k: a.max_k,
        body_limit_bytes: a.body_limit,
        max_pending_searches: a.max_pending.unwrap_or(2 * a.max_batch),
        max_batch: a.max_batch,
        cors_origins: a.cors_origins.clone(),
        body_timeout: std::time::Duration::from_secs(a.body_timeout),
        rate_limits: vectorwise_server::RateLimits {
            search: a.rate_limit_search,
            write: a.rate_limit_write,
            batch: a.rate_limit_batch,
        },
        cache_bytes: a.cache_bytes,
        jobs: vectorwise_server::JobLimits {
            max_unfinished: a.max_jobs,
            max_queries: a.max_job_queries,
            body_limit_bytes: a.job_body_limit,
            threads: a.job_threads,
            retention: std::time::Duration::from_secs(a.job_retention_hours.saturating_mul(3600)),
        },
        cache_url: a.cache_url.clone().filter(|u| !u.is_empty()),
        cache_timeout: std::time::Duration::from_millis(a.cache_timeout_ms),
        cache_ttl: std::time::Duration::from_secs(a.cache_ttl_seconds),
        learn_calibration: a.learn_calibration,
        learn_every: std::time::Duration::from_secs(a.learn_every),
    };
    if let Some(url) = &config.cache_url {
        vectorwise_server::check_cache_url(url).map_err(|e| anyhow::anyhow!("--cache-url: {e}"))?;
    }
    anyhow::ensure!(a.cache_timeout_ms >= 1, "--cache-timeout-ms must be at least 1");
    anyhow::ensure!(a.cache_ttl_seconds >= 1, "--cache-ttl-seconds must be at least 1");
    config.rate_limits.check().map_err(|e| anyhow::anyhow!("--rate-limit-*: {e}"))?;
    let key_sources =
        crate::keys::Sources { file: a.api_keys_file.clone(), admin_key: a.api_key.clone(), metrics_key: a.metrics_key.clone() };
    key_sources.check()?;
    // Read before binding: a bad keys file stops the start with its line,
    // a bad certificate with its file.
    let keys = key_sources.load()?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(vectorwise_server::Tls::load(cert, key)?)),
        _ => None,
    };
    anyhow::ensure!(a.ef_search.is_none_or(|ef| (1..=100_000).contains(&ef)), "--ef-search must be in 1..=100000");
    anyhow::ensure!((1..=100_000).contains(&a.max_k), "--max-k must be in 1..=100000");
    anyhow::ensure!(a.max_pending.is_none_or(|n| n >= 1), "--max-pending must be at least 1");
    anyhow::ensure!((1..=1_000_000).contains(&a.max_batch), "--max-batch must be in 1..=1000000");
    anyhow::ensure!(a.body_limit >= 1024, "--body-limit must be at least 1024 bytes");
    anyhow::ensure!(a.max_jobs >= 1, "--max-jobs must be at least 1");
    anyhow::ensure!((1..=100_000_000).contains(&a.max_job_queries), "--max-job-queries must be in 1..=100000000");
    anyhow::ensure!(a.job_body_limit >= 1024, "--job-body-limit must be at least 1024 bytes");
    anyhow::ensure!((1..=1024).contains(&a.job_threads), "--job-threads must be in 1..=1024");
    anyhow::ensure!(a.body_timeout >= 1, "--body-timeout must be at least 1 second");
    anyhow::ensure!(a.header_timeout >= 1, "--header-timeout must be at least 1 second");
    anyhow::ensure!(a.max_connections.is_none_or(|n| n >= 1), "--max-connections must be at least 1");
    let limits = vectorwise_server::ConnectionLimits {
        header_timeout: std::time::Duration::from_secs(a.header_timeout),
        max_connections: a.max_connections.unwrap_or_else(default_max_connections),
        shutdown_timeout: std::time::Duration::from_secs(a.shutdown_timeout),
    };
    if let Some(ef) = a.ef_search {
        tracing::warn!(
            ef_search = ef,
            "VECTORWISE_EF_SEARCH / --ef-search is set: requests that name no profile get this fixed depth, \
             with no recall promise, instead of the default profile"
        );
    }
    let (host, port) = (a.host.clone(), a.port);
    let (data_dir, wal_sync, index_path, write_backlog, max_snapshots) =
        (a.data_dir.clone(), a.wal_sync, a.index.clone(), a.write_backlog_points, a.max_snapshots);
    let removed = vectorwise_index::remove_stale_temporaries(&a.index);
    if removed > 0 {
        tracing::info!(removed, index = %a.index.display(), "removed temporaries a killed build left");
    }
    let is_default = a.index == Path::new(DEFAULT_INDEX);
    let mut must_build = !a.index.exists();
    // The demo index of a release before metrics (format 4 or older) is an
    // `l2` index of vectors that were searched with normalised queries;
    // searched as `l2` now, its answers would change: build it again.
    if is_default && !must_build && Index::open(&a.index).is_ok_and(|i| i.info().format_version < 5) {
        tracing::warn!(index = %a.index.display(), "the default index predates metrics (format < 5): building it again as a cosine index");
        must_build = true;
    }
    if must_build && !(a.auto_build || is_default) {
        anyhow::bail!(
            "index file {} not found; build it with `vectorwise build --out {}` or pass --auto-build",
            a.index.display(),
            a.index.display()
        );
    }
    // An existing index is opened before binding, so a bad file stops the
    // process at once with a clear error instead of serving 503s.
    let rate_limits = config.rate_limits;
    let (state, pending) = if must_build {
        (AppState::new(config), Some(a))
    } else {
        let index = open(&a.index, a.learn_calibration)?;
        if let Some(m) = a.hnsw.metric.filter(|&m| m != index.metric()) {
            anyhow::bail!(
                "the metric of {} is {}; --metric {m} applies only when serve builds the index (build a new one with `vectorwise build --metric {m}`)",
                a.index.display(),
                index.metric()
            );
        }
        (AppState::with_index(config, Arc::new(index)), None)
    };
    // Collections are opened (logs replayed) before binding too: a damaged
    // one stops the process with its file and reason.
    let store = Arc::new(
        vectorwise_store::Store::open(&data_dir, wal_sync)
            .with_context(|| format!("cannot open the collections in {}", data_dir.display()))?,
    );
    store.set_write_backlog(write_backlog);
    store.set_max_snapshots(max_snapshots);
    let names = store.list();
    tracing::info!(data_dir = %data_dir.display(), collections = names.len(), "collections ready");
    state.set_store(Arc::clone(&store));
    log_access(&keys, &key_sources, &rate_limits);
    let keys_required = keys.is_required();
    state.set_keys(keys);
    if pending.is_none() {
        import_default(&store, &index_path);
    }
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    // Searches run on the blocking pool. More threads than cores only adds
    // switching: extra searches wait in tokio's queue, still bounded by
    // --max-pending. One more thread for the first-run build, and one for
    // each worker core a search run on a worker hands over meanwhile
    // (`block_in_place`; at most all the workers but one, `dispatch.rs`).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = cores + 1 + cores.saturating_sub(1).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(threads).build()?;
    let store_for_loader = Arc::clone(&store);
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("cannot bind {host}:{port}"))?;
        let address = listener.local_addr()?;
        tracing::info!(%address, tls = tls.is_some(), "listening");
        if !address.ip().is_loopback() && !keys_required {
            tracing::warn!(
                %address,
                "listening beyond loopback with no API keys: anyone who reaches this address can search, \
                 write and delete every collection"
            );
        }
        if !address.ip().is_loopback() && keys_required && tls.is_none() {
            tracing::warn!(
                %address,
                "API keys over plain HTTP beyond loopback: anyone on the path can read them; serve TLS \
                 (--tls-cert, --tls-key) or put a TLS proxy in front"
            );
        }
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(state.clone(), key_sources, tls.clone()));
        if let Some(a) = pending {
            let loader_state = state.clone();
            let loader_store = Arc::clone(&store_for_loader);
            tokio::task::spawn_blocking(move || match build_and_open(&a) {
                Ok(index) => {
                    loader_state.set_index(Arc::new(index));
                    import_default(&loader_store, &a.index);
                }
                Err(e) => {
                    loader_state.set_failed("the index could not be built".into());
                    let _ = failed_tx.send(format!("{e:#}"));
                }
            });
        }
        let failure = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let failure_slot = failure.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown_signal() => {}
                Ok(reason) = failed_rx => {
                    tracing::error!(error = %reason, "index unavailable, stopping");
                    *failure_slot.lock().expect("not poisoned") = Some(reason);
                }
            }
        };
        tracing::info!(
            header_timeout_s = limits.header_timeout.as_secs(),
            max_connections = limits.max_connections,
            shutdown_timeout_s = limits.shutdown_timeout.as_secs(),
            "connection limits"
        );
        match tls {
            Some(tls) => vectorwise_server::serve_tls(listener, app(state), limits, tls, stop).await?,
            None => vectorwise_server::serve(listener, app(state), limits, stop).await?,
        }
        tracing::info!("shut down");
        match failure.lock().expect("not poisoned").take() {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    });
    // Do not wait for a first-run build still running on the blocking pool: a
    // stop signal must stop the process. The index is written to a temp file
    // only after the graph is done, so a stop mid-build leaves no partial index
    // (a stop during those last seconds of writing leaves `.index.vwi.tmp-PID`).
    runtime.shutdown_background();
    store.close();
    result
}

/// Says at start who may do what.
fn log_access(keys: &vectorwise_server::Keys, sources: &crate::keys::Sources, limits: &vectorwise_server::RateLimits) {
    if keys.is_required() {
        tracing::info!(
            keys = keys.len(),
            file = sources.file.as_ref().map(|p| p.display().to_string()),
            admin_key = sources.admin_key.is_some(),
            metrics_key = keys.has_metrics_key(),
            "API keys required (except for / and the docs)"
        );
        if keys.is_empty() {
            tracing::warn!("the keys file holds no key: only / and the docs answer");
        }
    } else {
        tracing::info!(metrics_key = keys.has_metrics_key(), "no API keys: every route answers without a key");
    }
    if limits.any() {
        tracing::info!(search = limits.search, write = limits.write, batch = limits.batch, "rate limits per caller, per second");
    }
}

/// SIGHUP reads the keys and the TLS certificate and key again: new keys
/// apply to the next request, a new certificate to the next connection;
/// connections stay open. A file that cannot be read or is wrong keeps what
/// is in force (and the log says why).
#[cfg(unix)]
async fn reload_on_hangup(state: AppState, sources: crate::keys::Sources, tls: Option<Arc<vectorwise_server::Tls>>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: keys and certificate will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        if sources.file.is_none() && tls.is_none() {
            tracing::info!("SIGHUP: no keys file or certificate to read again");
            continue;
        }
        if sources.file.is_some() {
            let from = sources.clone();
            match tokio::task::spawn_blocking(move || from.load()).await {
                Ok(Ok(keys)) => {
                    let count = keys.len();
                    state.set_keys(keys);
                    tracing::info!(keys = count, file = ?sources.file, "API keys reloaded");
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "API keys not reloaded: the previous keys stay in force");
                }
                Err(e) => tracing::error!(error = %e, "API keys not reloaded: the previous keys stay in force"),
            }
        }
        if let Some(tls) = &tls {
            let t = Arc::clone(tls);
            match tokio::task::spawn_blocking(move || t.reload()).await {
                Ok(Ok(())) => tracing::info!(cert = %tls.cert_path().display(), "TLS certificate reloaded"),
                Ok(Err(e)) => tracing::error!(error = %e, "TLS certificate not reloaded: the previous one stays in force"),
                Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded: the previous one stays in force"),
            }
        }
    }
}

/// Makes the served index the collection `default` (hard-linked, no copy of
/// the vectors where the file system allows), unless it already is or has
/// been written to. A failure is logged: the demo's routes still serve the
/// file.
fn import_default(store: &vectorwise_store::Store, index: &Path) {
    let name = vectorwise_server::DEFAULT_COLLECTION;
    match store.ensure_imported(name, index) {
        Ok(c) => tracing::info!(collection = name, points = c.len(), "the served index is the collection `default`"),
        Err(e) => tracing::error!(collection = name, error = %e, "could not make the served index the collection `default`"),
    }
}

/// 1024 connections, or the open-file limit less 64 (the index, logs, the
/// listener, accept headroom) when that is lower, at least 16.
fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    soft.map_or(1024, |n| (n.saturating_sub(64) as usize).clamp(16, 1024))
}

fn open(path: &Path, learnt: bool) -> Result<Index> {
    let started = Instant::now();
    let index = Index::open(path)?;
    let index = if learnt { vectorwise_server::learn::with_learnt(index) } else { index };
    tracing::info!(
        vectors = index.len(),
        dim = index.dim(),
        path = %path.display(),
        seconds = started.elapsed().as_secs_f64(),
        simd = index.info().simd,
        "index loaded"
    );
    Ok(index)
}

fn build_and_open(a: &Args) -> Result<Index> {
    tracing::info!(index = %a.index.display(), "index not found: building it first (first run); / answers 503 until ready");
    if !a.vectors.exists() {
        generate(&a.vectors, a.dataset_n, a.dataset_dim, 42, Kind::Sphere, 0)?;
    }
    // The demo's data and queries are compared by direction, as the demo's
    // normalised search did: a cosine index.
    build(&a.vectors, None, &a.index, &a.hnsw, vectorwise_index::Metric::Cosine)?;
    open(&a.index, a.learn_calibration)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("signal received, finishing in-flight requests");
}

pub fn health(a: HealthArgs) -> Result<()> {
    let url = format!("{}/", a.url.trim_end_matches('/'));
    let mut tls = ureq::tls::TlsConfig::builder().disable_verification(a.insecure);
    if let Some(path) = &a.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not PEM", path.display()))?;
        anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into();
    let mut resp = agent.get(&url).call().with_context(|| format!("cannot reach {url}"))?;
    let body: serde_json::Value = resp.body_mut().read_json().context("health answer is not JSON")?;
    let status = body.get("status").and_then(|s| s.as_str()).unwrap_or("?");
    println!("{body}");
    anyhow::ensure!(status == "healthy", "service is {status}");
    Ok(())
}
