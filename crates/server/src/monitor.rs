//! The live recall monitor: re-runs a small sampled share of real queries
//! with exact search, in the background, and keeps a running estimate of the
//! recall each profile actually delivers.
//!
//! How it works:
//!
//! - **On the request path** ([`RecallMonitor::offer`]): two relaxed atomic
//!   increments and a hash decide whether this query is sampled
//!   ([`MonitorConfig::sample_rate`]): about 10 ns. Only a sampled query costs
//!   more (about 150 ns in all at 128-d): a copy of the query and the
//!   returned ids, an `Arc` clone of the index it was searched on and a
//!   `try_send` into a bounded queue ([`MonitorConfig::queue`]), which may
//!   take the channel's internal lock for a moment to wake the thread. A full
//!   queue drops the sample and counts it; `offer` never blocks.
//! - **In the background** (a std thread named `recall-monitor`; in the
//!   server, a served index's re-runs on a second, `recall-monitor-exact-0`,
//!   see [`RecallMonitor::yielding`]): each
//!   sample's exact top-k is computed on *the index it was searched on* (the
//!   sample holds its own `Arc<Index>`, so a swapped-out index stays mapped
//!   until its queued samples are done), and the sample's recall@k =
//!   |returned ∩ exact| / |exact| is added to its label's running mean and
//!   variance (Welford). After an exact run that took `t` seconds, the thread
//!   pauses `t · (1/cpu_share − 1)`, so the exact runs use at most
//!   [`MonitorConfig::cpu_share`] of one core (the exact scan is single
//!   threaded; `t` is wall time, so on a busy machine the bound is
//!   conservative).
//! - **Reading** ([`RecallMonitor::snapshot`]): per label, the mean recall and
//!   a 95 % interval `mean ± 1.96 · s / √n` (normal approximation on the
//!   per-query recalls, clamped to [0, 1]). With fewer than
//!   [`MIN_SAMPLES`] samples the status is `insufficient_data`; when the
//!   interval's upper end is below the label's promise, `below_promise`, and
//!   the monitor logs a `tracing::warn!` (at most once per [`WARN_EVERY`] per
//!   label); else `ok`. A label whose samples carry different promises (a
//!   per-request recall target) is judged on the paired difference: the 95 %
//!   interval of the mean of (recall − promise) must lie below 0; with one
//!   fixed promise that is the same test.
//!
//! The estimate is over every sample since the monitor started (or since the
//! last [`RecallMonitor::reset`], e.g. after an index swap): a slow drift shows
//! late once many samples are in. Recall here is by id, as `bench` measures it:
//! a returned point that ties with an exact neighbour at the same distance
//! (duplicate vectors) but has another id counts as a miss.

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use vectorwise_index::Index;

/// Fewer samples than this for a label: `insufficient_data`.
pub const MIN_SAMPLES: u64 = 30;
/// At most one `below_promise` warning per label per this long.
pub const WARN_EVERY: Duration = Duration::from_secs(60);
/// Most distinct labels kept; samples of further labels are recorded under
/// [`OVERFLOW_LABEL`] (labels are profile names, so this only guards against a
/// caller passing free text).
pub const MAX_LABELS: usize = 64;
/// Where samples of labels past [`MAX_LABELS`] go.
pub const OVERFLOW_LABEL: &str = "other";
/// Longest pause between two exact runs, whatever `cpu_share` says.
const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// A collection's sample older than this when its turn comes is dropped
/// (counted), not measured.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a yielding re-run looks again whether searches still run.
pub const YIELD_POLL: Duration = Duration::from_micros(200);
/// Longest a yielding re-run waits for searches before one step: a server
/// that is never idle still gets its recall measured, a step at a time.
pub const MAX_YIELD: Duration = Duration::from_millis(20);
/// 97.5 % quantile of the standard normal.
const Z95: f64 = 1.959_963_984_540_054;

/// Status strings of [`MonitorEntry::status`].
pub const STATUS_OK: &str = "ok";
pub const STATUS_BELOW_PROMISE: &str = "below_promise";
pub const STATUS_INSUFFICIENT_DATA: &str = "insufficient_data";

/// Monitor knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonitorConfig {
    /// Share of offered queries that are re-run exactly, in [0, 1]
    /// (0: none, 1: all). Out-of-range values are clamped, NaN is 0.
    pub sample_rate: f64,
    /// Most of one core the exact re-runs may use, in (0, 1]. Larger values
    /// are 1; NaN is the default; 0 or less pauses for the longest time
    /// allowed (an hour) after each run.
    pub cpu_share: f64,
    /// Samples waiting for their exact run; when full, a new sample is
    /// dropped (and counted in [`MonitorTotals::dropped`]). 0 accepts a sample
    /// only while the thread is idle and waiting.
    pub queue: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { sample_rate: 0.01, cpu_share: 0.05, queue: 64 }
    }
}

impl MonitorConfig {
    fn sanitized(self) -> Self {
        let sample_rate = if self.sample_rate.is_nan() { 0.0 } else { self.sample_rate.clamp(0.0, 1.0) };
        let cpu_share = if self.cpu_share.is_nan() {
            MonitorConfig::default().cpu_share
        } else {
            self.cpu_share.min(1.0)
        };
        MonitorConfig { sample_rate, cpu_share, queue: self.queue }
    }
}

/// One label's estimate, as `/stats` shows it.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct MonitorEntry {
    /// Profile name (`balanced`, …) or `custom`.
    pub label: String,
    /// Queries re-run exactly for this label.
    pub samples: u64,
    /// Mean recall@k over those queries.
    pub recall_mean: f64,
    /// 95 % interval of the delivered recall (normal approximation, clamped
    /// to [0, 1]; [0, 1] with fewer than two samples).
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// The recall this label promises: the mean of the promises its samples
    /// came with (the promise itself when it is fixed); `null` if none did.
    #[schema(required = true)]
    pub promised: Option<f64>,
    /// `insufficient_data` (fewer than 30 samples), `below_promise` (the
    /// delivered recall is below the promise beyond noise: with a fixed
    /// promise, `ci95_high < promised`) or `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// Counters over the monitor's life.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Default)]
pub struct MonitorTotals {
    /// Queries offered (every answered search the caller reported).
    pub offered: u64,
    /// Offered queries chosen for an exact re-run (dropped ones included).
    pub sampled: u64,
    /// Chosen samples dropped because the queue was full.
    pub dropped: u64,
    /// Exact re-runs done (failed ones included).
    pub exact_runs: u64,
    /// Exact re-runs that failed (a query the index refuses: wrong dimension,
    /// non-finite values); not counted in any label.
    pub failed: u64,
    /// `below_promise` warnings logged.
    pub warnings: u64,
    /// Wall time spent in exact re-runs, in seconds (the pauses keep
    /// `cpu_seconds / uptime ≤ cpu_share`).
    pub cpu_seconds: f64,
}

/// Cheap, lock-free sampling decision: a shared counter hashed by splitmix64
/// and compared with `rate · 2⁵³`. Deterministic for a given sequence of
/// calls; `rate` 1 takes every call, 0 none.
#[derive(Debug)]
struct Sampler {
    counter: AtomicU64,
    /// Take a call when its 53-bit hash is below this.
    threshold: u64,
}

impl Sampler {
    const SEED: u64 = 0x5eed_2ec4_11a0_0001;

    fn new(rate: f64) -> Self {
        // rate in [0, 1]: the threshold is in [0, 2^53], exact for 0 and 1.
        let threshold = (rate * (1u64 << 53) as f64) as u64;
        Sampler { counter: AtomicU64::new(0), threshold }
    }

    fn take(&self) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let n = self.counter.fetch_add(1, Relaxed);
        (splitmix64(n ^ Self::SEED) >> 11) < self.threshold
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a sampled query was searched on, and so what its exact run reads.
#[derive(Clone, Debug)]
pub enum Searched {
    /// The served index (the demo's routes).
    Index(Arc<Index>),
    /// A collection, with the search's filter: the exact run is the exact
    /// search of the points the filter lets through, at the time it runs.
    Collection(Arc<vectorwise_store::Collection>, Option<Arc<vectorwise_store::Filter>>),
}

/// A sampled query waiting for its exact run.
#[derive(Debug)]
struct Sample {
    searched: Searched,
    label: String,
    promised: Option<f64>,
    query: Vec<f32>,
    k: usize,
    returned: Vec<u64>,
    generation: u64,
    offered: Instant,
}

/// Running mean and variance (Welford).
#[derive(Clone, Copy, Debug, Default)]
struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The 95 % interval of the mean (normal approximation); `None` with
    /// fewer than two values.
    fn interval(&self) -> Option<(f64, f64)> {
        if self.n < 2 {
            return None;
        }
        let variance = (self.m2 / (self.n - 1) as f64).max(0.0);
        let half = Z95 * (variance / self.n as f64).sqrt();
        Some((self.mean - half, self.mean + half))
    }
}

/// One label's running statistics.
#[derive(Debug, Default)]
struct LabelStats {
    /// Per-query recall.
    recall: Welford,
    /// Per-query recall − promise, over the samples that came with a promise:
    /// the paired difference, so that a label whose requests carry different
    /// promises (a per-request recall target) is judged against what each
    /// was promised.
    shortfall: Welford,
    promise_sum: f64,
    /// The promise while every sample had the same one (reported exactly).
    fixed_promise: Option<f64>,
    promise_varies: bool,
    last_warning: Option<Instant>,
}

impl LabelStats {
    fn add(&mut self, recall: f64, promised: Option<f64>) {
        self.recall.add(recall);
        if let Some(p) = promised {
            self.shortfall.add(recall - p);
            self.promise_sum += p;
            self.promise_varies |= self.fixed_promise.is_some_and(|fixed| fixed != p);
            self.fixed_promise = Some(p);
        }
    }

    /// The recall's 95 % interval, clamped to [0, 1].
    fn interval(&self) -> (f64, f64) {
        self.recall.interval().map_or((0.0, 1.0), |(low, high)| (low.clamp(0.0, 1.0), high.clamp(0.0, 1.0)))
    }

    /// The mean promise of the samples that had one.
    fn promised(&self) -> Option<f64> {
        match self.fixed_promise {
            Some(p) if !self.promise_varies => Some(p),
            _ => (self.shortfall.n > 0).then(|| self.promise_sum / self.shortfall.n as f64),
        }
    }

    fn status(&self) -> &'static str {
        if self.recall.n < MIN_SAMPLES {
            STATUS_INSUFFICIENT_DATA
        } else if self.shortfall.n >= MIN_SAMPLES && self.shortfall.interval().is_some_and(|(_, high)| high < 0.0) {
            // With one fixed promise p: ci95_high < p.
            STATUS_BELOW_PROMISE
        } else {
            STATUS_OK
        }
    }

    fn entry(&self, label: &str) -> MonitorEntry {
        let (ci95_low, ci95_high) = self.interval();
        MonitorEntry {
            label: label.to_owned(),
            samples: self.recall.n,
            recall_mean: self.recall.mean,
            ci95_low,
            ci95_high,
            promised: self.promised(),
            status: self.status().to_owned(),
        }
    }
}

/// What the handles and the thread share.
#[derive(Debug, Default)]
struct Shared {
    labels: Mutex<BTreeMap<String, LabelStats>>,
    /// Set when the last handle is dropped; the thread's pauses wait on it.
    stop: Mutex<bool>,
    wake: Condvar,
    /// Bumped by `reset`: samples offered before it are skipped.
    generation: AtomicU64,
    offered: AtomicU64,
    sampled: AtomicU64,
    dropped: AtomicU64,
    exact_runs: AtomicU64,
    failed: AtomicU64,
    warnings: AtomicU64,
    busy_nanos: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        *self.stop.lock()
    }

    /// Sleeps `pause`, or less if the monitor is dropped meanwhile. Returns
    /// whether to go on.
    fn pause(&self, pause: Duration) -> bool {
        let deadline = Instant::now().checked_add(pause.min(MAX_PAUSE));
        let mut stop = self.stop.lock();
        while !*stop {
            match deadline {
                Some(deadline) if Instant::now() < deadline => {
                    self.wake.wait_until(&mut stop, deadline);
                }
                _ => break,
            }
        }
        !*stop
    }
}

/// The handle's owner: stops and joins the thread when the last clone of the
/// [`RecallMonitor`] goes.
#[derive(Debug)]
struct Handle {
    config: MonitorConfig,
    sampler: Sampler,
    shared: Arc<Shared>,
    /// `None` only during drop.
    sender: Option<SyncSender<Sample>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        // Wakes a thread waiting for a sample.
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            // Waits for at most the exact run in progress.
            let _ = thread.join();
        }
    }
}

/// The live recall monitor: a cheap-to-clone handle (`Send + Sync`) on one
/// background thread, which ends when the last clone is dropped (the drop
/// waits for the exact run in progress, if any: one exact scan of the index).
#[derive(Clone, Debug)]
pub struct RecallMonitor {
    inner: Arc<Handle>,
}

impl RecallMonitor {
    /// Starts the background thread (`recall-monitor`). If the thread cannot
    /// be started, the monitor logs an error and drops every sample (counted).
    pub fn new(config: MonitorConfig) -> Self {
        Self::start(config, None)
    }

    /// [`RecallMonitor::new`] whose exact re-runs give way to searches (the
    /// server's): a served index's re-runs run at the lowest priority
    /// ([`lowest_priority_here`]), and before each step of about
    /// [`vectorwise_index::PACE_STEP_BYTES`] of rows a re-run waits while
    /// `searching()` says a search runs (polling every [`YIELD_POLL`], at most
    /// [`MAX_YIELD`] a step). A search then shares its cores and the memory
    /// bus with at most one step of a re-run, not a whole scan of the index;
    /// on a server that searches all the time, fewer samples are measured
    /// (the queue drops the rest, counted). A re-run's time, its waits
    /// included, counts toward `cpu_share`, so the busier the server the
    /// longer the pause after it: the back-off is what keeps the re-runs out
    /// of the tail. Counting the work alone gave 8–12 re-runs in a run of
    /// 10,000 sequential searches of the 1M demo against 4–5, and p99/p50
    /// 1.86–3.60 against 1.59–2.02 (bench/results/HISTORY.md).
    pub fn yielding(config: MonitorConfig, searching: Arc<dyn Fn() -> bool + Send + Sync>) -> Self {
        Self::start(config, Some(searching))
    }

    fn start(config: MonitorConfig, searching: Option<Arc<dyn Fn() -> bool + Send + Sync>>) -> Self {
        let config = config.sanitized();
        let shared = Arc::new(Shared::default());
        let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue);
        let worker = Arc::clone(&shared);
        let cpu_share = config.cpu_share;
        let thread = std::thread::Builder::new()
            .name("recall-monitor".to_owned())
            .spawn(move || run(&worker, &receiver, cpu_share, searching))
            .map_err(|e| tracing::error!(error = %e, "recall monitor thread not started; no samples will be taken"))
            .ok();
        RecallMonitor {
            inner: Arc::new(Handle { sampler: Sampler::new(config.sample_rate), config, shared, sender: Some(sender), thread }),
        }
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> MonitorConfig {
        self.inner.config
    }

    /// Reports an answered search: `query` as the client sent it,
    /// `returned` the ids answered for `k`, on `index`, under `label` (the
    /// profile name, or `custom`) with the recall the caller was `promised`
    /// (non-finite promises are ignored). Decides whether to sample it and, if
    /// so, queues a copy for an exact re-run; never blocks. A `k` of 0 is
    /// ignored.
    pub fn offer(&self, index: &Arc<Index>, label: &str, promised: Option<f64>, query: &[f32], k: usize, returned: &[u64]) {
        self.offer_searched(|| Searched::Index(Arc::clone(index)), label, promised, query, k, returned);
    }

    /// [`RecallMonitor::offer`] for a search of what `searched` gives (only
    /// called for a sampled query).
    pub fn offer_searched(
        &self,
        searched: impl FnOnce() -> Searched,
        label: &str,
        promised: Option<f64>,
        query: &[f32],
        k: usize,
        returned: &[u64],
    ) {
        let h = &*self.inner;
        h.shared.offered.fetch_add(1, Relaxed);
        if k == 0 || !h.sampler.take() {
            return;
        }
        h.shared.sampled.fetch_add(1, Relaxed);
        let sample = Sample {
            searched: searched(),
            label: label.to_owned(),
            promised: promised.filter(|p| p.is_finite()),
            query: query.to_vec(),
            k,
            // More than k returned ids: only the first k count.
            returned: returned[..returned.len().min(k)].to_vec(),
            generation: h.shared.generation.load(Relaxed),
            offered: Instant::now(),
        };
        let sent = match &h.sender {
            Some(sender) => sender.try_send(sample),
            None => return,
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                h.shared.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// One entry per label seen since the start (or the last reset), sorted
    /// by label.
    pub fn snapshot(&self) -> Vec<MonitorEntry> {
        self.inner.shared.labels.lock().iter().map(|(label, stats)| stats.entry(label)).collect()
    }

    /// Counters since the start (a reset does not clear them).
    pub fn totals(&self) -> MonitorTotals {
        let s = &self.inner.shared;
        MonitorTotals {
            offered: s.offered.load(Relaxed),
            sampled: s.sampled.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            exact_runs: s.exact_runs.load(Relaxed),
            failed: s.failed.load(Relaxed),
            warnings: s.warnings.load(Relaxed),
            cpu_seconds: s.busy_nanos.load(Relaxed) as f64 * 1e-9,
        }
    }

    /// Forgets every label's estimate, e.g. when a new index is served;
    /// samples offered before the reset and still queued are skipped.
    pub fn reset(&self) {
        let shared = &self.inner.shared;
        let mut labels = shared.labels.lock();
        shared.generation.fetch_add(1, Relaxed);
        labels.clear();
    }
}

/// The thread that re-runs a served index's samples runs under Linux's
/// `SCHED_IDLE` (else at nice 19): a search thread woken on its core takes
/// it at once. A nice-19 thread still keeps its core for the rest of its
/// time slice (EEVDF's run to parity): one 1M × 128 re-run (~15 ms) stalled
/// the searches that woke beside it, and the demo's sequential p99 was
/// 2.45–4.15 × its p50 (with the re-runs idle and yielding, 1.52–2.07 ×;
/// `vectorwise bench`, bench/results/HISTORY.md). Linux only: elsewhere
/// nothing changes.
#[cfg(target_os = "linux")]
fn lowest_priority_here() {
    use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id, thread_schedule_policy};
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    // The crate also resets the nice value, which fails in a process above
    // nice 0 after SCHED_IDLE is set: what counts is the policy.
    let result = set_thread_priority_and_policy(thread_native_id(), thread_priority::ThreadPriority::Min, idle);
    if result.is_err() && thread_schedule_policy().ok() != Some(idle) {
        tracing::warn!(error = ?result, "recall monitor: SCHED_IDLE refused; its exact re-runs run at nice 19");
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority_here() {}

/// The thread: exact re-run, record, pause; until the monitor is dropped.
/// Giving way to `searching`, a served index's re-runs run on a one-thread
/// pool of their own at the lowest priority ([`lowest_priority_here`]) and
/// are paced; a collection's are paced on this thread, at the process's
/// priority: they take a memory segment's read lock, and one starved there
/// would hold up the writers and the searches queued behind them. Once the
/// monitor stops, nothing waits for searches.
fn run(shared: &Arc<Shared>, samples: &Receiver<Sample>, cpu_share: f64, searching: Option<Arc<dyn Fn() -> bool + Send + Sync>>) {
    // Giving way: a pool of one lowest-priority thread, a pause between the
    // steps of an exact scan.
    let giving_way = searching.map(|searching| {
        let pool = crate::jobs::background_pool("recall-monitor-exact", 1, lowest_priority_here)
            .map_err(|error| tracing::warn!(%error, "recall monitor: no pool of its own; a served index's re-runs run at the process's priority"))
            .ok();
        let stopping = Arc::clone(shared);
        let pause: vectorwise_index::Pause = Arc::new(move || {
            let start = Instant::now();
            while searching() && start.elapsed() < MAX_YIELD && !stopping.stopping() {
                std::thread::sleep(YIELD_POLL);
            }
        });
        (pool, pause)
    });
    let measure = |sample: &Sample| match &giving_way {
        None => measure(sample),
        Some((pool, pause)) => {
            let run = || {
                pause();
                vectorwise_index::paced(Arc::clone(pause), || measure(sample))
            };
            match (pool, &sample.searched) {
                (Some(pool), Searched::Index(_)) => pool.install(run),
                _ => run(),
            }
        }
    };
    // Pause per second of exact work.
    let pause_factor = if cpu_share > 0.0 { 1.0 / cpu_share - 1.0 } else { f64::INFINITY };
    while let Ok(sample) = samples.recv() {
        if shared.stopping() {
            break;
        }
        if sample.generation != shared.generation.load(Relaxed) {
            continue;
        }
        // A collection's data moves on: an exact answer long after the
        // search would judge it against points it never saw.
        if matches!(sample.searched, Searched::Collection(..)) && sample.offered.elapsed() > STALE_AFTER {
            shared.dropped.fetch_add(1, Relaxed);
            continue;
        }
        let start = Instant::now();
        let measured = measure(&sample);
        let took = start.elapsed();
        shared.busy_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        shared.exact_runs.fetch_add(1, Relaxed);
        match measured {
            // Each arm lets go of the sample, so that its index or
            // collection is not held through the pause.
            Ok(Some(recall)) => record(shared, sample, recall),
            Ok(None) => drop(sample),
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, label = %sample.label, "recall monitor: exact re-run failed");
                drop(sample);
            }
        }
        let pause = Duration::try_from_secs_f64(took.as_secs_f64() * pause_factor).unwrap_or(MAX_PAUSE);
        if !shared.pause(pause) {
            break;
        }
    }
}

/// The sample's recall@k against the exact top-k of its own index; `None`
/// when the index is empty (recall is undefined).
fn measure(sample: &Sample) -> vectorwise_index::Result<Option<f64>> {
    let exact: Vec<u64> = match &sample.searched {
        Searched::Index(index) => {
            let k = sample.k.min(index.len());
            if k == 0 {
                return Ok(None);
            }
            index.exact_search(&sample.query, k)?.iter().map(|n| n.id).collect()
        }
        Searched::Collection(c, filter) => {
            let opts = vectorwise_store::SearchOptions {
                k: sample.k,
                request: vectorwise_index::plan::SearchRequest::RecallTarget(1.0),
                with_payload: false,
                with_vector: false,
                payload_budget: 0,
                filter: filter.clone(),
            };
            // A dropped collection or a failed search: no measurement.
            match c.search(&sample.query, &opts) {
                Ok(out) => out.hits.iter().map(|h| h.key).collect(),
                Err(_) => return Ok(None),
            }
        }
    };
    Ok(recall(&sample.returned, &exact))
}

/// |returned ∩ exact| / |exact| (each exact id counted once); `None` for an
/// empty `exact`.
fn recall(returned: &[u64], exact: &[u64]) -> Option<f64> {
    if exact.is_empty() {
        return None;
    }
    let mut found = returned.to_vec();
    found.sort_unstable();
    let hits = exact.iter().filter(|id| found.binary_search(id).is_ok()).count();
    Some(hits as f64 / exact.len() as f64)
}

fn record(shared: &Shared, sample: Sample, recall: f64) {
    let mut labels = shared.labels.lock();
    // A reset between the run and now: the sample belongs to the old index.
    if sample.generation != shared.generation.load(Relaxed) {
        return;
    }
    let label = if labels.len() >= MAX_LABELS && !labels.contains_key(&sample.label) {
        OVERFLOW_LABEL.to_owned()
    } else {
        sample.label
    };
    let stats = labels.entry(label.clone()).or_default();
    stats.add(recall, sample.promised);
    if stats.status() == STATUS_BELOW_PROMISE && stats.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
        stats.last_warning = Some(Instant::now());
        shared.warnings.fetch_add(1, Relaxed);
        let (low, high) = stats.interval();
        tracing::warn!(
            label = %label,
            recall_mean = stats.recall.mean,
            ci95_low = low,
            ci95_high = high,
            promised = stats.promised(),
            samples = stats.recall.n,
            "delivered recall is below the profile's promise"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorwise_index::scan::ScanOptions;
    use vectorwise_index::{IndexOptions, Matrix, Method, SearchParams, dataset};

    const K: usize = 10;

    /// A small scan index (built once for all tests: the k-means of a debug
    /// build is what costs), queries near its points, what a deliberately
    /// shallow scan returns for each, and each query's true recall@K.
    struct Fixture {
        index: Arc<Index>,
        queries: Matrix,
        returned: Vec<Vec<u64>>,
        recalls: Vec<f64>,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.vwi");
            let data = dataset::sphere(2000, 16, 7);
            let options = IndexOptions {
                graph: None,
                scan: Some(ScanOptions { dsub: 4, seed: 1, lists: 0 }),
                default_method: Method::Scan, ..Default::default()
            };
            vectorwise_index::build(&data, &path, &options, &|_| {}).unwrap();
            // The mapping outlives the file's directory entry.
            let index = Arc::new(Index::open(&path).unwrap());
            let queries = dataset::noisy_queries(data.as_slice(), data.dim(), 1000, 11);
            let (mut returned, mut recalls) = (Vec::new(), Vec::new());
            for q in queries.rows() {
                let found: Vec<u64> = index.search(q, K, &SearchParams::scan(1)).unwrap().iter().map(|n| n.id).collect();
                let exact: Vec<u64> = index.exact_search(q, K).unwrap().iter().map(|n| n.id).collect();
                recalls.push(found.iter().filter(|id| exact.contains(id)).count() as f64 / K as f64);
                returned.push(found);
            }
            Fixture { index, queries, returned, recalls }
        })
    }

    impl Fixture {
        /// Mean true recall of the first `n` queries.
        fn true_recall(&self, n: usize) -> f64 {
            self.recalls[..n].iter().sum::<f64>() / n as f64
        }

        /// Offers the first `n` queries under `label`.
        fn offer(&self, monitor: &RecallMonitor, n: usize, label: &str, promised: Option<f64>) {
            for (q, found) in self.queries.rows().zip(&self.returned).take(n) {
                monitor.offer(&self.index, label, promised, q, K, found);
            }
        }
    }

    fn all_at_once() -> MonitorConfig {
        MonitorConfig { sample_rate: 1.0, cpu_share: 1.0, queue: 4096 }
    }

    /// A yielding monitor waits while searches run (up to `MAX_YIELD` a
    /// step) and measures once they stop.
    #[test]
    fn a_yielding_monitor_waits_for_the_searches_to_stop() {
        use std::sync::atomic::AtomicBool;
        let f = fixture();
        let searching = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&searching);
        let monitor = RecallMonitor::yielding(all_at_once(), Arc::new(move || flag.load(Relaxed)));
        f.offer(&monitor, 1, "balanced", Some(0.95));
        // A re-run waits at least MAX_YIELD (20 ms) before its first step
        // while searches run: none can have ended yet.
        std::thread::sleep(MAX_YIELD * 3 / 4);
        assert_eq!(monitor.totals().exact_runs, 0, "measured while searches ran");
        searching.store(false, Relaxed);
        assert_eq!(wait_for_runs(&monitor, 1).exact_runs, 1);
    }

    /// Polls until the thread has run `runs` exact searches (or 5 s passed).
    fn wait_for_runs(monitor: &RecallMonitor, runs: u64) -> MonitorTotals {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let totals = monitor.totals();
            if totals.exact_runs >= runs || Instant::now() > deadline {
                return totals;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn entry(monitor: &RecallMonitor, label: &str) -> MonitorEntry {
        monitor.snapshot().into_iter().find(|e| e.label == label).unwrap_or_else(|| panic!("no entry {label}"))
    }

    #[test]
    fn every_query_sampled_gives_the_true_recall_and_its_interval() {
        let f = fixture();
        let truth = f.true_recall(400);
        assert!((0.1..0.9).contains(&truth), "the fixture needs a recall well below 1, got {truth}");
        let monitor = RecallMonitor::new(all_at_once());
        f.offer(&monitor, 400, "fast", None);
        let totals = wait_for_runs(&monitor, 400);
        assert_eq!((totals.offered, totals.sampled, totals.dropped, totals.exact_runs, totals.failed), (400, 400, 0, 400, 0));
        assert!(totals.cpu_seconds > 0.0);

        let e = entry(&monitor, "fast");
        assert_eq!(e.samples, 400);
        assert!((e.recall_mean - truth).abs() < 1e-9, "mean {} vs true {truth}", e.recall_mean);
        // The interval, computed independently from the per-query recalls.
        let n = 400.0;
        let var = f.recalls[..400].iter().map(|r| (r - truth).powi(2)).sum::<f64>() / (n - 1.0);
        let half = 1.96 * (var / n).sqrt();
        assert!(half > 0.005, "recalls should vary across queries");
        assert!((e.ci95_low - (truth - half)).abs() < 1e-3 && (e.ci95_high - (truth + half)).abs() < 1e-3, "{e:?}, half {half}");
        assert_eq!((e.promised, e.status.as_str()), (None, STATUS_OK));
    }

    #[test]
    fn a_sampled_share_estimates_the_recall_of_all_queries() {
        let f = fixture();
        let truth = f.true_recall(1000);
        let monitor = RecallMonitor::new(MonitorConfig { sample_rate: 0.3, ..all_at_once() });
        f.offer(&monitor, 1000, "balanced", None);
        let sampled = monitor.totals().sampled;
        assert!((220..=380).contains(&sampled), "{sampled} of 1000 sampled at rate 0.3");
        wait_for_runs(&monitor, sampled);
        let e = entry(&monitor, "balanced");
        assert_eq!(e.samples, sampled);
        assert!((e.recall_mean - truth).abs() < 0.05, "estimate {} vs true {truth}", e.recall_mean);
        assert!(e.ci95_low <= truth && truth <= e.ci95_high, "true {truth} outside {e:?}");
        assert!(e.ci95_high - e.ci95_low < 0.1, "interval too wide: {e:?}");
    }

    #[test]
    fn status_follows_the_promise_and_warns_once() {
        let f = fixture();
        let truth = f.true_recall(300);
        let monitor = RecallMonitor::new(all_at_once());
        f.offer(&monitor, 300, "over_promised", Some(truth + 0.15));
        f.offer(&monitor, 300, "under_promised", Some(truth - 0.15));
        for (q, found) in f.queries.rows().zip(&f.returned).take(10) {
            monitor.offer(&f.index, "few", Some(0.99), q, K, found);
        }
        let totals = wait_for_runs(&monitor, 610);
        assert_eq!(totals.exact_runs, 610);
        let statuses: Vec<_> = monitor.snapshot().into_iter().map(|e| (e.label, e.status)).collect();
        let expected = [("few", STATUS_INSUFFICIENT_DATA), ("over_promised", STATUS_BELOW_PROMISE), ("under_promised", STATUS_OK)];
        assert_eq!(statuses, expected.map(|(l, s)| (l.to_owned(), s.to_owned())));
        let over = entry(&monitor, "over_promised");
        assert!(over.ci95_high < truth + 0.15 && over.promised == Some(truth + 0.15), "{over:?}");
        // 270 samples were below the promise with enough data: one warning.
        assert_eq!(totals.warnings, 1);
    }

    /// Per-request promises: judged against what each query was promised,
    /// not against the latest promise.
    #[test]
    fn mixed_promises_are_judged_query_by_query() {
        let f = fixture();
        let truth = f.true_recall(400);
        let monitor = RecallMonitor::new(all_at_once());
        let offer = |label: &str, promise: &dyn Fn(usize) -> f64| {
            for (i, (q, found)) in f.queries.rows().zip(&f.returned).take(400).enumerate() {
                monitor.offer(&f.index, label, Some(promise(i)), q, K, found);
            }
        };
        // Promises averaging the truth, the last one far above it: ok.
        offer("even", &|i| if i % 2 == 0 { truth - 0.3 } else { truth + 0.3 });
        // All promises above the truth, the last one below it: below_promise.
        offer("above", &|i| if i == 399 { truth - 0.3 } else { truth + 0.2 });
        wait_for_runs(&monitor, 800);
        let (above, even) = (entry(&monitor, "above"), entry(&monitor, "even"));
        assert_eq!((above.status.as_str(), even.status.as_str()), (STATUS_BELOW_PROMISE, STATUS_OK), "{above:?} {even:?}");
        assert!((even.promised.unwrap() - truth).abs() < 1e-9, "{even:?}");
    }

    #[test]
    fn a_rate_of_zero_samples_nothing() {
        let f = fixture();
        let monitor = RecallMonitor::new(MonitorConfig { sample_rate: 0.0, ..all_at_once() });
        f.offer(&monitor, 200, "fast", None);
        std::thread::sleep(Duration::from_millis(50));
        let totals = monitor.totals();
        assert_eq!((totals.offered, totals.sampled, totals.exact_runs), (200, 0, 0));
        assert!(monitor.snapshot().is_empty());
    }

    #[test]
    fn the_sampler_takes_its_share_and_the_config_is_clamped() {
        for rate in [0.01, 0.25, 0.5] {
            let sampler = Sampler::new(rate);
            let taken = (0..200_000).filter(|_| sampler.take()).count() as f64 / 200_000.0;
            assert!((taken - rate).abs() < 0.1 * rate + 0.002, "rate {rate}: took {taken}");
        }
        assert!((0..10_000).all(|_| Sampler::new(1.0).take()));
        let one = Sampler::new(1.0);
        assert!((0..10_000).all(|_| one.take()));
        let none = Sampler::new(0.0);
        assert!(!(0..10_000).any(|_| none.take()));

        let c = MonitorConfig { sample_rate: 7.0, cpu_share: 3.0, queue: 1 }.sanitized();
        assert_eq!((c.sample_rate, c.cpu_share), (1.0, 1.0));
        let c = MonitorConfig { sample_rate: f64::NAN, cpu_share: f64::NAN, queue: 1 }.sanitized();
        assert_eq!((c.sample_rate, c.cpu_share), (0.0, 0.05));
        assert_eq!(MonitorConfig { sample_rate: -1.0, ..Default::default() }.sanitized().sample_rate, 0.0);
    }

    /// A worker kept busy (one run, then a very long pause): further samples
    /// fill the queue and are dropped, `offer` never waits, and dropping the
    /// monitor ends the pause at once.
    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let f = fixture();
        let monitor = RecallMonitor::new(MonitorConfig { sample_rate: 1.0, cpu_share: 1e-9, queue: 2 });
        let offering = monitor.clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let start = Instant::now();
            f.offer(&offering, 100, "fast", None);
            done.send(start.elapsed()).unwrap();
        });
        let took = finished.recv_timeout(Duration::from_secs(5)).expect("offer blocked");
        assert!(took < Duration::from_secs(1), "100 offers took {took:?}");
        let totals = wait_for_runs(&monitor, 1);
        // At most one sample taken by the thread and two queued.
        assert_eq!(totals.sampled, 100);
        assert!((97..=99).contains(&totals.dropped), "{totals:?}");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(monitor.totals().exact_runs, 1, "the pause must hold off the next run");

        let start = Instant::now();
        drop(monitor);
        assert!(start.elapsed() < Duration::from_secs(2), "drop waited {:?}", start.elapsed());
    }

    /// With cpu_share 0.25 the thread is busy at most a quarter of the time.
    #[test]
    fn the_exact_runs_keep_to_their_cpu_share() {
        let f = fixture();
        let monitor = RecallMonitor::new(MonitorConfig { sample_rate: 1.0, cpu_share: 0.25, queue: 4096 });
        let start = Instant::now();
        f.offer(&monitor, 100, "fast", None);
        let totals = wait_for_runs(&monitor, 100);
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(totals.exact_runs, 100);
        // The last run's pause is not waited for: allow one run's worth.
        let bound = totals.cpu_seconds / 0.25 - 3.0 * totals.cpu_seconds / 100.0;
        assert!(elapsed >= bound, "{elapsed} s elapsed for {} s of exact runs", totals.cpu_seconds);
    }

    #[test]
    fn odd_input_neither_panics_nor_counts_wrongly() {
        let f = fixture();
        let monitor = RecallMonitor::new(all_at_once());
        let q = f.queries.row(0);
        let all: Vec<u64> = (0..2000).collect();
        // k beyond the index: capped at its size; every id returned: recall 1.
        monitor.offer(&f.index, "big_k", None, q, 5000, &all);
        // Nothing returned: recall 0.
        monitor.offer(&f.index, "empty", Some(0.5), q, K, &[]);
        // More ids than k: only the first k count (here the exact ones, then junk).
        let exact: Vec<u64> = f.index.exact_search(q, K).unwrap().iter().map(|n| n.id).collect();
        let mut long = exact.clone();
        long.extend(1900..2000);
        monitor.offer(&f.index, "long", None, q, K, &long);
        // Duplicated ids count once; ids the index does not hold are misses.
        let dup = [exact[0], exact[0], exact[0], 1 << 40];
        monitor.offer(&f.index, "dup", None, q, K, &dup);
        // k = 0 is ignored; a query of the wrong size or with NaN fails the run.
        monitor.offer(&f.index, "zero_k", None, q, 0, &exact);
        monitor.offer(&f.index, "bad", None, &q[..5], K, &exact);
        let mut nan = q.to_vec();
        nan[0] = f32::NAN;
        monitor.offer(&f.index, "bad", Some(f64::NAN), &nan, K, &exact);

        let totals = wait_for_runs(&monitor, 6);
        assert_eq!((totals.offered, totals.sampled, totals.exact_runs, totals.failed), (7, 6, 6, 2));
        let got: Vec<_> = monitor.snapshot().into_iter().map(|e| (e.label, e.samples, e.recall_mean)).collect();
        let want = [("big_k", 1, 1.0), ("dup", 1, 0.1), ("empty", 1, 0.0), ("long", 1, 1.0)];
        assert_eq!(got, want.map(|(l, n, r)| (l.to_owned(), n, r)));
        let empty = entry(&monitor, "empty");
        assert_eq!((empty.ci95_low, empty.ci95_high, empty.status.as_str()), (0.0, 1.0, STATUS_INSUFFICIENT_DATA));
    }

    #[test]
    fn reset_forgets_the_estimates_and_labels_are_bounded() {
        let f = fixture();
        let monitor = RecallMonitor::new(all_at_once());
        let (q, found) = (f.queries.row(0), &f.returned[0]);
        for i in 0..MAX_LABELS + 5 {
            monitor.offer(&f.index, &format!("l{i:03}"), None, q, K, found);
        }
        wait_for_runs(&monitor, (MAX_LABELS + 5) as u64);
        let snapshot = monitor.snapshot();
        assert_eq!(snapshot.len(), MAX_LABELS + 1);
        assert_eq!(entry(&monitor, OVERFLOW_LABEL).samples, 5);
        assert!(snapshot.windows(2).all(|w| w[0].label < w[1].label), "sorted by label");

        monitor.reset();
        assert!(monitor.snapshot().is_empty());
        monitor.offer(&f.index, "after", None, q, K, found);
        wait_for_runs(&monitor, (MAX_LABELS + 6) as u64);
        assert_eq!(monitor.snapshot().iter().map(|e| e.label.as_str()).collect::<Vec<_>>(), ["after"]);
    }

    #[test]
    fn the_monitor_is_send_sync_and_its_entries_serialize() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<RecallMonitor>();
        let mut stats = LabelStats::default();
        (0..40).for_each(|_| stats.add(0.5, Some(0.9)));
        let json = serde_json::to_value(stats.entry("x")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"label": "x", "samples": 40, "recall_mean": 0.5, "ci95_low": 0.5, "ci95_high": 0.5,
                "promised": 0.9, "status": "below_promise"})
        );
    }
}
