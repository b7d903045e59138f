//! What the handlers share: the configuration, the index slot (empty while the
//! CLI loads or builds the index in the background), the search permits
//! that bound queued + running searches, and the metrics recorder.

use crate::auth::{Caller, Keys};
use crate::cache::AnswerCache;
use crate::error::ApiError;
use crate::ratelimit::{Budget, Limiters, RateLimits};
use arc_swap::ArcSwap;
use crate::telemetry::{Metrics, SearchKind};
use parking_lot::RwLock;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use crate::monitor::{MonitorConfig, RecallMonitor};
use vectorwise_index::{Index, Profile};

/// Server knobs. The CLI fills this from its flags.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// The profile of requests that name no profile, `recall_target` or
    /// `ef_search` (`VECTORWISE_PROFILE`).
    pub default_profile: Profile,
    /// A fixed search depth for those requests instead (the operator's
    /// `--ef-search`); `None`: the default profile.
    pub ef_search: Option<usize>,
    /// The live recall monitor's sampling and CPU budget.
    pub monitor: MonitorConfig,
    /// Largest `k` a search may ask for.
    pub max_k: usize,
    /// Largest accepted request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Searches queued or running at once; past it, 503 at once. A batch of
    /// n queries counts as n (see [`AppState::try_acquire_search`]).
    pub max_pending_searches: usize,
    /// Most queries in one `POST /search/batch`; more is a 422.
    pub max_batch: usize,
    /// `*` for any origin, else a comma-separated list of origins.
    pub cors_origins: String,
    /// Longest time a client may take to send its body; a slower upload gets
    /// 400 and frees its connection (and does not hold up a graceful shutdown).
    pub body_timeout: std::time::Duration,
    /// Per-caller rates of searches, writes and batch queries (none: unlimited).
    pub rate_limits: RateLimits,
    /// Bytes the hot-query cache may hold (keys, answers and headers); 0
    /// turns it off (`cache.rs`).
    pub cache_bytes: u64,
    /// Batch jobs' bounds (`jobs.rs`).
    pub jobs: crate::jobs::JobLimits,
    /// The shared cache tier, `redis://host:port[/db]` (`--cache-url`,
    /// `VECTORWISE_CACHE_URL`); none: memory only (`shared_cache.rs`).
    pub cache_url: Option<String>,
    /// Longest a Redis command may take before it counts as a miss.
    pub cache_timeout: std::time::Duration,
    /// How long Redis keeps an answer.
    pub cache_ttl: std::time::Duration,
    /// Learn the served index's recall table again from live queries unlike
    /// the indexed data (`learn.rs`).
    pub learn_calibration: bool,
    /// Least time between two learnings; while a learnt table is served,
    /// the time between two (`--learn-every`).
    pub learn_every: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            default_profile: Profile::Balanced,
            ef_search: None,
            monitor: MonitorConfig::default(),
            max_k: 100,
            body_limit_bytes: 4 * 1024 * 1024,
            max_pending_searches: 2048,
            max_batch: 1024,
            cors_origins: "*".to_owned(),
            body_timeout: std::time::Duration::from_secs(30),
            rate_limits: RateLimits::default(),
            cache_bytes: crate::cache::DEFAULT_CACHE_BYTES,
            jobs: crate::jobs::JobLimits::default(),
            cache_url: None,
            cache_timeout: crate::shared_cache::DEFAULT_TIMEOUT,
            cache_ttl: crate::shared_cache::DEFAULT_TTL,
            learn_calibration: false,
            learn_every: crate::learn::DEFAULT_LEARN_EVERY,
        }
    }
}

/// Where the served index is in its life.
#[derive(Debug)]
enum IndexSlot {
    Loading,
    /// The index and its generation: a number no other index served by
    /// this state had (a cache key part).
    Ready(Arc<Index>, u64),
    Failed,
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    // A lock held only to clone or replace the Arc: a later segment swap or
    // reload replaces it while searches keep their own Arc.
    index: RwLock<IndexSlot>,
    searches: Arc<Semaphore>,
    /// The semaphore's size: the most permits one request can take.
    permits: usize,
    metrics: Metrics,
    monitor: RecallMonitor,
    /// The collections (`--data-dir`), when the server has them.
    store: RwLock<Option<Arc<vectorwise_store::Store>>>,
    /// The API keys, replaced whole on reload (requests in flight keep
    /// the set they started with).
    keys: ArcSwap<Keys>,
    limiters: Limiters,
    /// The answers of recent searches.
    cache: AnswerCache,
    /// The last generation given to a served index.
    generations: std::sync::atomic::AtomicU64,
    /// The batch jobs of the data directory, once there is one.
    jobs: RwLock<Option<crate::jobs::Jobs>>,
    /// Where single searches run (the async worker or the blocking pool).
    dispatch: Arc<crate::dispatch::Dispatch>,
    /// The served index's recent queries, to learn its table from.
    learner: crate::learn::Learner,
}

/// Shared state of the router; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// State with no index yet: health reports `loading` until [`set_index`](Self::set_index).
    pub fn new(config: ServerConfig) -> Self {
        let state = AppState::empty(config);
        state.inner.metrics.index_loading();
        state
    }

    /// State serving `index` from the start.
    pub fn with_index(config: ServerConfig, index: Arc<Index>) -> Self {
        let state = AppState::empty(config);
        state.set_index(index);
        state
    }

    fn empty(mut config: ServerConfig) -> Self {
        config.ef_search = config.ef_search.map(|ef| ef.max(1));
        let permits = config.max_pending_searches.min(Semaphore::MAX_PERMITS);
        let metrics = Metrics::new(config.max_batch);
        // The runtime `serve` builds has a worker per core.
        let dispatch = Arc::new(crate::dispatch::Dispatch::new(std::thread::available_parallelism().map_or(1, |n| n.get())));
        let searching = Arc::clone(&dispatch);
        let monitor = RecallMonitor::yielding(config.monitor.clone(), Arc::new(move || searching.searching()));
        let limiters = Limiters::new(&config.rate_limits, config.max_batch);
        let mut cache = AnswerCache::new(config.cache_bytes);
        if let Some(url) = &config.cache_url {
            // The CLI checks the URL first (`check_cache_url`); a bad one here
            // leaves the shared tier off rather than the server down.
            match crate::shared_cache::SharedTier::new(url, config.cache_timeout, config.cache_ttl) {
                Ok(tier) => cache = cache.with_shared(tier),
                Err(e) => tracing::error!(error = e, "the shared cache is off"),
            }
        }
        let learner = crate::learn::Learner::new(config.learn_calibration, config.learn_every);
        AppState {
            inner: Arc::new(Inner {
                learner,
                config,
                index: RwLock::new(IndexSlot::Loading),
                searches: Arc::new(Semaphore::new(permits)),
                permits,
                metrics,
                monitor,
                store: RwLock::new(None),
                keys: ArcSwap::from_pointee(Keys::open()),
                limiters,
                cache,
                generations: std::sync::atomic::AtomicU64::new(0),
                jobs: RwLock::new(None),
                dispatch,
            }),
        }
    }

    /// Starts serving `index` (replacing any previous one).
    pub fn set_index(&self, index: Arc<Index>) {
        tracing::info!(vectors = index.len(), dim = index.dim(), path = %index.path().display(), "index ready");
        if index.calibration().is_none() {
            tracing::warn!(
                path = %index.path().display(),
                "the index has no recall calibration: profiles and recall targets fall back to fixed settings \
                 with no recall promise; run `vectorwise calibrate --index <path>`"
            );
        }
        self.install(&mut self.inner.index.write(), index);
    }

    /// Puts `index` in `slot` under a new generation: its gauges, and a
    /// fresh recall estimate (delivered recall is the served index's).
    fn install(&self, slot: &mut IndexSlot, index: Arc<Index>) {
        self.inner.metrics.index_ready(&index.info());
        self.inner.monitor.reset();
        let generation = self.inner.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        *slot = IndexSlot::Ready(index, generation);
    }

    /// Serves `index` in place of the index of `generation`, if that is
    /// still the one served (a reload meanwhile wins); whether it did.
    pub(crate) fn replace_index_if(&self, generation: u64, index: Arc<Index>) -> bool {
        let mut slot = self.inner.index.write();
        if !matches!(*slot, IndexSlot::Ready(_, g) if g == generation) {
            return false;
        }
        self.install(&mut slot, index);
        true
    }

    pub(crate) fn learner(&self) -> &crate::learn::Learner {
        &self.inner.learner
    }

    /// Records that the background load failed: health reports `unavailable`.
    /// The reason is logged, never sent to clients. An index already being
    /// served stays served: a failed reload must not take the service down.
    pub fn set_failed(&self, reason: String) {
        tracing::error!(%reason, "index load failed");
        let mut slot = self.inner.index.write();
        if !matches!(*slot, IndexSlot::Ready(..)) {
            *slot = IndexSlot::Failed;
        }
    }

    /// Serves the collections of `store` under `/collections`, and runs
    /// the batch jobs of its data directory (resuming those a stop
    /// interrupted). Jobs that cannot start are logged and refused (404).
    pub fn set_store(&self, store: Arc<vectorwise_store::Store>) {
        match crate::jobs::Jobs::open(&store, self.inner.config.jobs.clone()) {
            Ok(jobs) => *self.inner.jobs.write() = Some(jobs),
            Err(error) => tracing::error!(%error, dir = %store.dir().display(), "cannot open the batch jobs: jobs are off"),
        }
        *self.inner.store.write() = Some(store);
    }

    /// The batch jobs, when the server has a data directory.
    pub(crate) fn jobs(&self) -> Option<crate::jobs::Jobs> {
        self.inner.jobs.read().clone()
    }

    /// The collections, when the server has a data directory.
    pub fn store(&self) -> Option<Arc<vectorwise_store::Store>> {
        self.inner.store.read().clone()
    }

    /// Checks requests against `keys` from now on (the server starts open).
    pub fn set_keys(&self, keys: Keys) {
        self.inner.keys.store(Arc::new(keys));
    }

    /// The keys requests are checked against now.
    pub fn keys(&self) -> arc_swap::Guard<Arc<Keys>> {
        self.inner.keys.load()
    }

    /// Spends `n` of `caller`'s `budget`, or the 429 that says when to retry.
    pub(crate) fn admit(&self, caller: &Caller, budget: Budget, n: usize) -> Result<(), ApiError> {
        let admitted = self.inner.limiters.admit(caller, budget, n);
        if admitted.is_err() {
            self.inner.metrics.rate_limited(budget);
        }
        admitted
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The served index, or the 503 that explains why there is none.
    pub(crate) fn index(&self) -> Result<Arc<Index>, ApiError> {
        self.served().map(|(index, _)| index)
    }

    /// The served index and its generation (see [`IndexSlot::Ready`]).
    pub(crate) fn served(&self) -> Result<(Arc<Index>, u64), ApiError> {
        match &*self.inner.index.read() {
            IndexSlot::Ready(index, generation) => Ok((Arc::clone(index), *generation)),
            IndexSlot::Loading => Err(ApiError::IndexLoading),
            IndexSlot::Failed => Err(ApiError::IndexUnavailable),
        }
    }

    /// The hot-query cache.
    pub(crate) fn cache(&self) -> &AnswerCache {
        &self.inner.cache
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The live recall monitor.
    pub fn monitor(&self) -> &RecallMonitor {
        &self.inner.monitor
    }

    /// Where single searches run (`dispatch.rs`).
    pub(crate) fn dispatch(&self) -> &Arc<crate::dispatch::Dispatch> {
        &self.inner.dispatch
    }

    /// Permits for a request of `queries` queries, held until its blocking
    /// task ends; too few left means overload, answered at once rather than
    /// queued (and counted).
    ///
    /// The bound is on queued + running *queries*, since that is the work
    /// (and the wait) it limits: a batch of n takes n permits, all or none,
    /// so batches and single searches share one budget by their work.
    /// Taking one would let every permit hold a batch of `max_batch`, the
    /// pile-up the bound exists to refuse. The default bound is two full
    /// batches (2048 queries, about a second of work for the 1M demo on two
    /// cores), so batches of any admitted size run beside single searches
    /// instead of waiting for an idle server. A batch larger than the whole
    /// bound takes the whole bound.
    pub(crate) fn try_acquire_search(&self, kind: SearchKind, queries: usize) -> Result<SearchPermit, ApiError> {
        // At least one, so that a bound of 0 refuses everything.
        let wanted = queries.clamp(1, self.inner.permits.max(1)).min(u32::MAX as usize);
        match Arc::clone(&self.inner.searches).try_acquire_many_owned(wanted as u32) {
            Ok(permit) => {
                let in_flight = self.inner.metrics.in_flight().clone();
                in_flight.increment(queries as f64);
                Ok(SearchPermit { _permit: permit, in_flight, queries })
            }
            Err(_) => {
                self.inner.metrics.rejected(kind);
                Err(ApiError::Overloaded)
            }
        }
    }
}

/// Held while a search request is queued or running: its semaphore permits
/// and its share of the in-flight gauge, both given back on drop.
#[derive(Debug)]
pub(crate) struct SearchPermit {
    _permit: OwnedSemaphorePermit,
    in_flight: metrics::Gauge,
    queries: usize,
}

impl Drop for SearchPermit {
    fn drop(&mut self) {
        self.in_flight.decrement(self.queries as f64);
    }
}
