//! The optimiser: two background threads per collection, one that seals
//! frozen memory segments and one that merges sealed segments of one size
//! tier and rewrites segments with many deletions. They build outside every
//! lock; only the swap of the segment list takes the write lock (see
//! `swap`), so searches and writes never wait for a build.

use crate::collection::{Collection, Loc2, SegmentSet, index_name, payloads_name, segments_dir};
use crate::error::Result;
use crate::files;
use crate::segment::{MemSegment, SealedSegment};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::plan::{AUTO_LISTS_MIN_POINTS, BuildMethod, BuildRequest, plan_build};
use vectorwise_index::{Cancel, Matrix, Points};

/// Sealed segments merged at once, and the size ratio of a tier.
const MERGE_FACTOR: usize = 4;
/// A sealed segment is rewritten once this share of it is deleted.
const REWRITE_DELETED: f64 = 0.2;

/// The optimiser's two lanes. Seals are short and keep the exactly-searched
/// memory small, so they never wait behind a merge (measured: with one lane,
/// a 466k-point merge let the frozen backlog reach 466k points during a 1M
/// ingest, and searches took 6 ms instead of 0.75).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Seal frozen memory segments.
    Seal,
    /// Merge sealed segments; rewrite those with many deletions.
    Merge,
}

pub(crate) fn start(c: &Arc<Collection>) {
    let mut handles = Vec::new();
    for lane in [Lane::Seal, Lane::Merge] {
        let weak = Arc::downgrade(c);
        let name = format!("optimiser-{lane:?}-{}", c.name()).to_lowercase();
        match std::thread::Builder::new().name(name).spawn(move || run(weak, lane)) {
            Ok(handle) => {
                handles.push(handle);
                if lane == Lane::Seal {
                    c.seal_lane_started.store(true, std::sync::atomic::Ordering::Release);
                }
            }
            // Writes and searches still work; the memory segments grow until a restart.
            Err(e) => tracing::error!(collection = c.name(), error = %e, ?lane, "cannot start an optimiser thread"),
        }
    }
    *c.worker.lock() = handles;
}

/// Clears `seal_lane_started` when the seal lane's thread ends, by return
/// or panic, and wakes the upserts waiting for it.
struct SealLaneAlive(std::sync::Weak<Collection>);

impl Drop for SealLaneAlive {
    fn drop(&mut self) {
        if let Some(c) = self.0.upgrade() {
            c.seal_lane_started.store(false, std::sync::atomic::Ordering::Release);
            c.signal_sealed();
        }
    }
}

fn run(weak: std::sync::Weak<Collection>, lane: Lane) {
    let _alive = (lane == Lane::Seal).then(|| SealLaneAlive(weak.clone()));
    lower_priority();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(c) = weak.upgrade() else { return };
        if *c.wake.0.lock() {
            return;
        }
        match step(&c, lane) {
            Ok(worked) => {
                // A lane that works again clears the error it had reported.
                if lane == Lane::Seal {
                    c.seal_failed.store(false, std::sync::atomic::Ordering::Release);
                }
                let mut stats = c.optimiser.lock();
                if stats.error_lane == Some(lane as u8) {
                    stats.last_error = None;
                    stats.error_lane = None;
                }
                drop(stats);
                backoff = Duration::from_millis(100);
                if worked {
                    continue;
                }
            }
            Err(crate::Error::Index(vectorwise_index::Error::Cancelled)) => {
                // The collection is closing: its points are still in the
                // log or the input segments, and the build's files are gone.
                tracing::info!(collection = c.name(), ?lane, "build cancelled: the collection is closing");
                return;
            }
            Err(e) => {
                if let crate::Error::MergeNeedsRoom { what, .. } = &e {
                    // Retried at every wake-up (each seal wakes the lanes):
                    // said again only for another merge or rewrite.
                    if !c.optimiser.lock().last_error.as_deref().is_some_and(|last| last.starts_with(what.as_str())) {
                        tracing::warn!(collection = c.name(), error = %e, "merge put off for lack of disk room; retrying later");
                    }
                } else {
                    tracing::error!(collection = c.name(), error = %e, ?lane, "optimiser step failed; retrying later");
                }
                let mut stats = c.optimiser.lock();
                stats.last_error = Some(e.to_string());
                stats.error_lane = Some(lane as u8);
                drop(stats);
                if lane == Lane::Seal {
                    c.seal_failed.store(true, std::sync::atomic::Ordering::Release);
                    c.signal_sealed();
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        let mut stop = c.wake.0.lock();
        if *stop {
            return;
        }
        c.wake.1.wait_for(&mut stop, backoff);
    }
}

/// Marks `lane` busy while alive (for the stats).
struct Busy<'a>(&'a Collection, Lane);

impl<'a> Busy<'a> {
    fn new(c: &'a Collection, lane: Lane) -> Busy<'a> {
        c.optimiser.lock().set_busy(lane, true);
        Busy(c, lane)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.optimiser.lock().set_busy(self.1, false);
    }
}

/// Each lane's builds run on its own one-thread pool, niced, so that
/// writes and searches keep the other core(s) and the upper hand. (A seal
/// lane that is behind builds niced too: one at the process's priority took
/// searches during a 25k points/s paced ingest to 1.44 ms against 0.77 at
/// rest; see bench/results/HISTORY.md.)
fn pool(lane: Lane) -> &'static rayon::ThreadPool {
    static POOLS: [std::sync::OnceLock<rayon::ThreadPool>; 2] = [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    POOLS[lane as usize].get_or_init(|| niced_pool(&format!("optimiser-{lane:?}-build"), 1))
}

/// The merge lane's pool while the collection is quiet ([`quiet`]): every
/// core, still niced. Nothing else of the collection's wants the cores
/// then, and the merges that remain after a bulk load are what keeps
/// searches from their at-rest speed (1M forms at full speed, a sequential
/// search client running: 160k merges 3.6–4.2 s against 4.4–5.3, optimiser
/// idle 41.9 s after the last write against 47.7; bench/results/HISTORY.md).
fn wide_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| niced_pool("optimiser-merge-wide", std::thread::available_parallelism().map_or(1, |n| n.get())))
}

/// No write for [`QUIET_MS`], nothing frozen, no seal running.
fn quiet(c: &Collection) -> bool {
    c.set().frozen.is_empty() && !c.optimiser.lock().state.contains("sealing") && c.ms_since_last_write() >= QUIET_MS
}

/// How long without a write before merges take every core.
const QUIET_MS: u64 = 2_000;

fn niced_pool(name: &str, threads: usize) -> rayon::ThreadPool {
    let name = name.to_lowercase();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        // Below searches and writes in the scheduler's eyes (nice 10):
        // the optimiser's work can wait; a search should not.
        .start_handler(|_| lower_priority())
        .build()
        .expect("build an optimiser thread pool")
}

/// Nice 10 for the calling thread (Linux: per thread); best effort.
fn lower_priority() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// One unit of `lane`'s work; whether there was any.
pub(crate) fn step(c: &Arc<Collection>, lane: Lane) -> Result<bool> {
    // Once: a pile merge (see `pick_merge`) runs on the wide pool only.
    let quiet = lane == Lane::Merge && quiet(c);
    let pool = if quiet { wide_pool() } else { pool(lane) };
    pool.install(|| match lane {
        Lane::Seal => seal_step(c),
        Lane::Merge => merge_step(c, quiet),
    })
}

fn seal_step(c: &Arc<Collection>) -> Result<bool> {
    let _one = c.seal_lock.lock();
    {
        let mut ws = c.write.lock();
        c.freeze_locked(&mut ws, c.config().seal_points);
    }
    let set = c.set();
    let failed = c.seal_failed.load(std::sync::atomic::Ordering::Acquire);
    let joined = seal_group(&set.frozen, failed);
    if joined.is_empty() {
        return Ok(false);
    }
    let _busy = Busy::new(c, Lane::Seal);
    seal(c, &joined)?;
    // Upserts waiting on the backlog look again (after a failure `run`
    // wakes them, once `seal_failed` lets them through).
    c.signal_sealed();
    c.optimiser.lock().seals += 1;
    Ok(true)
}

/// The oldest frozen segments, sealed together: one when the lane keeps
/// up, up to [`MERGE_FACTOR`] of them when a backlog has formed, while
/// their live points stay below [`AUTO_LISTS_MIN_POINTS`] (so the seal is
/// still an exhaustive scan encoded with the reused codebook). One
/// calibration for them all, and with the default `seal_points` a segment
/// of the first merge tier at once: the 10k→40k merge it spares costs more
/// than the seal (measured: 40k points merged in 1.5–2.7 s with a trained
/// codebook, sealed in 4 × 0.2 s). After a failed seal (a full disk), one
/// segment at a time: it needs a quarter of the room.
fn seal_group(frozen: &[Arc<MemSegment>], alone: bool) -> Vec<Arc<MemSegment>> {
    let mut points = 0;
    let mut out = Vec::new();
    for f in frozen.iter().take(if alone { 1 } else { MERGE_FACTOR }) {
        let live = f.live();
        if !out.is_empty() && points + live >= AUTO_LISTS_MIN_POINTS {
            break;
        }
        points += live;
        out.push(Arc::clone(f));
    }
    out
}

fn merge_step(c: &Arc<Collection>, quiet: bool) -> Result<bool> {
    let _one = c.merge_lock.lock();
    let set = c.set();
    // Behind on seals: merges wait (every frozen point is searched exactly;
    // a merge only lowers the number of indexed segments); rewrites, which
    // give deleted points' room back, do not.
    let behind = set.frozen.len() > 1;
    // The first candidate the disk has room for: a rewrite put off must
    // not hold back a small merge that fits.
    let mut refused = None;
    for (inputs, rewrite) in candidates(c, &set, quiet).into_iter().filter(|(_, rewrite)| *rewrite || !behind) {
        if let Err(e) = check_room(c, &inputs, rewrite) {
            refused.get_or_insert(e);
            continue;
        }
        let _busy = Busy::new(c, Lane::Merge);
        merge(c, &inputs)?;
        let mut st = c.optimiser.lock();
        if rewrite {
            st.rewrites += 1;
        } else {
            st.merges += 1;
        }
        return Ok(true);
    }
    refused.map_or(Ok(false), Err)
}

/// Room a merge leaves on the disk for writes: its output must fit beside
/// it. A tenth of the file system, at most 64 MiB. (Seals are never put
/// off: each one lets the log shrink.)
const MERGE_DISK_RESERVE: u64 = 64 << 20;

/// Whether the disk has room for the merge of `inputs`: their files' bytes
/// (the output holds at most their live points) plus the reserve
/// ([`MERGE_DISK_RESERVE`], or a tenth of a smaller file system).
/// A merge that filled the disk would turn writes away with 507 until it
/// failed and its partial file was removed; put off instead, it is tried
/// again with the optimiser's backoff, and reported in `last_error`.
fn check_room(c: &Collection, inputs: &[Arc<SealedSegment>], rewrite: bool) -> Result<()> {
    let dir = segments_dir(&c.dir);
    let Some((free, size)) = disk_space(&dir) else { return Ok(()) };
    // Every file of the inputs but their deleted sets: the index, the
    // payloads and the payload indexes (`.pidx-*`).
    let prefixes: Vec<String> = inputs.iter().map(|s| format!("{:012}.", s.id)).collect();
    let need: u64 = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            prefixes.iter().any(|p| name.starts_with(p.as_str())) && !name.contains(".deleted")
        })
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let reserve = MERGE_DISK_RESERVE.min(size / 10);
    if free >= need.saturating_add(reserve) {
        return Ok(());
    }
    let what = if rewrite { format!("rewrite of segment {}", inputs[0].id) } else { format!("merge of {} segments", inputs.len()) };
    Err(crate::Error::MergeNeedsRoom {
        path: dir,
        what,
        need_mib: need.div_ceil(1 << 20),
        free_mib: free >> 20,
        reserve_mib: reserve >> 20,
    })
}

/// Bytes an unprivileged process may still write on the file system
/// holding `dir`, and its size (`statvfs`); `None` when it cannot be asked.
fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some((st.f_bavail.saturating_mul(st.f_frsize), st.f_blocks.saturating_mul(st.f_frsize)))
}

/// Sealed segments worth merging or rewriting, best first: every segment
/// with many deletions (a rewrite), then a group of the lowest tier that
/// has one: when `quiet`, the pile if there is one, then the usual four (the
/// disk may have room for those only).
fn candidates(c: &Collection, set: &SegmentSet, quiet: bool) -> Vec<(Vec<Arc<SealedSegment>>, bool)> {
    let mut out: Vec<(Vec<Arc<SealedSegment>>, bool)> = set
        .sealed
        .iter()
        .filter(|s| s.deleted() > 0 && s.deleted() as f64 >= REWRITE_DELETED * s.len() as f64)
        .map(|s| (vec![Arc::clone(s)], true))
        .collect();
    let four = pick_merge(c, set, false);
    if quiet && let Some(pile) = pick_merge(c, set, true).filter(|p| Some(p.len()) != four.as_ref().map(Vec::len)) {
        out.push((pile, false));
    }
    out.extend(four.map(|g| (g, false)));
    out
}

/// Most bytes a pile merge (below) holds in memory at once: its vectors,
/// ids and bookkeeping (64 bytes a point, counted generously) and its
/// payloads; and most segments it merges.
const PILE_BYTES: usize = 1 << 30;
const PILE_SEGMENTS: usize = 32;

/// Sealed segments of the lowest tier holding enough of them to merge:
/// [`MERGE_FACTOR`] of them, the smallest; or, once writes have stopped
/// (`quiet`), the whole tier when a bulk load left a pile of at least twice
/// that (smallest first, as many as [`PILE_BYTES`] of memory and
/// [`PILE_SEGMENTS`] allow). After a 1M ingest the seals leave ~25
/// segments of 40k: merged 4 at a time, then 4 of those, every point is
/// built twice more and searches reach their at-rest speed 41–50 s after the
/// last write; as one pile, once (26 s).
fn pick_merge(c: &Collection, set: &SegmentSet, quiet: bool) -> Option<Vec<Arc<SealedSegment>>> {
    let tier = |n: usize| {
        let mut t = 0;
        let mut size = c.config().seal_points.max(1) * MERGE_FACTOR;
        while n >= size {
            t += 1;
            size = size.saturating_mul(MERGE_FACTOR);
        }
        t
    };
    let mut tiers: HashMap<usize, Vec<Arc<SealedSegment>>> = HashMap::new();
    for s in &set.sealed {
        tiers.entry(tier(s.live())).or_default().push(Arc::clone(s));
    }
    let mut best: Option<(usize, Vec<Arc<SealedSegment>>)> = None;
    for (t, mut group) in tiers {
        if group.len() >= MERGE_FACTOR && best.as_ref().is_none_or(|(bt, _)| t < *bt) {
            group.sort_by_key(|s| s.live());
            let row_bytes = c.dimension() * size_of::<f32>() + 64;
            let mut bytes = 0usize;
            let fits = group
                .iter()
                .take(PILE_SEGMENTS)
                .take_while(|s| {
                    let payloads = (s.payloads.file_bytes() as f64 * s.live() as f64 / s.len().max(1) as f64) as usize;
                    bytes = bytes.saturating_add(s.live().saturating_mul(row_bytes)).saturating_add(payloads);
                    bytes <= PILE_BYTES
                })
                .count();
            group.truncate(if quiet && fits >= 2 * MERGE_FACTOR { fits } else { MERGE_FACTOR });
            best = Some((t, group));
        }
    }
    best.map(|(_, g)| g)
}

/// The live points of frozen segments (the oldest, in order), built into
/// one sealed segment.
fn seal(c: &Arc<Collection>, frozen: &[Arc<MemSegment>]) -> Result<()> {
    let mut ids = Vec::new();
    let mut vectors = Vec::new();
    let mut payloads = Vec::new();
    for f in frozen {
        let d = f.data.read();
        for o in 0..d.ids.len() {
            if !d.deleted[o] {
                ids.push(d.ids[o]);
                vectors.extend_from_slice(&d.vectors[o * f.dim..(o + 1) * f.dim]);
                payloads.push(d.payloads[o].clone());
            }
        }
    }
    let trained = codebook(c);
    let built = build(c, ids, vectors, payloads, trained.as_deref())?;
    let gone: Vec<u64> = frozen.iter().map(|f| f.id).collect();
    swap(c, built, |_, at| gone.contains(&at.segment), |set| SegmentSet {
        sealed: set.sealed.clone(),
        frozen: set.frozen.iter().filter(|m| !gone.contains(&m.id)).cloned().collect(),
        mutable: Arc::clone(&set.mutable),
    })
}

/// Points a sealed segment must hold for its codebook to be reused.
const CODEBOOK_SOURCE_POINTS: usize = 4096;

/// The codebook seals and small merges encode with: the newest sealed
/// segment's among those holding at least [`CODEBOOK_SOURCE_POINTS`] points
/// (or `seal_points`, when smaller). A codebook is trained on the points of
/// the build that makes it, so every codebook reused was trained on that
/// many points at least (a first seal of a few flushed points is not
/// copied into every later segment); none: the build trains its own.
fn codebook(c: &Collection) -> Option<Vec<f32>> {
    let least = CODEBOOK_SOURCE_POINTS.min(c.config().seal_points.max(1));
    c.set().sealed.iter().rev().filter(|s| s.len() >= least).find_map(|s| s.index.scan_centroids().map(<[f32]>::to_vec))
}

/// The live points of `inputs`, built into one sealed segment.
fn merge(c: &Arc<Collection>, inputs: &[Arc<SealedSegment>]) -> Result<()> {
    let mut ids = Vec::new();
    let mut vectors = Vec::new();
    let mut payloads = Vec::new();
    for s in inputs {
        for (o, &id) in s.index.ids().iter().enumerate() {
            if !s.deleted.get(o as u32) {
                ids.push(id);
                vectors.extend_from_slice(s.index.vector_at(o as u32));
                payloads.push(s.payloads.get(o).map(Arc::from));
            }
        }
    }
    let gone: Vec<u64> = inputs.iter().map(|s| s.id).collect();
    // A merge that stays an exhaustive scan encodes with the newest codebook,
    // as seals do (training it was 0.88 s of a 40k-point merge's 1.6 s);
    // a partitioned one trains afresh, so the codebook follows the data.
    let trained = if ids.len() < AUTO_LISTS_MIN_POINTS { codebook(c) } else { None };
    let built = build(c, ids, vectors, payloads, trained.as_deref())?;
    swap(c, built, |_, at| gone.contains(&at.segment), |set| SegmentSet {
        sealed: set.sealed.iter().filter(|s| !gone.contains(&s.id)).cloned().collect(),
        frozen: set.frozen.clone(),
        mutable: Arc::clone(&set.mutable),
    })
}

/// Builds, calibrates and opens a sealed segment of these points (none:
/// nothing to build).
fn build(
    c: &Arc<Collection>,
    ids: Vec<u64>,
    vectors: Vec<f32>,
    payloads: Vec<Option<Arc<str>>>,
    trained: Option<&[f32]>,
) -> Result<Option<SealedSegment>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let id = {
        let mut ws = c.write.lock();
        ws.next_segment += 1;
        ws.next_segment - 1
    };
    c.building.lock().insert(id);
    let result = build_files(c, id, ids, vectors, payloads, trained);
    if result.is_err() {
        // Nothing names a failed build's files: remove them (a full disk
        // must not fill up again with retries).
        let dir = segments_dir(&c.dir);
        let _ = std::fs::remove_file(dir.join(index_name(id)));
        let _ = std::fs::remove_file(dir.join(payloads_name(id)));
        c.building.lock().remove(&id);
    }
    result.map(Some)
}

/// [`build`]'s work for segment `id`.
fn build_files(
    c: &Arc<Collection>,
    id: u64,
    ids: Vec<u64>,
    vectors: Vec<f32>,
    payloads: Vec<Option<Arc<str>>>,
    trained: Option<&[f32]>,
) -> Result<SealedSegment> {
    let start = std::time::Instant::now();
    let matrix = Matrix::new(c.dimension(), vectors)?;
    let known = *c.structured.lock();
    let (index_path, payload_path, verdict) =
        write_segment(&segments_dir(&c.dir), id, c.metric(), &matrix, &ids, &payloads, trained, known, &Cancel::new(Arc::clone(&c.cancel)))?;
    if verdict.is_some() {
        *c.structured.lock() = verdict;
    }
    let fields = c.write.lock().fields.clone();
    let seg = SealedSegment::open(id, &index_path, Some(&payload_path), None, &fields)?;
    tracing::info!(collection = c.name(), segment = id, points = ids.len(), method = seg.index.info().index_type, seconds = start.elapsed().as_secs_f64(), "sealed segment built");
    Ok(seg)
}

/// Builds, calibrates and writes segment `id`'s index and payload files in
/// `dir`; returns their paths and, when `auto` tested a sample graph, its
/// verdict on the data's structure (`known`: an earlier verdict).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_segment(
    dir: &std::path::Path,
    id: u64,
    metric: vectorwise_index::Metric,
    matrix: &Matrix,
    ids: &[u64],
    payloads: &[Option<Arc<str>>],
    trained: Option<&[f32]>,
    known: Option<bool>,
    cancel: &Cancel,
) -> Result<(std::path::PathBuf, std::path::PathBuf, Option<bool>)> {
    let index_path = dir.join(index_name(id));
    let payload_path = dir.join(payloads_name(id));
    // Below the size where `auto` partitions, a segment gets the exhaustive
    // quantised scan rather than `auto`'s graph + codes: 20k x 128 clustered
    // builds and calibrates in 0.46 s against 2.48 s, and answers in
    // 0.030 ms p50 (recall@10 1.0, rerank 32) against 0.079 ms (ef 64);
    // the graph would be thrown away at the next merge anyway.
    // From that size, `auto` tests a sample graph once per collection (2 s
    // of a merge's 4–9 s at 80k x 128): later merges reuse its verdict.
    let n = ids.len();
    let request = match (n < AUTO_LISTS_MIN_POINTS, known) {
        (true, _) => BuildRequest { metric, method: BuildMethod::Scan, ..Default::default() },
        (false, Some(structured)) => BuildRequest {
            metric,
            method: BuildMethod::Scan,
            scan_lists: Some(if structured { vectorwise_index::scan::lists::auto_lists(n) } else { 0 }),
            ..Default::default()
        },
        (false, None) => BuildRequest { metric, method: BuildMethod::Auto, ..Default::default() },
    };
    cancel.check()?;
    // Not cancellable inside: `auto`'s sample graph, once per collection (2 s).
    let plan = plan_build(matrix, &request)?;
    let verdict = plan.choice.map(|choice| choice.method == vectorwise_index::Method::Hnsw);
    let points = Points { vectors: matrix, ids: Some(ids), keys: true };
    vectorwise_index::build_calibrated_with(points, &index_path, &plan.options, trained, &CalibrateOptions::default(), cancel, &|_| {})?;
    let index = vectorwise_index::Index::open(&index_path)?;
    let position: HashMap<u64, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let ordered: Vec<Option<&str>> = index.ids().iter().map(|id| payloads[position[id]].as_deref()).collect();
    drop(index);
    files::write_payloads(&payload_path, ordered.iter().copied())?;
    Ok((index_path, payload_path, verdict))
}

/// Puts `built` in place of the inputs: under the write lock, each of its
/// points still live at an input location (`from`) moves to it; the rest
/// (deleted or replaced while it was built) are marked deleted in it. Then
/// a checkpoint makes the new list durable.
fn swap(
    c: &Arc<Collection>,
    built: Option<SealedSegment>,
    from: impl Fn(&SegmentSet, Loc2) -> bool,
    without_inputs: impl Fn(&SegmentSet) -> SegmentSet,
) -> Result<()> {
    let built_id = built.as_ref().map(|s| s.id);
    {
        let mut ws = c.write.lock();
        let set = c.set();
        let mut next = without_inputs(&set);
        if let Some(seg) = built {
            // An index declared while it was built.
            seg.ensure_fields(&ws.fields, false);
            for (o, &id) in seg.index.ids().iter().enumerate() {
                let live = ws.ids.get(&id).copied().filter(|&at| from(&set, at) && !set.is_deleted(at));
                if live.is_some() {
                    ws.ids.insert(id, Loc2 { segment: seg.id, offset: o as u32 });
                } else {
                    seg.deleted.set(o as u32);
                }
            }
            next.sealed.push(Arc::new(seg));
        }
        *c.segments.write() = Arc::new(next);
    }
    let result = c.checkpoint();
    if let Some(id) = built_id {
        c.building.lock().remove(&id);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CollectionConfig, NewPoint, Store, SyncMode};
    use rand::prelude::*;
    use vectorwise_index::Metric;

    fn points(n: usize, first_id: u64, rng: &mut StdRng) -> Vec<NewPoint> {
        (0..n).map(|i| NewPoint { id: (first_id + i as u64).into(), vector: (0..8).map(|_| rng.random_range(-1.0..1.0f32)).collect(), payload: None }).collect()
    }

    /// A store in `dir` and its collection `c` of 8-d points sealed every
    /// `seal_points`, its optimiser paused: the test drives the steps.
    fn paused(dir: &std::path::Path, seal_points: usize) -> (Store, Arc<Collection>) {
        let store = Store::open(dir, SyncMode::Always).unwrap();
        let (c, _) = store.create("c", CollectionConfig { seal_points, ..CollectionConfig::new(8, Metric::L2) }).unwrap();
        c.pause_optimiser();
        (store, c)
    }

    /// A first seal of a few flushed points trains a codebook on them: it
    /// is not the one later seals encode with.
    #[test]
    fn a_codebook_trained_on_a_few_points_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, c) = paused(dir.path(), 60);
        let mut rng = StdRng::seed_from_u64(5);
        c.upsert(points(3, 0, &mut rng)).unwrap();
        c.flush().unwrap();
        let tiny: Vec<f32> = c.set().sealed[0].index.scan_centroids().expect("a scan").to_vec();
        assert_eq!(codebook(&c), None, "only a 3-point segment: nothing to reuse");
        c.upsert(points(60, 100, &mut rng)).unwrap();
        c.optimise().unwrap();
        let set = c.set();
        let sixty = set.sealed.iter().find(|s| s.len() == 60).expect("the 60 points sealed");
        assert_ne!(sixty.index.scan_centroids().unwrap(), &tiny[..], "the seal trained its own codebook");
        assert_eq!(codebook(&c).as_deref(), sixty.index.scan_centroids());
    }

    /// Merges take the lowest tier's four smallest segments while writes go
    /// on, and the whole pile a bulk load left once they have stopped.
    #[test]
    fn a_pile_of_one_tier_is_merged_at_once_when_writes_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, c) = paused(dir.path(), 10);
        let mut rng = StdRng::seed_from_u64(3);
        let mut sealed = |from: usize, n: usize| {
            for b in from..from + n {
                c.upsert(points(10, 1000 * b as u64, &mut rng)).unwrap();
                assert!(seal_step(&c).unwrap());
            }
        };
        sealed(0, 7);
        let set = c.set();
        assert_eq!(set.sealed.len(), 7);
        assert_eq!(pick_merge(&c, &set, false).map(|g| g.len()), Some(4));
        assert_eq!(pick_merge(&c, &set, true).map(|g| g.len()), Some(4), "7 < 8: no pile");
        sealed(7, 3);
        let set = c.set();
        assert_eq!(pick_merge(&c, &set, false).map(|g| g.len()), Some(4), "writes going on: four");
        let pile = pick_merge(&c, &set, true).expect("a pile");
        assert_eq!(pile.len(), 10, "quiet: the whole tier");
        // When quiet, the four come after the pile, for a disk with room
        // for them only (the first candidate with room is merged).
        let sizes = |quiet: bool| candidates(&c, &c.set(), quiet).iter().map(|(g, _)| g.len()).collect::<Vec<_>>();
        assert_eq!((sizes(true), sizes(false)), (vec![10, 4], vec![4]));
        // At most PILE_SEGMENTS at once.
        sealed(10, PILE_SEGMENTS);
        assert_eq!(pick_merge(&c, &c.set(), true).map(|g| g.len()), Some(PILE_SEGMENTS));
        let set = c.set();
        let pile: Vec<_> = set.sealed.iter().take(10).cloned().collect();
        merge(&c, &pile).unwrap();
        let rest: Vec<_> = c.set().sealed.iter().filter(|s| s.live() == 10).cloned().collect();
        merge(&c, &rest).unwrap();
        let mut sizes: Vec<usize> = c.set().sealed.iter().map(|s| s.live()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![100, 320]);
        assert_eq!(c.len(), 420);
    }

    /// A collection that closes (dropped, replaced, shut down) cancels the
    /// build in progress: a merge or a seal stopped so changes nothing and
    /// leaves no file; the points stay in the inputs and the log.
    #[test]
    fn builds_stop_when_the_collection_closes() {
        let dir = tempfile::tempdir().unwrap();
        let files = || {
            let mut names: Vec<String> =
                std::fs::read_dir(segments_dir(&dir.path().join("c"))).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        };
        {
            let (_store, c) = paused(dir.path(), 10);
            let mut rng = StdRng::seed_from_u64(4);
            for b in 0..4 {
                c.upsert(points(10, 100 * b, &mut rng)).unwrap();
                assert!(seal_step(&c).unwrap());
            }
            c.upsert(points(10, 1000, &mut rng)).unwrap();
            let before = files();
            c.cancel_builds();
            let cancelled = |r: Result<_>| matches!(r, Err(crate::Error::Index(vectorwise_index::Error::Cancelled)));
            let four = c.set().sealed.clone();
            assert!(cancelled(merge(&c, &four)), "the merge was cancelled");
            assert!(cancelled(seal_step(&c).map(|_| ())), "the seal was cancelled");
            let set = c.set();
            assert_eq!((set.sealed.len(), set.frozen.len(), c.len()), (4, 1, 50));
            assert_eq!(files(), before, "no file of a cancelled build is left");
            c.close();
        }
        let store = Store::open(dir.path(), SyncMode::Always).unwrap();
        let c = store.get("c").unwrap();
        assert_eq!(c.len(), 50, "every point is still there");
        c.optimise().unwrap();
        assert_eq!(c.len(), 50);
    }

    /// A store whose write backlog is 25 points, and its collection of 8-d
    /// points sealed every 10.
    fn backlog_of_25(dir: &std::path::Path) -> (Store, Arc<Collection>) {
        let store = Store::open(dir, SyncMode::Always).unwrap();
        store.set_write_backlog(25);
        let (c, _) = store.create("c", CollectionConfig { seal_points: 10, ..CollectionConfig::new(8, Metric::L2) }).unwrap();
        (store, c)
    }

    /// The server waits for the backlog on its async side
    /// (`write_backlogged`), then writes with what is left of the wait.
    #[test]
    fn a_caller_may_wait_for_the_backlog_without_holding_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, c) = backlog_of_25(dir.path());
        let mut rng = StdRng::seed_from_u64(11);
        let held = c.seal_lock.lock();
        for b in 0..3 {
            c.upsert(points(10, b * 10, &mut rng)).unwrap();
        }
        assert!(c.write_backlogged(), "30 frozen points > 25");
        // Its deadline passed, its wait counted by the caller: refused at once, nothing written.
        let started = std::time::Instant::now();
        match c.upsert_until(points(10, 500, &mut rng), std::time::Instant::now(), true) {
            Err(crate::Error::Backlogged { frozen: 30, limit: 25 }) => {}
            other => panic!("expected Backlogged, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "it waited {:?}", started.elapsed());
        assert_eq!(c.len(), 30);
        assert_eq!((c.stats().optimiser.writes_waited, c.stats().optimiser.writes_refused), (0, 1));
        c.note_write_waited();
        assert_eq!(c.stats().optimiser.writes_waited, 1);
        drop(held);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.write_backlogged() {
            assert!(std::time::Instant::now() < deadline, "never sealed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(c.upsert_until(points(10, 600, &mut rng), std::time::Instant::now(), true).unwrap(), 10);
        assert_eq!(c.stats().optimiser.writes_waited, 1, "a write let through is not counted again");
    }

    /// Upserts wait while the frozen backlog is over the limit and the seal
    /// lane is at work, go on once a seal brings it down, and are refused
    /// (nothing written) when the wait runs out.
    #[test]
    fn upserts_wait_for_the_seal_lane_past_the_backlog_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, c) = backlog_of_25(dir.path());
        let mut rng = StdRng::seed_from_u64(9);
        // The seal lane is held: every full mutable segment stays frozen.
        let held = c.seal_lock.lock();
        for b in 0..3 {
            c.upsert(points(10, b * 10, &mut rng)).unwrap();
        }
        assert_eq!(c.set().frozen.iter().map(|f| f.len()).sum::<usize>(), 30, "three frozen segments");
        let waiting = {
            let c = Arc::clone(&c);
            let batch = points(10, 100, &mut rng);
            std::thread::spawn(move || c.upsert(batch))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiting.is_finished(), "30 frozen points > 25: the upsert waits");
        assert_eq!(c.len(), 30);
        drop(held);
        assert_eq!(waiting.join().unwrap().unwrap(), 10, "a seal let it through");
        assert_eq!(c.len(), 40);
        assert_eq!((c.stats().optimiser.writes_waited, c.stats().optimiser.writes_refused), (1, 0));

        // A wait that runs out writes nothing.
        c.backlog_wait_ms.store(200, std::sync::atomic::Ordering::Relaxed);
        let held = c.seal_lock.lock();
        let mut next = 200;
        while c.set().frozen.iter().map(|f| f.len()).sum::<usize>() <= 25 {
            c.upsert(points(10, next, &mut rng)).unwrap();
            next += 10;
        }
        let before = c.len();
        match c.upsert(points(10, 1000, &mut rng)) {
            Err(crate::Error::Backlogged { limit: 25, .. }) => {}
            other => panic!("expected Backlogged, got {other:?}"),
        }
        assert_eq!(c.len(), before, "nothing written");
        assert_eq!((c.stats().optimiser.writes_waited, c.stats().optimiser.writes_refused), (2, 1));
        // Deletes never wait.
        assert_eq!(c.delete([200u64]).unwrap(), 1);
        // Nor do upserts once the limit is off.
        store.set_write_backlog(0);
        c.upsert(points(10, 1000, &mut rng)).unwrap();
        drop(held);
    }
}
