//! The VectorWise engine: distance kernels, exact and HNSW search, and the
//! index file format. Knows nothing of HTTP.
//!
//! Vocabulary: a *point* is one stored vector; its *offset*
//! ([`PointOffset`], u32) is its position in the index; its *id* (u64) is
//! what users see: theirs (`build --ids`) or the row in the input file. The
//! *metric* ([`Metric`]) maps the user's vectors into the space every method
//! searches by squared L2 (see [`metric`]).

pub mod allow;
pub mod bounded;
pub mod calibrate;
pub mod cancel;
pub mod choose;
pub mod dataset;
pub mod distance;
pub mod error;
pub mod exact;
pub mod format;
mod fsutil;
mod header;
pub mod hnsw;
mod index;
pub mod metric;
mod method;
pub mod params;
pub mod plan;
pub mod scan;
pub mod topk;
pub mod vectors;
pub mod visited;

pub use allow::{AllowSet, FilteredPath};
pub use calibrate::{Calibration, Profile};
pub use cancel::Cancel;
pub use error::{Error, Result};
pub use fsutil::{remove_stale_temporaries, write_atomic};
pub use index::{FILTERED_LIST_FACTOR, Index, IndexInfo, PointOffset, exact_keep, scan_keep};
pub use metric::Metric;
pub use params::{Method, SearchParams};
pub use plan::BuildPlan;
pub use vectors::Matrix;

/// Searches judged unlike the calibration's queries (`Calibration::is_hard`)
/// and searched more widely, in this process (every index).
static WIDENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many searches this process widened because the query was unlike the
/// calibration's queries (a sign the queries have drifted from the data).
pub fn widened_searches() -> u64 {
    WIDENED.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    /// Widened searches counted on this thread (see [`widened_in`]).
    static WIDENED_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

pub(crate) fn count_widened() {
    WIDENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    WIDENED_HERE.with(|c| c.set(c.get().saturating_add(1)));
}

/// Runs `f` (one or more searches on this thread) and says whether any of
/// them was widened. A search decides to widen on the thread that called it
/// (its split parts run on the pool but do not decide). Exact on the pool
/// too: a search this thread picks up from the pool while it waits inside
/// `f` (work stealing) counts for itself, not for `f`, and the count from
/// before `f` is left as it was.
pub fn widened_in<T>(f: impl FnOnce() -> T) -> (T, bool) {
    let before = WIDENED_HERE.with(|c| c.replace(0));
    let out = f();
    let widened = WIDENED_HERE.with(|c| c.replace(before)) > 0;
    (out, widened)
}

thread_local! {
    /// What an exact scan on this thread calls between its steps (see [`paced`]).
    static PACE: std::cell::RefCell<Option<Pause>> = const { std::cell::RefCell::new(None) };
}

/// A pause an exact scan takes between steps of about [`PACE_STEP_BYTES`].
pub type Pause = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Bytes of rows an exact scan under [`paced`] reads between two calls of
/// its pause.
pub const PACE_STEP_BYTES: usize = 2 << 20;

/// Runs `f` with the exact scans it makes on this thread
/// ([`exact::search`], [`exact::search_kept`], [`exact::search_among`]: a
/// whole matrix, a segment's live rows, a filter's allowed rows) calling
/// `pause` after each [`PACE_STEP_BYTES`] of rows read within one scan:
/// background work that must not share the memory bus with searches (the
/// recall monitor's exact re-runs) waits there while they run. Scans of
/// under one step (small segments) and other reads (a memory segment, a
/// re-rank) are not paced. The answer is the one without it. The previous
/// pause of the thread is back when `f` returns or unwinds.
pub fn paced<T>(pause: Pause, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Pause>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            PACE.with(|p| *p.borrow_mut() = before);
        }
    }
    let _restore = Restore(PACE.with(|p| p.replace(Some(pause))));
    f()
}

/// The pause [`paced`] set on this thread, if any.
pub(crate) fn pause_here() -> Option<Pause> {
    PACE.with(|p| p.borrow().clone())
}

/// One search hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    /// External id of the point.
    pub id: u64,
    /// The metric's exact distance from the query (see [`Metric`]).
    pub distance: f32,
}

/// What [`build`] puts in an index file.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexOptions {
    /// What distances mean; the vectors are prepared for it.
    pub metric: Metric,
    /// Build an HNSW graph with these options.
    pub graph: Option<hnsw::BuildOptions>,
    /// Build quantised scan codes with these options.
    pub scan: Option<scan::ScanOptions>,
    /// What `auto` searches use; `Auto` picks HNSW when there is a graph.
    pub default_method: Method,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            metric: Metric::L2,
            graph: Some(Default::default()),
            scan: Some(Default::default()),
            default_method: Method::Auto,
        }
    }
}

/// The largest id: ids are unsigned but below 2^63, so that every client
/// holds them as a signed 64-bit integer (numpy `int64`, SQL `BIGINT`, the
/// OpenAPI `int64` format).
pub const MAX_ID: u64 = i64::MAX as u64;

/// What an index is built from: vectors, and optionally their ids (default:
/// the row numbers).
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub vectors: &'a Matrix,
    /// One unique id per row.
    pub ids: Option<&'a [u64]>,
    /// The ids are a store's keys: any `u64` (a collection gives UUIDs keys
    /// from 2^63 on). Else they are a user's, below 2^63 ([`MAX_ID`]).
    pub keys: bool,
}

impl<'a> From<&'a Matrix> for Points<'a> {
    fn from(vectors: &'a Matrix) -> Self {
        Points { vectors, ids: None, keys: false }
    }
}

impl Points<'_> {
    /// Refuses ids that do not match the rows one to one, naming the first
    /// duplicate, and a user's ids from 2^63 on ([`MAX_ID`]).
    fn check_ids(&self) -> Result<()> {
        let Some(ids) = self.ids else { return Ok(()) };
        if ids.len() != self.vectors.len() {
            let reason = format!("{} ids for {} vectors", ids.len(), self.vectors.len());
            return Err(Error::InvalidParameter { name: "ids", reason });
        }
        if let Some(row) = ids.iter().position(|&id| id > MAX_ID).filter(|_| !self.keys) {
            let reason = format!("id {} at row {row} is above {MAX_ID} (2^63 - 1)", ids[row]);
            return Err(Error::InvalidParameter { name: "ids", reason });
        }
        let mut seen = std::collections::HashMap::with_capacity(ids.len());
        for (row, &id) in ids.iter().enumerate() {
            if let Some(first) = seen.insert(id, row) {
                return Err(Error::DuplicateId { id, first, second: row });
            }
        }
        Ok(())
    }
}

/// Builds what `opts` asks for over `points` and writes it to `path`
/// atomically. `progress` counts graph insertions. Returns the build time in
/// seconds (structures only, not the write).
pub fn build<'a>(
    points: impl Into<Points<'a>>,
    path: &std::path::Path,
    opts: &IndexOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<f64> {
    build_then(points.into(), path, opts, None, &Cancel::never(), progress, |_| Ok(()))
}

/// [`build`], then measures the new index's recall table ([`calibrate`]) and
/// stores it before the file replaces `path`: the index is written once.
/// Returns the build time (structures only) and the table; no table for an
/// index of one point searched leave-one-out (there is nothing to find).
pub fn build_calibrated<'a>(
    points: impl Into<Points<'a>>,
    path: &std::path::Path,
    opts: &IndexOptions,
    calibration: &calibrate::CalibrateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(f64, Option<Calibration>)> {
    build_calibrated_with(points, path, opts, None, calibration, &Cancel::never(), progress)
}

/// [`build_calibrated`], with the scan's product-quantiser centroids from an
/// earlier build where they fit (see [`scan::build_with`]), stopping with
/// [`Error::Cancelled`] (nothing written at `path`) once `cancel` is set.
pub fn build_calibrated_with<'a>(
    points: impl Into<Points<'a>>,
    path: &std::path::Path,
    opts: &IndexOptions,
    trained: Option<&[f32]>,
    calibration: &calibrate::CalibrateOptions,
    cancel: &Cancel,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(f64, Option<Calibration>)> {
    let points = points.into();
    if points.vectors.len() < 2 && calibration.queries.is_none() {
        return Ok((build_then(points, path, opts, trained, cancel, progress, |_| Ok(()))?, None));
    }
    let mut table = None;
    let seconds = build_then(points, path, opts, trained, cancel, progress, |tmp| {
        let index = Index::open(tmp)?;
        let c = calibrate::calibrate_with(&index, calibration, cancel)?;
        drop(index);
        format::append_calibration(tmp, &c)?;
        table = Some(c);
        Ok(())
    })?;
    Ok((seconds, table))
}

fn build_then(
    points: Points<'_>,
    path: &std::path::Path,
    opts: &IndexOptions,
    trained: Option<&[f32]>,
    cancel: &Cancel,
    progress: &(dyn Fn(u64) + Sync),
    finish: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<f64> {
    let start = std::time::Instant::now();
    if opts.graph.is_none() && opts.scan.is_none() {
        return Err(Error::InvalidParameter { name: "index", reason: "nothing to build: ask for a graph, scan codes, or both".into() });
    }
    points.check_ids()?;
    // Everything below is built over the metric's space (see `metric`).
    let stored = opts.metric.prepare_rows(points.vectors)?;
    let vectors: &Matrix = &stored;
    let dim = vectors.dim();
    if opts.scan.is_some_and(|o| o.lists > 0) && (vectors.is_empty() || vectors.as_slice().iter().any(|x| !x.is_finite())) {
        return Err(Error::InvalidParameter { name: "vectors", reason: "empty or contain non-finite values".into() });
    }
    // A partitioned scan stores its points in list order: every structure is
    // built over the reordered vectors, and the ids map offsets back to rows.
    let partition = opts.scan.filter(|o| o.lists > 0).map(|o| {
        let (centroids, assign) = scan::lists::train(vectors.as_slice(), dim, o.lists, o.seed, cancel)?;
        let lists = centroids.len() / dim.max(1);
        let (order, starts) = scan::lists::order(&assign, lists);
        Ok::<_, Error>((scan::lists::Lists { centroids, starts }, order))
    }).transpose()?;
    let reordered: Option<Vec<f32>> = partition.as_ref().map(|(_, order)| {
        let mut out = Vec::with_capacity(vectors.as_slice().len());
        for &row in order {
            out.extend_from_slice(&vectors.as_slice()[row as usize * dim..(row as usize + 1) * dim]);
        }
        out
    });
    let id_of = |row: u32| points.ids.map_or(u64::from(row), |ids| ids[row as usize]);
    let ids: Option<Vec<u64>> = match &partition {
        Some((_, order)) => Some(order.iter().map(|&r| id_of(r)).collect()),
        None => points.ids.map(<[u64]>::to_vec),
    };
    let data: &[f32] = reordered.as_deref().unwrap_or(vectors.as_slice());
    let mut scan = opts.scan.map(|o| scan::build_with(data, dim, &o, trained, cancel)).transpose()?;
    if let (Some(codes), Some((lists, _))) = (scan.as_mut(), partition) {
        codes.set_lists(lists);
    }
    let graph = opts.graph.map(|o| hnsw::builder::build(data, dim, &o, progress)).transpose()?;
    let default_method = match opts.default_method {
        Method::Auto | Method::Exact => if graph.is_some() { Method::Hnsw } else { Method::Scan },
        m => m,
    };
    let build_seconds = start.elapsed().as_secs_f64();
    cancel.check()?;
    format::write_then(
        path,
        &format::IndexParts {
            metric: opts.metric,
            dim,
            vectors: data,
            ids: ids.as_deref(),
            user_ids: points.ids.is_some(),
            graph: graph.as_ref(),
            scan: scan.as_ref(),
            default_method,
            build_seconds,
            calibration: None,
        },
        finish,
    )?;
    Ok(build_seconds)
}

/// Builds an HNSW-only index over `vectors` and writes it to `path` atomically.
/// Returns the build time in seconds (graph only, not the write).
pub fn build_index(
    vectors: &Matrix,
    path: &std::path::Path,
    opts: &hnsw::BuildOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<f64> {
    let opts = IndexOptions { graph: Some(*opts), scan: None, default_method: Method::Hnsw, ..Default::default() };
    build(vectors, path, &opts, progress)
}
