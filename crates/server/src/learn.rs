//! Live calibration: the served index's recall table learnt again from the
//! queries it is sent, when they are unlike those it was measured on.
//!
//! The table of an index is measured at build on queries like the data
//! (indexed points, or a given sample). A workload unlike them (questions
//! against passages, a new embedding model, random vectors) is caught per
//! query and searched more widely (`Index::widen_far`): right, but at the
//! widening's price. Here the server keeps the last [`LEARN_QUERIES`]
//! queries of the served index (a copy each, on the request path: about
//! 0.1 µs at 128-d) and counts, per window of as many searches, how many were
//! widened. When a window has [`LEARN_WIDENED_SHARE`] (nine tenths) or more widened, and
//! nothing was learnt for [`DEFAULT_LEARN_EVERY`] (`--learn-every`), a
//! background thread (niced, one core) measures the table again on those queries
//! (`vectorwise_index::calibrate::calibrate`, exact truth included), opens the
//! same file again with it and serves that; the profiles then choose the
//! settings that keep their promise on *this* workload, and the widening
//! judges queries against it. While the table served was learnt so, it is
//! learnt again at that interval from the last queries whatever they are:
//! a workload that moves back to queries like the data (which nothing
//! widens) gets a table of its own again. The table is kept beside the index
//! (`<index>.calibration.json`, written atomically, with the file's identity
//! and a checksum) and used again when the same file is served next; another
//! file, or a damaged table, is refused with a logged reason.
//!
//! Off by default (`--learn-calibration true` turns it on): the table then
//! follows what clients send, and a client can steer it. A review poisoned
//! it with 300 searches (rows of the data, a fifth of them pushed outward):
//! the learnt table judged random queries easy and gave them recall@10 0.15
//! under a 0.95 promise, kept across restarts. Turn it on for a workload
//! from trusted clients that has moved as a whole (a new embedding model,
//! questions against passages).

use crate::state::AppState;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vectorwise_index::Index;
use vectorwise_index::calibrate::{CalibrateOptions, Calibration, QuerySource};

/// Recent queries kept, and searches in a window.
pub const LEARN_QUERIES: usize = 300;
/// Share of a window's searches that must have been widened to learn: the
/// workload as a whole has moved away from the data. A table learnt on a
/// mix promises its mean over the mix and judges queries against the mix,
/// so the minority unlike the rest lost its widening (a review: 25 % random
/// queries among queries like the data, learnt at a 20 % threshold, got
/// recall@10 0.85 under a 0.95 promise).
pub const LEARN_WIDENED_SHARE: f64 = 0.9;
/// Largest kept table read (a real one is tens of KiB).
const SIDECAR_MAX_BYTES: u64 = 16 << 20;
/// Least time between two learnings of one server, by default; while a
/// learnt table is served, the time between two learnings.
pub const DEFAULT_LEARN_EVERY: Duration = Duration::from_secs(600);

/// The learnt table's file format.
const SIDECAR_VERSION: u32 = 1;

/// What `/stats` shows of the live calibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LearnStats {
    /// Whether the server learns (`--learn-calibration`).
    pub enabled: bool,
    /// Tables learnt since start.
    pub learnt: u64,
    /// A table is being measured now.
    pub learning: bool,
    /// Searches of the served index in the current window, and how many of
    /// them were widened.
    pub window_searches: u64,
    pub window_widened: u64,
    /// Why the last learning failed, if it did.
    #[schema(required = true)]
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Window {
    /// The served index's generation the queries are of.
    generation: u64,
    queries: VecDeque<Vec<f32>>,
    searches: u64,
    widened: u64,
}

/// The recent queries and the learning's state (one per server).
#[derive(Debug)]
pub(crate) struct Learner {
    enabled: bool,
    every: Duration,
    window: Mutex<Window>,
    learning: AtomicBool,
    learnt: AtomicU64,
    last: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
}

impl Learner {
    pub(crate) fn new(enabled: bool, every: Duration) -> Learner {
        Learner {
            enabled,
            every,
            window: Mutex::new(Window::default()),
            learning: AtomicBool::new(false),
            learnt: AtomicU64::new(0),
            last: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn stats(&self) -> LearnStats {
        let w = self.window.lock();
        LearnStats {
            enabled: self.enabled,
            learnt: self.learnt.load(Ordering::Acquire),
            learning: self.learning.load(Ordering::Relaxed),
            window_searches: w.searches,
            window_widened: w.widened,
            last_error: self.last_error.lock().clone(),
        }
    }

    /// Records a search of the served index (`generation`) for `query` and
    /// whether it was widened; at a window's end, starts a learning when the
    /// window says the queries are unlike the table's. Never blocks: a
    /// contended window skips the query.
    pub(crate) fn offer(&self, state: &AppState, index: &Arc<Index>, generation: u64, query: &[f32], widened: bool) {
        if !self.enabled || index.calibration().is_none() {
            return;
        }
        let Some(mut w) = self.window.try_lock() else { return };
        if w.generation != generation {
            *w = Window { generation, ..Window::default() };
        }
        if w.queries.len() == LEARN_QUERIES {
            w.queries.pop_front();
        }
        w.queries.push_back(query.to_vec());
        w.searches += 1;
        w.widened += u64::from(widened);
        if w.searches < LEARN_QUERIES as u64 {
            return;
        }
        let unlike = w.widened as f64 >= LEARN_WIDENED_SHARE * w.searches as f64;
        // A table learnt from traffic follows it, both ways.
        let learnt = index.calibration().is_some_and(|c| c.source == QuerySource::Live);
        (w.searches, w.widened) = (0, 0);
        let due = self.last.lock().is_none_or(|t| t.elapsed() >= self.every);
        if !(unlike || learnt) || !due || self.learning.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.last.lock() = Some(Instant::now());
        let queries: Vec<f32> = w.queries.iter().flatten().copied().collect();
        drop(w);
        let (state, index) = (state.clone(), Arc::clone(index));
        let started = std::thread::Builder::new().name("learn-calibration".into()).spawn(move || {
            let learner = state.learner();
            match learn(&state, &index, generation, queries) {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, "learning the recall table from live queries failed");
                    *learner.last_error.lock() = Some(e);
                }
            }
            learner.learning.store(false, Ordering::Release);
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "the live calibration thread did not start");
            self.learning.store(false, Ordering::Release);
        }
    }
}

/// Measures `index`'s table on `queries` (rows of its dimension) and serves
/// it, if `generation` is still served (counted in `learnt` once served:
/// `/stats` reads the count before the index, so a count it shows is of
/// tables it serves).
fn learn(state: &AppState, index: &Arc<Index>, generation: u64, queries: Vec<f32>) -> Result<(), String> {
    let started = Instant::now();
    let nq = queries.len() / index.dim().max(1);
    // One niced thread: the searches keep the cores.
    let pool = crate::jobs::niced_pool("learn-calibration-pool", 1, 10).map_err(|e| format!("no thread for the measurement: {e}"))?;
    let opts = CalibrateOptions { queries: Some(queries), sample: LEARN_QUERIES, ..CalibrateOptions::default() };
    let mut calibration = pool.install(|| vectorwise_index::calibrate::calibrate(index, &opts)).map_err(|e| e.to_string())?;
    calibration.source = QuerySource::Live;
    let mut fresh = Index::open(index.path()).map_err(|e| format!("reopening the index: {e}"))?;
    if fresh.file_identity() != index.file_identity() {
        return Ok(());
    }
    fresh.set_calibration(calibration.clone()).map_err(|e| e.to_string())?;
    if !state.replace_index_if(generation, Arc::new(fresh)) {
        return Ok(());
    }
    state.learner().learnt.fetch_add(1, Ordering::Release);
    tracing::info!(
        queries = nq,
        seconds = started.elapsed().as_secs_f64(),
        path = %index.path().display(),
        "learnt the recall table from live queries unlike the indexed data; serving it"
    );
    if let Err(e) = save(index.path(), index.file_identity(), &calibration) {
        tracing::warn!(error = %e, "the learnt recall table is served but not saved: it is lost at the next start");
        *state.learner().last_error.lock() = Some(format!("served but not saved (lost at the next start): {e}"));
        return Ok(());
    }
    *state.learner().last_error.lock() = None;
    Ok(())
}

/// Where the table learnt for the index at `index` is kept.
pub fn sidecar_path(index: &Path) -> PathBuf {
    let mut name = index.as_os_str().to_owned();
    name.push(".calibration.json");
    PathBuf::from(name)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    version: u32,
    /// The index file's identity (hex), which the table was measured on.
    index_identity: String,
    /// xxh3-64 (hex) of `calibration`.
    checksum: String,
    /// The table, as JSON text.
    calibration: String,
}

fn save(index: &Path, identity: u128, calibration: &Calibration) -> Result<(), String> {
    let text = serde_json::to_string(calibration).map_err(|e| e.to_string())?;
    let sidecar = Sidecar {
        version: SIDECAR_VERSION,
        index_identity: format!("{identity:032x}"),
        checksum: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())),
        calibration: text,
    };
    let bytes = serde_json::to_vec_pretty(&sidecar).map_err(|e| e.to_string())?;
    vectorwise_index::write_atomic(&sidecar_path(index), |w| w.write_all(&bytes)).map_err(|e| e.to_string())
}

/// The table kept for `index` at [`sidecar_path`], when there is one that
/// was learnt on this very file; `Err` says why a kept one is refused.
pub fn load(index: &Index) -> Result<Option<Calibration>, String> {
    let path = sidecar_path(index.path());
    let bad = |why: String| format!("{}: {why}", path.display());
    // Looked at before it is opened: a FIFO would block the start, a
    // device or a huge file fill the memory.
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
        Ok(m) if !m.is_file() => return Err(bad("not a regular file".into())),
        Ok(m) if m.len() > SIDECAR_MAX_BYTES => {
            return Err(bad(format!("{} bytes: larger than a learnt table can be ({SIDECAR_MAX_BYTES})", m.len())));
        }
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, SIDECAR_MAX_BYTES + 1), &mut bytes))
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > SIDECAR_MAX_BYTES {
        return Err(bad("grew past the largest a learnt table can be".into()));
    }
    let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a learnt recall table: {e}")))?;
    if sidecar.version != SIDECAR_VERSION {
        return Err(bad(format!("version {} (this build reads {SIDECAR_VERSION})", sidecar.version)));
    }
    if sidecar.index_identity != format!("{:032x}", index.file_identity()) {
        return Err(bad("learnt on another index file (rebuilt since?); the file's own table is used".into()));
    }
    if sidecar.checksum != format!("{:016x}", xxhash_rust::xxh3::xxh3_64(sidecar.calibration.as_bytes())) {
        return Err(bad("checksum mismatch: the file is damaged".into()));
    }
    let calibration: Calibration = serde_json::from_str(&sidecar.calibration).map_err(|e| bad(format!("table not valid: {e}")))?;
    Ok(Some(calibration))
}

/// `index` with the table learnt for it, when one was kept (see [`load`]);
/// a refused one is logged and the file's own table kept.
pub fn with_learnt(mut index: Index) -> Index {
    let calibration = match load(&index) {
        Ok(Some(c)) => c,
        Ok(None) => return index,
        Err(reason) => {
            tracing::warn!(%reason, "the learnt recall table is refused");
            return index;
        }
    };
    let queries = calibration.queries;
    match index.set_calibration(calibration) {
        Ok(()) => tracing::info!(path = %index.path().display(), queries, "serving the recall table learnt from live queries"),
        Err(e) => tracing::warn!(reason = %e, "the learnt recall table is refused"),
    }
    index
}
