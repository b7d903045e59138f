//! [`Collection`]: points with ids and payloads, written through the log,
//! kept in segments, searched as one. See ARCHITECTURE.md, "Collections".

use crate::error::{Error, Loc, Result};
use crate::filter::Filter;
use crate::ids::{PointId, UuidMap, is_uuid_key};
use crate::payload_index::{FieldSpec, ScanBudget, SegmentPoints, select};
use crate::manifest::{CollectionConfig, Manifest, SegmentEntry};
use crate::record::{PointWrite, Record};
use crate::segment::{Hit, MemSegment, SealedSegment, SegmentId};
use crate::wal::{FileWal, Lsn, SyncMode, Wal};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use vectorwise_index::plan::{SearchPlan, SearchRequest};
use vectorwise_index::{AllowSet, FilteredPath, MAX_ID, Metric, PointOffset};

/// Where a live point is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc2 {
    pub segment: SegmentId,
    pub offset: PointOffset,
}

/// Runs of a search whose mutable segment was frozen under it (see
/// `Collection::search_in`); the last one's answer stands.
const SEARCH_ATTEMPTS: usize = 8;

/// The segments a reader searches: it clones the `Arc` and keeps it.
#[derive(Clone, Debug)]
pub(crate) struct SegmentSet {
    pub sealed: Vec<Arc<SealedSegment>>,
    pub frozen: Vec<Arc<MemSegment>>,
    pub mutable: Arc<MemSegment>,
}

impl SegmentSet {
    fn mem(&self, id: SegmentId) -> Option<&Arc<MemSegment>> {
        std::iter::once(&self.mutable).chain(&self.frozen).find(|m| m.id == id)
    }

    fn sealed(&self, id: SegmentId) -> Option<&Arc<SealedSegment>> {
        self.sealed.iter().find(|s| s.id == id)
    }

    pub(crate) fn delete(&self, at: Loc2) {
        if let Some(m) = self.mem(at.segment) {
            m.delete(at.offset);
        } else if let Some(s) = self.sealed(at.segment) {
            s.deleted.set(at.offset);
        }
    }

    pub(crate) fn is_deleted(&self, at: Loc2) -> bool {
        if let Some(m) = self.mem(at.segment) {
            m.data.read().deleted.get(at.offset as usize).copied().unwrap_or(true)
        } else if let Some(s) = self.sealed(at.segment) {
            s.deleted.get(at.offset)
        } else {
            true
        }
    }

    /// The length of the payload of the point at `at` (0: none).
    fn payload_len(&self, at: Loc2) -> usize {
        if let Some(m) = self.mem(at.segment) {
            m.data.read().payloads.get(at.offset as usize).and_then(|p| p.as_ref().map(|s| s.len())).unwrap_or(0)
        } else if let Some(s) = self.sealed(at.segment) {
            s.payloads.get(at.offset as usize).map_or(0, str::len)
        } else {
            0
        }
    }

    /// The payload and vector of the point at `at`.
    fn read(&self, at: Loc2, payload: bool, vector: bool) -> (Option<Arc<str>>, Option<Vec<f32>>) {
        if let Some(m) = self.mem(at.segment) {
            let d = m.data.read();
            let o = at.offset as usize;
            let p = if payload { d.payloads.get(o).cloned().flatten() } else { None };
            let v = vector.then(|| d.vectors[o * m.dim..(o + 1) * m.dim].to_vec());
            (p, v)
        } else if let Some(s) = self.sealed(at.segment) {
            let p = if payload { s.payloads.get(at.offset as usize).map(Arc::from) } else { None };
            let v = vector.then(|| s.index.vector_at(at.offset).to_vec());
            (p, v)
        } else {
            (None, None)
        }
    }
}

/// What the write lock guards.
#[derive(Debug)]
pub(crate) struct WriteState {
    pub ids: HashMap<u64, Loc2>,
    pub next_segment: u64,
    /// The declared payload indexes (every segment keeps them current).
    pub fields: Arc<Vec<FieldSpec>>,
}

/// One point to upsert, as a request gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPoint {
    pub id: PointId,
    pub vector: Vec<f32>,
    /// A JSON object, or none.
    pub payload: Option<serde_json::Value>,
}

/// A point read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPoint {
    pub id: PointId,
    pub vector: Option<Vec<f32>>,
    /// JSON text of the payload object.
    pub payload: Option<Arc<str>>,
}

/// A search over the whole collection.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    pub k: usize,
    pub request: SearchRequest,
    pub with_payload: bool,
    pub with_vector: bool,
    /// Most payload bytes the hits may carry (a bound on the response);
    /// past it the search fails with [`Error::ResponseTooLarge`].
    pub payload_budget: usize,
    /// Only points this filter lets through are answered.
    pub filter: Option<Arc<Filter>>,
}

/// How a filtered search went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterReport {
    /// Live points the filter let through, over all segments.
    pub allowed: usize,
    /// Live points searched.
    pub live: usize,
    /// The path each sealed segment took (see [`FilteredPath`]), distinct,
    /// in segment order; memory segments are searched exactly.
    pub paths: Vec<FilteredPath>,
    /// Keys whose conditions were decided by reading payloads (no payload
    /// index answers them).
    pub unindexed: Vec<String>,
}

/// One answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub id: PointId,
    /// The point's key in the collection ([`crate::ids`]): unique among its
    /// live points, what recall comparisons use.
    pub key: u64,
    pub distance: f32,
    pub payload: Option<Arc<str>>,
    pub vector: Option<Vec<f32>>,
}

/// A search's answer and what ran.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    pub hits: Vec<Found>,
    /// The plan of the largest sealed segment (what the headers report).
    pub plan: Option<SearchPlan>,
    /// The lowest calibrated recall any sealed segment expects (memory
    /// segments are exact); `None` when a searched segment has no table.
    pub expected_recall: Option<f64>,
    pub segments: usize,
    /// Present when the search had a filter.
    pub filter: Option<FilterReport>,
    /// Whether a segment widened its search because the query was unlike
    /// its calibration's (`vectorwise_index::widened_in`).
    pub widened: bool,
}

/// What `GET /collections/{name}` shows of one segment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SegmentStats {
    pub id: u64,
    /// `mutable`, `frozen` (being sealed) or `sealed`.
    pub kind: &'static str,
    pub points: usize,
    pub deleted: usize,
    /// How it is searched: `exact`, `HNSW`, `QuantizedScan`, `IVFQuantizedScan`.
    pub method: String,
    pub bytes: u64,
    pub calibrated: bool,
    /// The recall the balanced profile expects at k = 10 (calibrated segments).
    pub balanced_recall_at_10: Option<f64>,
}

/// What the optimiser has done and is doing.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct OptimiserStats {
    /// `idle`, `sealing`, `merging` or `sealing+merging` (a merge includes
    /// the rewrite of a segment with many deletions).
    pub state: &'static str,
    pub seals: u64,
    pub merges: u64,
    pub rewrites: u64,
    /// Upserts that waited for the seal lane (the write backlog was over
    /// its limit), and those of them refused after the wait (503).
    pub writes_waited: u64,
    pub writes_refused: u64,
    /// The last failed step's error, until that lane next succeeds.
    pub last_error: Option<String>,
    /// The lane (0 seal, 1 merge) whose failure `last_error` is.
    #[serde(skip)]
    pub(crate) error_lane: Option<u8>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CollectionStats {
    pub name: String,
    #[serde(flatten)]
    pub config: CollectionConfig,
    pub points: usize,
    /// Rows of deleted or replaced points the segments still hold (until a
    /// rewrite reclaims them): an upsert that replaces a point adds one.
    pub deleted: usize,
    pub wal_bytes: u64,
    pub write_version: u64,
    pub segments: Vec<SegmentStats>,
    pub payload_indexes: Vec<FieldSpec>,
    pub optimiser: OptimiserStats,
}

/// A collection: open, searchable, writable.
#[derive(Debug)]
pub struct Collection {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: CollectionConfig,
    pub(crate) wal: Arc<dyn Wal>,
    pub(crate) write: Mutex<WriteState>,
    /// UUIDs and their keys ([`crate::ids`]); changed only under `write`.
    pub(crate) uuids: RwLock<UuidMap>,
    /// The [`UuidMap::version`] `uuids.bin` holds.
    pub(crate) uuids_written: AtomicU64,
    pub(crate) segments: RwLock<Arc<SegmentSet>>,
    /// Counts applied writes (see [`Collection::write_version`]).
    pub(crate) version: AtomicU64,
    /// Unique to this opening of the collection in this process (see
    /// [`Collection::incarnation`]).
    pub(crate) incarnation: u64,
    /// Random, kept in `state.json` (see [`crate::state`]).
    pub(crate) uuid: [u8; 16],
    /// The state as of the last applied write (see [`Collection::state_id`]);
    /// replaced under the write lock, before `version` is bumped.
    pub(crate) state: Mutex<crate::state::StateId>,
    /// Writes that began applying (bumped before a write changes anything;
    /// see [`Collection::writes_begun`]).
    pub(crate) begun: AtomicU64,
    pub(crate) dropped: AtomicBool,
    /// One seal at a time, one merge at a time (the background lanes or `optimise`).
    pub(crate) seal_lock: Mutex<()>,
    /// Whether the data has structure (the first `auto` build's verdict;
    /// merges reuse it).
    pub(crate) structured: Mutex<Option<bool>>,
    /// Segments being built (their files exist before a manifest names
    /// them): the checkpoint's clean-up leaves their files alone.
    pub(crate) building: Mutex<std::collections::HashSet<SegmentId>>,
    pub(crate) merge_lock: Mutex<()>,
    /// Serialises checkpoints (manifest writes).
    pub(crate) checkpoint_lock: Mutex<()>,
    pub(crate) optimiser: Mutex<OptimiserStats>,
    /// Wakes the optimiser (a write filled the mutable segment, or stop).
    pub(crate) wake: (Mutex<bool>, Condvar),
    /// Set when the collection closes (dropped, replaced, shut down): the
    /// optimiser's build in progress stops at its next check
    /// ([`vectorwise_index::Cancel`]) instead of running to its end.
    pub(crate) cancel: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) worker: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Sealed segments whose files a snapshot is copying: the checkpoint's
    /// clean-up leaves them alone too.
    pub(crate) pins: crate::snapshot::Pins,
    /// Frozen points past which an upsert waits for the seal lane (0: never;
    /// see [`Collection::set_write_backlog`]).
    pub(crate) backlog_limit: AtomicUsize,
    /// Signalled after every seal and at stop: upserts waiting on the backlog.
    pub(crate) sealed_signal: (Mutex<()>, Condvar),
    /// Whether the seal lane's thread runs (no wait for a lane that never
    /// started, or that ended: a panic clears it too).
    pub(crate) seal_lane_started: AtomicBool,
    /// Whether the seal lane's last step failed (writes then do not wait
    /// for it; cleared by its next success).
    pub(crate) seal_failed: AtomicBool,
    /// [`BACKLOG_WAIT_MS`] (tests shorten it).
    pub(crate) backlog_wait_ms: AtomicU64,
    /// When the last write was applied, in ms of [`process_ms`].
    pub(crate) last_write_ms: AtomicU64,
}

/// Milliseconds since this process first asked.
fn process_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// Frozen points (written, not yet sealed into an index, searched exactly)
/// past which an upsert waits for the seal lane, by default. See
/// [`Collection::set_write_backlog`].
pub const DEFAULT_WRITE_BACKLOG: usize = 100_000;

/// How long an upsert waits for the seal lane before it is refused with
/// [`Error::Backlogged`] (retry later), in milliseconds.
const BACKLOG_WAIT_MS: u64 = 5_000;

/// The next [`Collection::incarnation`].
static NEXT_INCARNATION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

impl Collection {
    /// Opens the collection in `dir`: its manifest, its sealed segments,
    /// then the log replayed from the manifest's position. Starts the
    /// optimiser.
    pub fn open(name: &str, dir: &Path, sync: SyncMode) -> Result<Arc<Collection>> {
        let manifest = Manifest::read(dir)?;
        vectorwise_index::remove_stale_temporaries(&dir.join(crate::state::STATE_FILE));
        vectorwise_index::remove_stale_temporaries(&dir.join(crate::manifest::MANIFEST));
        let seg_dir = segments_dir(dir);
        let mut sealed = Vec::with_capacity(manifest.segments.len());
        for e in &manifest.segments {
            let index = seg_dir.join(&e.index);
            vectorwise_index::remove_stale_temporaries(&index);
            let payloads = e.payloads.as_ref().map(|p| seg_dir.join(p));
            let deleted = e.deleted.as_ref().map(|d| seg_dir.join(d));
            let seg = SealedSegment::open(
                e.id,
                &index,
                payloads.as_deref(),
                deleted.as_deref().map(|d| (d, e.deleted_generation)),
                &manifest.payload_indexes,
            )?;
            sealed.push(Arc::new(seg));
        }
        for (s, e) in sealed.iter().zip(&manifest.segments) {
            let (dim, metric) = (s.index.dim(), s.index.metric());
            if dim != manifest.config.dimension || metric != manifest.config.metric {
                let reason = format!(
                    "segment {} holds {dim}-d {metric} vectors; the manifest says {}-d {}",
                    e.index, manifest.config.dimension, manifest.config.metric
                );
                return Err(Error::corrupt(dir.join(crate::manifest::MANIFEST), reason));
            }
        }
        remove_unnamed_files(&seg_dir, &manifest, &|_| false);
        let mut ids = HashMap::new();
        for s in &sealed {
            for (o, &id) in s.index.ids().iter().enumerate() {
                if s.deleted.get(o as u32) {
                    continue;
                }
                if let Some(prev) = ids.insert(id, Loc2 { segment: s.id, offset: o as u32 }) {
                    // Older segments come first: the newer copy wins.
                    if let Some(p) = sealed.iter().find(|x| x.id == prev.segment) {
                        p.deleted.set(prev.offset);
                    }
                }
            }
        }
        // The identity and the history as of `wal_from`, for these files (`state.rs`).
        let files = crate::state::files(sealed.iter().map(|s| s.index.file_identity()));
        let (uuid, history) = crate::state::load(dir, manifest.wal_from, &files);
        let mutable =
            Arc::new(MemSegment::new(manifest.next_segment, manifest.wal_from, history, manifest.config.dimension, &manifest.payload_indexes));
        let wal = FileWal::open(&dir.join("wal"), manifest.wal_from, sync)?;
        let uuids = UuidMap::read(dir)?;
        let uuids_version = uuids.version;
        let c = Arc::new(Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config: manifest.config.clone(),
            wal: wal.clone(),
            write: Mutex::new(WriteState {
                ids,
                next_segment: manifest.next_segment + 1,
                fields: Arc::new(manifest.payload_indexes.clone()),
            }),
            segments: RwLock::new(Arc::new(SegmentSet { sealed, frozen: Vec::new(), mutable })),
            uuids: RwLock::new(uuids),
            uuids_written: AtomicU64::new(uuids_version),
            version: AtomicU64::new(0),
            incarnation: NEXT_INCARNATION.fetch_add(1, Ordering::Relaxed),
            uuid,
            state: Mutex::new(crate::state::StateId { version: 0, uuid, position: 0, digest: history }),
            begun: AtomicU64::new(0),
            dropped: AtomicBool::new(false),
            seal_lock: Mutex::new(()),
            structured: Mutex::new(None),
            building: Mutex::new(std::collections::HashSet::new()),
            merge_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            optimiser: Mutex::new(OptimiserStats { state: "idle", ..Default::default() }),
            wake: (Mutex::new(false), Condvar::new()),
            cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            worker: Mutex::new(Vec::new()),
            pins: Default::default(),
            backlog_limit: AtomicUsize::new(DEFAULT_WRITE_BACKLOG),
            sealed_signal: (Mutex::new(()), Condvar::new()),
            seal_lane_started: AtomicBool::new(false),
            seal_failed: AtomicBool::new(false),
            backlog_wait_ms: AtomicU64::new(BACKLOG_WAIT_MS),
            last_write_ms: AtomicU64::new(process_ms()),
        });
        let start = std::time::Instant::now();
        let mut replayed = 0usize;
        {
            let mut ws = c.write.lock();
            let wal_dir = dir.join("wal");
            let dimension = manifest.config.dimension;
            wal.replay(manifest.wal_from, &mut |lsn, body| {
                let record = Record::decode(body, &wal_dir)?;
                // A log from elsewhere (a restored snapshot) is checked as a
                // write is: a wrong width or id would break every search.
                if let Record::Upsert(points) = &record
                    && let Some(p) = points.iter().find(|p| p.vector.len() != dimension || (p.id > MAX_ID) != p.uuid.is_some())
                {
                    let reason = format!("record {lsn} holds point {} of {} values; the collection has {dimension}", p.id, p.vector.len());
                    return Err(Error::corrupt(&wal_dir, reason));
                }
                c.apply(&mut ws, record, lsn, &crate::state::record_digest(body));
                // Frozen as a write would freeze it, so the optimiser (started
                // below) seals what the log held instead of leaving it all in
                // one memory segment, searched exactly until the next write.
                c.freeze_locked_at(&mut ws, c.config.seal_points, lsn + 1);
                replayed += 1;
                Ok(())
            })?;
            // Every live UUID key has its UUID (from `uuids.bin` or the log).
            let uuids = c.uuids.read();
            if let Some(key) = ws.ids.keys().find(|&&k| is_uuid_key(k) && uuids.live_uuid_of(k).is_none()) {
                let reason = format!("a point has the key {key} of a UUID that neither this file nor the log names");
                return Err(Error::corrupt(dir.join(crate::ids::UUIDS_FILE), reason));
            }
        }
        if replayed > 0 {
            tracing::info!(collection = name, records = replayed, seconds = start.elapsed().as_secs_f64(), "replayed the write-ahead log");
        }
        crate::optimiser::start(&c);
        Ok(c)
    }

    /// Creates a new, empty collection in `dir` (which must not exist).
    pub(crate) fn create_files(dir: &Path, config: &CollectionConfig) -> Result<()> {
        std::fs::create_dir_all(segments_dir(dir)).map_err(|e| Error::io(dir, e))?;
        Manifest::new(config.clone()).write(dir)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    pub fn dimension(&self) -> usize {
        self.config.dimension
    }

    pub fn metric(&self) -> Metric {
        self.config.metric
    }

    /// Bumped by every applied write, after the write is visible to
    /// searches and before it returns. So a search that reads the version
    /// first sees every write the version counts, and every write
    /// acknowledged before it read it: the server's answer cache keys an
    /// answer by the version read before computing it. Starts at 0 at every
    /// opening (replay included): pair it with [`Collection::incarnation`].
    pub fn write_version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A number no other collection opened by this process has had (a
    /// collection deleted and created again under the same name gets a new
    /// one): with [`Collection::write_version`], it names one state of one
    /// collection.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The collection's state: its write version in this process, and an
    /// identity that names its contents across processes (see
    /// [`crate::state`]). Like [`Collection::write_version`], every write it
    /// counts is visible to a search that starts after reading it.
    pub fn state_id(&self) -> crate::state::StateId {
        *self.state.lock()
    }

    /// Writes that began applying in this opening. A search that read
    /// [`Collection::state_id`] before it ran and reads this after it
    /// (equal to the state's `version`) saw no write beyond that state: a
    /// write bumps this (sequentially consistent, with a fence) before it
    /// changes anything a search reads.
    pub fn writes_begun(&self) -> u64 {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.begun.load(Ordering::SeqCst)
    }

    /// Live points.
    pub fn len(&self) -> usize {
        self.write.lock().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the collection is still exactly the index file it was
    /// imported from ([`crate::Store::import`]): no write applied since.
    pub fn is_pristine_import(&self) -> bool {
        let set = self.set();
        self.write_version() == 0
            && set.frozen.is_empty()
            && set.mutable.len() == 0
            && set.sealed.len() == 1
            && set.sealed[0].id == 1
            && set.sealed[0].deleted() == 0
    }

    /// The index file of sealed segment `id`.
    pub fn segment_path(&self, id: u64) -> Option<PathBuf> {
        self.set().sealed.iter().find(|s| s.id == id).map(|s| s.index.path().to_path_buf())
    }

    pub(crate) fn set(&self) -> Arc<SegmentSet> {
        Arc::clone(&self.segments.read())
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::Dropped(self.name.clone()));
        }
        Ok(())
    }

    /// Applies a record to memory (under the write lock). Never fails: the
    /// record was checked before it was logged.
    pub(crate) fn apply(&self, ws: &mut WriteState, record: Record, lsn: Lsn, digest: &[u8; 32]) -> usize {
        self.begun.fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let set = self.set();
        let mut changed = 0;
        match record {
            Record::Upsert(points) => {
                // The UUIDs first: a search that finds a point can name it.
                if points.iter().any(|p| p.uuid.is_some()) {
                    let mut uuids = self.uuids.write();
                    for p in &points {
                        if let Some(u) = p.uuid {
                            uuids.set(u, p.id);
                        }
                    }
                }
                for p in points {
                    // The new copy first, then the old one deleted: a search
                    // reading the segments meanwhile sees one or both, never
                    // neither (it reads the mutable segment last).
                    let old = ws.ids.get(&p.id).copied();
                    let offset = set.mutable.push(p.id, &p.vector, p.payload);
                    ws.ids.insert(p.id, Loc2 { segment: set.mutable.id, offset });
                    if let Some(old) = old {
                        set.delete(old);
                    }
                    changed += 1;
                }
            }
            Record::Delete(ids) => {
                for &id in &ids {
                    if let Some(old) = ws.ids.remove(&id) {
                        set.delete(old);
                        changed += 1;
                    }
                }
                if ids.iter().any(|&k| is_uuid_key(k)) {
                    let mut uuids = self.uuids.write();
                    for &k in &ids {
                        uuids.remove_key(k);
                    }
                }
            }
        }
        // Last: every change above is visible to searches before a reader
        // can see the new state or version (see `write_version`).
        {
            let mut state = self.state.lock();
            state.version += 1;
            state.position = lsn;
            state.digest = crate::state::chain(&state.digest, lsn, digest);
        }
        self.version.fetch_add(1, Ordering::AcqRel);
        changed
    }

    /// Logs `record`, applies it, and returns once it is durable: the
    /// whole of it or nothing. `deleted_uuids` are deleted too (by their
    /// keys, found under the lock); upserted UUIDs without a key get theirs
    /// under the lock.
    fn write(&self, mut record: Record, deleted_uuids: &[u128]) -> Result<usize> {
        let unresolved =
            !deleted_uuids.is_empty() || matches!(&record, Record::Upsert(ps) if ps.iter().any(|p| p.uuid.is_some() && !is_uuid_key(p.id)));
        // Hashed before the lock when it can be: only the chain's step is under it.
        let mut encoded = (!unresolved).then(|| {
            let body = record.encode();
            let digest = crate::state::record_digest(&body);
            (body, digest)
        });
        let (lsn, changed, full) = {
            let mut ws = self.write.lock();
            self.check_open()?;
            let (body, digest) = match encoded.take() {
                Some(e) => e,
                None => {
                    self.resolve_uuids_locked(&mut record, deleted_uuids);
                    if matches!(&record, Record::Delete(ids) if ids.is_empty()) {
                        return Ok(0);
                    }
                    let body = record.encode();
                    let digest = crate::state::record_digest(&body);
                    (body, digest)
                }
            };
            let lsn: Lsn = self.wal.append(&body)?;
            let changed = self.apply(&mut ws, record, lsn, &digest);
            // A full mutable segment is frozen at once (a pointer swap), so
            // the exactly-searched memory stays near `seal_points` whatever
            // the optimiser is doing.
            (lsn, changed, self.freeze_locked(&mut ws, self.config.seal_points))
        };
        self.last_write_ms.store(process_ms(), Ordering::Relaxed);
        if full {
            self.wake_optimiser();
            // The frozen rows' codes, made here (10k x 128: ~6 ms, beside the
            // other writers' syncs) rather than by the next search.
            for f in &self.set().frozen {
                f.prepare_bounds(self.config.metric);
            }
        }
        self.wal.sync(lsn)?;
        Ok(changed)
    }

    /// Gives each UUID of an upsert its key (the one it has, else the next
    /// free one), and adds the keys of `deleted_uuids` that exist to a
    /// delete. Under the write lock: no other write gives keys meanwhile.
    fn resolve_uuids_locked(&self, record: &mut Record, deleted_uuids: &[u128]) {
        let uuids = self.uuids.read();
        match record {
            Record::Upsert(points) => {
                let (mut fresh, mut taken) = (HashMap::new(), 0);
                for p in points.iter_mut() {
                    if let Some(u) = p.uuid {
                        p.id = uuids.key_for(u, &mut fresh, &mut taken);
                    }
                }
            }
            Record::Delete(ids) => ids.extend(deleted_uuids.iter().filter_map(|&u| uuids.key_of(u))),
        }
    }

    /// Live points whose id is a UUID.
    pub fn uuid_points(&self) -> usize {
        self.uuids.read().len()
    }

    /// Checks a batch of points (every error names `points[i]`) and
    /// prepares each for the metric.
    pub fn prepare_points(&self, points: Vec<NewPoint>) -> Result<Vec<PointWrite>> {
        prepare_points(&self.config, points)
    }

    /// Inserts or replaces `points`; returns once they are durable and
    /// visible to every later search, with the number of distinct ids
    /// written (an id given twice: the later point wins). A bad point
    /// refuses the whole batch.
    pub fn upsert(&self, points: Vec<NewPoint>) -> Result<usize> {
        self.upsert_until(points, std::time::Instant::now() + self.backlog_wait(), false)
    }

    /// [`Collection::upsert`], waiting for the write backlog only until
    /// `deadline`; `waited`: the caller already waited for it (and counted
    /// the wait, [`Collection::note_write_waited`]), e.g. without holding a
    /// thread ([`Collection::write_backlogged`]).
    pub fn upsert_until(&self, points: Vec<NewPoint>, deadline: std::time::Instant, waited: bool) -> Result<usize> {
        self.check_open()?;
        let prepared = self.prepare_points(points)?;
        if prepared.is_empty() {
            return Ok(0);
        }
        let distinct = prepared.iter().map(|p| (p.id, p.uuid)).collect::<std::collections::HashSet<_>>().len();
        self.wait_for_backlog(deadline, waited)?;
        self.write(Record::Upsert(prepared), &[])?;
        Ok(distinct)
    }

    /// Deletes the points with `ids`; returns how many existed.
    pub fn delete(&self, ids: impl IntoIterator<Item = impl Into<PointId>>) -> Result<usize> {
        self.check_open()?;
        let mut keys = Vec::new();
        let mut uuids = Vec::new();
        for (i, id) in ids.into_iter().enumerate() {
            match id.into() {
                PointId::Num(n) if n > MAX_ID => {
                    return Err(Error::invalid(vec![Loc::Field("ids"), Loc::Index(i)], format!("must be at most {MAX_ID} (2^63 - 1)")));
                }
                PointId::Num(n) => keys.push(n),
                PointId::Uuid(u) => uuids.push(u),
            }
        }
        if keys.is_empty() && uuids.is_empty() {
            return Ok(0);
        }
        self.write(Record::Delete(keys), &uuids)
    }

    /// The points with `ids` that exist, in the order asked.
    pub fn get(&self, ids: &[impl Into<PointId> + Copy], with_payload: bool, with_vector: bool) -> Result<Vec<StoredPoint>> {
        self.check_open()?;
        let ids: Vec<PointId> = ids.iter().map(|&id| id.into()).collect();
        let (set, locs): (Arc<SegmentSet>, Vec<Option<Loc2>>) = {
            let ws = self.write.lock();
            let uuids = self.uuids.read();
            let key = |id: &PointId| match *id {
                PointId::Num(n) => Some(n).filter(|&n| n <= MAX_ID),
                PointId::Uuid(u) => uuids.key_of(u),
            };
            (self.set(), ids.iter().map(|id| key(id).and_then(|k| ws.ids.get(&k).copied())).collect())
        };
        Ok(ids
            .iter()
            .zip(locs)
            .filter_map(|(&id, at)| {
                let at = at?;
                let (payload, vector) = set.read(at, with_payload, with_vector);
                Some(StoredPoint { id, vector, payload })
            })
            .collect())
    }

    /// The `k` nearest live points to `query` across every segment.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<SearchOutcome> {
        self.check_search(opts)?;
        let resolved = self.resolve_filter(opts);
        let recheck = resolved.as_ref().and(opts.filter.as_deref());
        self.search_in(&self.set(), query, resolved.as_ref().unwrap_or(opts), None, recheck)
    }

    /// `opts` with the UUIDs of its filter's `has_id` turned into keys, when
    /// it names any (`None`: nothing to change), and `k` raised by the UUIDs
    /// named (at most 64): a UUID deleted and written again during the
    /// search gets a new key its filter does not know, and the search
    /// re-checks its hits by their UUIDs (`search_in`'s `recheck`), so it
    /// over-fetches the few a re-check can drop.
    fn resolve_filter(&self, opts: &SearchOptions) -> Option<SearchOptions> {
        let filter = opts.filter.as_deref().filter(|f| f.has_uuids())?;
        let uuids = self.uuids.read();
        let resolved = filter.resolve_uuids(&|u| uuids.key_of(u));
        let k = opts.k.saturating_add(uuid_overfetch(filter));
        Some(SearchOptions { filter: Some(Arc::new(resolved)), k, ..opts.clone() })
    }

    /// [`Collection::search`] for every query, in order, spread over the
    /// rayon pool; the filter is applied to each sealed segment once for
    /// the whole batch (as of its start) instead of once a query: with a
    /// key no payload index answers, that reads every payload once, not
    /// once a query. Memory segments are still selected per query (under
    /// the lock their search takes).
    /// The outer error is the batch's (a closed collection, `k` 0), the
    /// inner ones each query's.
    pub fn search_many(&self, queries: &[Vec<f32>], opts: &SearchOptions) -> Result<Vec<Result<SearchOutcome>>> {
        use rayon::prelude::*;
        self.check_search(opts)?;
        let resolved = self.resolve_filter(opts);
        let recheck = resolved.as_ref().and(opts.filter.as_deref());
        let opts = resolved.as_ref().unwrap_or(opts);
        let set = self.set();
        let selected: Option<Vec<Selected>> = match opts.filter.as_deref() {
            Some(filter) if queries.len() > 1 => {
                let budget = ScanBudget::new();
                Some(set.sealed.iter().map(|s| select_sealed(s, filter, &budget)).collect::<Result<_>>()?)
            }
            _ => None,
        };
        Ok(queries.par_iter().map(|q| self.search_in(&set, q, opts, selected.as_deref(), recheck)).collect())
    }

    fn check_search(&self, opts: &SearchOptions) -> Result<()> {
        self.check_open()?;
        if opts.k == 0 {
            return Err(vectorwise_index::Error::InvalidParameter { name: "k", reason: "must be at least 1".into() }.into());
        }
        Ok(())
    }

    /// One search of `set`; `selected`, when given, is the filter's
    /// selection of each sealed segment of `set`, in order. `recheck`: the
    /// filter as asked, with UUIDs (`opts` holds it resolved to keys, and
    /// more than `k` to fetch): each hit is checked against it by its UUID
    /// as the map names it now, and `k` (the asked one) kept.
    ///
    /// A freeze during the search sends later copies of the points it
    /// replaces to a memory segment the search's list does not hold, while
    /// their earlier copies, in the list's mutable segment, may be deleted
    /// before the search reads them: the point would be missed. So when the
    /// mutable segment changed meanwhile, the search runs again on the new
    /// list (at most [`SEARCH_ATTEMPTS`] times in all).
    fn search_in(
        &self,
        set: &Arc<SegmentSet>,
        query: &[f32],
        opts: &SearchOptions,
        selected: Option<&[Selected]>,
        recheck: Option<&Filter>,
    ) -> Result<SearchOutcome> {
        let mut set = Arc::clone(set);
        let mut selected = selected;
        let mut attempt = 1;
        loop {
            let (outcome, widened) = vectorwise_index::widened_in(|| self.search_segments(&set, query, opts, selected, recheck));
            let now = self.set();
            if attempt >= SEARCH_ATTEMPTS || Arc::ptr_eq(&now.mutable, &set.mutable) {
                return outcome.map(|o| SearchOutcome { widened, ..o });
            }
            set = now;
            // Selected for the old list's sealed segments.
            selected = None;
            attempt += 1;
        }
    }

    /// [`Collection::search_in`] but for saying whether it was widened.
    fn search_segments(
        &self,
        set: &SegmentSet,
        query: &[f32],
        opts: &SearchOptions,
        selected: Option<&[Selected]>,
        recheck: Option<&Filter>,
    ) -> Result<SearchOutcome> {
        let filter = opts.filter.as_deref();
        let budget = &ScanBudget::new();
        // No lock: segments are read in the order points move between them
        // (sealed, frozen, then the mutable one; a write adds the new copy
        // before it deletes the old), so a point being replaced is seen at
        // least once, and a second sighting is dropped below (a freeze
        // meanwhile: see `search_in`). Each memory segment is selected and
        // searched under one read lock.
        let metric = self.config.metric;
        let prepared = metric.prepare_point_query(query, self.config.dimension)?;
        let mut hits: Vec<Hit> = Vec::new();
        let mut plan: Option<(usize, SearchPlan)> = None;
        let mut expected = Some(1.0f64);
        let mut report = filter.map(|_| FilterReport::default());
        for (i, s) in set.sealed.iter().enumerate() {
            if s.live() == 0 {
                continue;
            }
            let p = s.index.plan(opts.k, opts.request);
            expected = match (expected, p.expected_recall) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
            match (filter, report.as_mut()) {
                (Some(filter), Some(report)) => {
                    let own;
                    let sel = match selected.and_then(|all| all.get(i)) {
                        Some(sel) => sel,
                        None => {
                            own = select_sealed(s, filter, budget)?;
                            &own
                        }
                    };
                    report.unindexed.extend(sel.unindexed.iter().cloned());
                    report.allowed += sel.allowed;
                    report.live += sel.live;
                    if sel.allowed == 0 {
                        continue;
                    }
                    let (found, path) = s.search_allowed(query, opts.k, &p.params, &sel.allow)?;
                    if !report.paths.contains(&path) {
                        report.paths.push(path);
                    }
                    hits.extend(found);
                }
                _ => hits.extend(s.search(query, opts.k, &p.params)?),
            }
            if plan.as_ref().is_none_or(|(n, _)| s.len() > *n) {
                plan = Some((s.len(), p));
            }
        }
        for (m, frozen) in set.frozen.iter().map(|f| (f, true)).chain(std::iter::once((&set.mutable, false))) {
            let d = m.data.read();
            match (filter, report.as_mut()) {
                (Some(filter), Some(report)) => {
                    let offsets_of = |ids: &[u64]| -> Vec<u32> {
                        let wanted: std::collections::HashSet<u64> = ids.iter().copied().collect();
                        d.ids.iter().enumerate().filter(|(_, id)| wanted.contains(id)).map(|(o, _)| o as u32).collect()
                    };
                    let seg = SegmentPoints {
                        len: d.ids.len(),
                        indexes: &d.fields,
                        payload: &|o| d.payloads[o as usize].as_deref(),
                        id: &|o| d.ids[o as usize],
                        offsets_of: &offsets_of,
                    };
                    let (bits, unindexed) = select(filter, &seg, budget)?;
                    report.unindexed.extend(unindexed);
                    report.allowed += bits.iter().filter(|&o| !d.deleted[o as usize]).count();
                    report.live += d.ids.len() - d.deleted_count;
                    hits.extend(m.search_data(&d, metric, &prepared, opts.k, Some(&bits), frozen));
                }
                _ => hits.extend(m.search_data(&d, metric, &prepared, opts.k, None, frozen)),
            }
        }
        if let Some(r) = report.as_mut() {
            r.unindexed.sort();
            r.unindexed.dedup();
        }
        hits.sort_by(|a, b| a.key().cmp(&b.key()));
        // A point replaced during the search may be seen in two segments.
        let mut seen = std::collections::HashSet::with_capacity(hits.len());
        hits.retain(|h| seen.insert(h.id));
        // Named (a UUID's key by the map; a UUID deleted and written again
        // meanwhile may be seen under both its keys: once), re-checked
        // against the filter as asked when it names UUIDs, then cut to `k`.
        let k = opts.k - recheck.map_or(0, uuid_overfetch);
        let uuids = hits.iter().any(|h| is_uuid_key(h.id)).then(|| self.uuids.read());
        let mut named = std::collections::HashSet::new();
        let mut kept: Vec<(Hit, PointId)> = Vec::with_capacity(k.min(hits.len()));
        for h in hits {
            if kept.len() == k {
                break;
            }
            let Some(id) = uuids.as_ref().map_or(Some(PointId::Num(h.id)), |m| m.id_of(h.id)) else { continue };
            // Integer ids are their keys, already distinct.
            if uuids.is_some() && !named.insert(id) {
                continue;
            }
            if let Some(asked) = recheck {
                let (text, _) = set.read(Loc2 { segment: h.segment, offset: h.offset }, true, false);
                let payload = text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                let uuid = if let PointId::Uuid(u) = id { Some(u) } else { None };
                if !asked.matches_named(h.id, uuid, payload.as_ref()) {
                    continue;
                }
            }
            kept.push((h, id));
        }
        drop(uuids);
        if opts.with_payload {
            let bytes: usize = kept.iter().map(|(h, _)| set.payload_len(Loc2 { segment: h.segment, offset: h.offset })).sum();
            if bytes > opts.payload_budget {
                return Err(Error::ResponseTooLarge { bytes, limit: opts.payload_budget });
            }
        }
        let found = kept
            .into_iter()
            .map(|(h, id)| {
                let at = Loc2 { segment: h.segment, offset: h.offset };
                let (payload, vector) = set.read(at, opts.with_payload, opts.with_vector);
                Found { id, key: h.id, distance: h.distance, payload, vector }
            })
            .collect();
        Ok(SearchOutcome {
            hits: found,
            plan: plan.map(|(_, p)| p),
            expected_recall: expected,
            segments: set.sealed.len() + set.frozen.len() + 1,
            filter: report,
            widened: false,
        })
    }

    /// Declares a payload index on `spec.field` and builds it in every
    /// segment; durable (in the manifest) when it returns. Returns whether
    /// it is new: the same declaration again changes nothing; another type
    /// on the same key is refused.
    pub fn create_payload_index(&self, spec: FieldSpec) -> Result<bool> {
        self.check_open()?;
        let key = crate::filter::KeyPath::parse(&spec.field).map_err(|reason| Error::invalid(vec![Loc::Field("field")], reason))?;
        // `a[].b` and `a.b` are one key.
        let spec = FieldSpec { field: key.as_str().to_string(), ..spec };
        let conflict = |fields: &[FieldSpec]| -> Result<bool> {
            match fields.iter().find(|f| f.field == spec.field) {
                Some(existing) if existing.field_type == spec.field_type => Ok(true),
                Some(existing) => Err(Error::IndexConflict { field: spec.field.clone(), existing: existing.field_type.as_str() }),
                None => Ok(false),
            }
        };
        // Built on the pool for the sealed segments first, without the write
        // lock (searches and writes go on); then, under it, for what changed
        // meanwhile (memory segments, a segment the optimiser installed), on
        // this thread.
        let (wanted, set) = {
            let ws = self.write.lock();
            if conflict(&ws.fields)? {
                return Ok(false);
            }
            let mut fields = ws.fields.to_vec();
            fields.push(spec.clone());
            (fields, self.set())
        };
        for s in &set.sealed {
            s.ensure_fields(&wanted, true);
        }
        let field = spec.field.clone();
        {
            let mut ws = self.write.lock();
            // Dropped while the pool built: nothing to declare.
            self.check_open()?;
            if conflict(&ws.fields)? {
                return Ok(false);
            }
            let mut fields = ws.fields.to_vec();
            fields.push(spec);
            ws.fields = Arc::new(fields);
            self.reindex_locked(&ws);
        }
        if let Err(e) = self.checkpoint() {
            // Not durable (a full disk): taken back, so the refusal leaves
            // the collection as it was (a retry creates it).
            let mut ws = self.write.lock();
            ws.fields = Arc::new(ws.fields.iter().filter(|f| f.field != field).cloned().collect());
            self.reindex_locked(&ws);
            return Err(e);
        }
        // A checkpoint that ran between the build and the declaration
        // removed the new files (its manifest did not name the index yet).
        for s in &self.set().sealed {
            s.persist_missing_fields();
        }
        Ok(true)
    }

    /// Drops the payload index on `field`; durable when it returns.
    pub fn drop_payload_index(&self, field: &str) -> Result<()> {
        self.check_open()?;
        let canonical = crate::filter::KeyPath::parse(field).map(|k| k.as_str().to_string());
        let field = canonical.as_deref().unwrap_or(field);
        let dropped = {
            let mut ws = self.write.lock();
            let Some(dropped) = ws.fields.iter().find(|f| f.field == field).cloned() else {
                return Err(Error::IndexNotFound(field.to_string()));
            };
            ws.fields = Arc::new(ws.fields.iter().filter(|f| f.field != field).cloned().collect());
            self.reindex_locked(&ws);
            dropped
        };
        if let Err(e) = self.checkpoint() {
            // Not durable (a full disk): put back (built again), so the
            // refusal leaves the collection as it was.
            let mut ws = self.write.lock();
            if !ws.fields.iter().any(|f| f.field == dropped.field) {
                let mut fields = ws.fields.to_vec();
                fields.push(dropped);
                ws.fields = Arc::new(fields);
                self.reindex_locked(&ws);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Brings every segment's payload indexes to `ws.fields` (the write
    /// lock held, so no segment comes or goes meanwhile; no rayon here).
    fn reindex_locked(&self, ws: &WriteState) {
        let set = self.set();
        for s in &set.sealed {
            s.ensure_fields(&ws.fields, false);
        }
        for m in std::iter::once(&set.mutable).chain(&set.frozen) {
            m.ensure_fields(&ws.fields);
        }
    }

    pub fn stats(&self) -> CollectionStats {
        let (set, points, fields) = {
            let ws = self.write.lock();
            (self.set(), ws.ids.len(), ws.fields.to_vec())
        };
        let mut segments = Vec::new();
        let mut deleted = 0;
        for (kind, m) in std::iter::once(("mutable", &set.mutable)).chain(set.frozen.iter().map(|f| ("frozen", f))) {
            let d = m.data.read();
            deleted += d.deleted_count;
            segments.push(SegmentStats {
                id: m.id,
                kind,
                points: d.ids.len(),
                deleted: d.deleted_count,
                method: "exact".into(),
                bytes: (d.vectors.len() * 4 + d.ids.len() * 8) as u64
                    + d.payloads.iter().map(|p| p.as_ref().map_or(0, |s| s.len() as u64)).sum::<u64>(),
                calibrated: false,
                balanced_recall_at_10: None,
            });
        }
        for s in &set.sealed {
            let info = s.index.info();
            deleted += s.deleted();
            let balanced = s.index.calibration().and_then(|_| s.index.plan(10, SearchRequest::Profile(vectorwise_index::Profile::Balanced)).expected_recall);
            segments.push(SegmentStats {
                id: s.id,
                kind: "sealed",
                points: s.len(),
                deleted: s.deleted(),
                method: info.index_type.to_string(),
                bytes: info.file_size_bytes,
                calibrated: info.calibrated,
                balanced_recall_at_10: balanced,
            });
        }
        CollectionStats {
            name: self.name.clone(),
            config: self.config.clone(),
            points,
            deleted,
            wal_bytes: self.wal.bytes(),
            write_version: self.write_version(),
            segments,
            payload_indexes: fields,
            optimiser: self.optimiser.lock().clone(),
        }
    }

    /// Runs the optimiser's work now, in this thread, until none is left
    /// (seal the mutable segment if full, seal frozen ones, merge, rewrite).
    /// For tools and tests; the background thread does the same on its own.
    pub fn optimise(self: &Arc<Self>) -> Result<()> {
        use crate::optimiser::{Lane, step};
        while step(self, Lane::Seal)? || step(self, Lane::Merge)? {}
        Ok(())
    }

    /// Seals the mutable segment now whatever its size, then runs
    /// [`Collection::optimise`].
    pub fn flush(self: &Arc<Self>) -> Result<()> {
        self.freeze_locked(&mut self.write.lock(), 1);
        self.optimise()
    }

    /// Freezes the mutable segment if it holds at least `points` points (the
    /// write lock held): a new one takes the writes from the next LSN on.
    /// Returns whether it did.
    pub(crate) fn freeze_locked(&self, ws: &mut WriteState, points: usize) -> bool {
        self.freeze_locked_at(ws, points, self.wal.next_lsn())
    }

    /// [`Collection::freeze_locked`], the new mutable segment starting at
    /// `first_lsn` (the next record to apply: during replay, not the log's end).
    fn freeze_locked_at(&self, ws: &mut WriteState, points: usize, first_lsn: Lsn) -> bool {
        let set = self.set();
        if set.mutable.len() < points.max(1) {
            return false;
        }
        let id = ws.next_segment;
        ws.next_segment += 1;
        // Every logged record is applied (both under the write lock): the
        // state's digest is the history before the next LSN.
        let history = self.state.lock().digest;
        let fresh = Arc::new(MemSegment::new(id, first_lsn, history, self.config.dimension, &ws.fields));
        let mut frozen = set.frozen.clone();
        frozen.push(Arc::clone(&set.mutable));
        *self.segments.write() = Arc::new(SegmentSet { sealed: set.sealed.clone(), frozen, mutable: fresh });
        true
    }

    /// Sets the frozen points past which upserts wait for the seal lane (0:
    /// never wait). A write stall, as LSM stores have: an ingest faster than
    /// one core seals would otherwise leave a backlog that every search scans
    /// exactly, and that takes the optimiser tens of seconds to index after
    /// the last write.
    pub fn set_write_backlog(&self, points: usize) {
        self.backlog_limit.store(points, Ordering::Relaxed);
        self.signal_sealed();
    }

    /// Milliseconds since the last write was applied (or the collection opened).
    pub(crate) fn ms_since_last_write(&self) -> u64 {
        process_ms().saturating_sub(self.last_write_ms.load(Ordering::Relaxed))
    }

    /// Wakes the upserts waiting on the backlog.
    pub(crate) fn signal_sealed(&self) {
        let _g = self.sealed_signal.0.lock();
        self.sealed_signal.1.notify_all();
    }

    /// How long an upsert waits for the write backlog at most.
    pub fn backlog_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.backlog_wait_ms.load(Ordering::Relaxed))
    }

    /// Whether an upsert now would wait for the seal lane (see
    /// [`Collection::upsert_until`]): a caller may wait for this to clear
    /// without holding a thread.
    pub fn write_backlogged(&self) -> bool {
        matches!(self.backlog_over(), Ok(Some(_)))
    }

    /// Counts a write that waited for the backlog outside the collection.
    pub fn note_write_waited(&self) {
        self.optimiser.lock().writes_waited += 1;
    }

    /// The frozen points and the limit when the frozen backlog holds more
    /// than the limit (at least twice `seal_points`, and the largest frozen
    /// segment plus `seal_points`) and the seal lane is at work on it
    /// (running, stopping not asked, its last seal not failed); else `None`.
    fn backlog_over(&self) -> Result<Option<(usize, usize)>> {
        self.check_open()?;
        if !self.seal_lane_started.load(Ordering::Acquire) || self.seal_failed.load(Ordering::Acquire) || *self.wake.0.lock() {
            return Ok(None);
        }
        let set = self.set();
        let (frozen, largest) = set.frozen.iter().map(|f| f.len()).fold((0, 0), |(sum, max), n| (sum + n, max.max(n)));
        // At least one segment being sealed (a write can freeze one past
        // `seal_points`) plus one more.
        let limit = match self.backlog_limit.load(Ordering::Relaxed) {
            0 => return Ok(None),
            l => l.max(2 * self.config.seal_points).max(largest + self.config.seal_points),
        };
        Ok((frozen > limit).then_some((frozen, limit)))
    }

    /// Waits while [`Collection::backlog_over`]; [`Error::Backlogged`] once
    /// `deadline` has passed (`waited`: the caller waited and counted it).
    fn wait_for_backlog(&self, deadline: std::time::Instant, mut waited: bool) -> Result<()> {
        let mut g = self.sealed_signal.0.lock();
        let mut timed_out = std::time::Instant::now() >= deadline;
        loop {
            let Some((frozen, limit)) = self.backlog_over()? else { return Ok(()) };
            if timed_out {
                self.optimiser.lock().writes_refused += 1;
                return Err(Error::Backlogged { frozen, limit });
            }
            if !waited {
                waited = true;
                self.note_write_waited();
            }
            // Looked at once more after the deadline: a seal just then lets it through.
            timed_out = self.sealed_signal.1.wait_until(&mut g, deadline).timed_out();
        }
    }

    pub(crate) fn wake_optimiser(&self) {
        let _g = self.wake.0.lock();
        self.wake.1.notify_all();
    }

    /// Makes the optimiser's build in progress, and any later one, stop at
    /// its next check, its files removed: the points stay in the log or the
    /// input segments. A pile merge of 800k points that ran 18 s to its end
    /// before a drop, a forced restore or a shutdown could finish.
    pub fn cancel_builds(&self) {
        self.cancel.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Stops the optimiser and waits for the step it is in to end (a build
    /// runs to its end, not cancelled): the caller then drives the
    /// collection's optimisation alone ([`Collection::optimise`]). Without
    /// the wait, a step running at the stop could seal the segment a test
    /// had just frozen for itself (a CI run failed so).
    pub fn pause_optimiser(&self) {
        self.stop_optimiser();
        for h in std::mem::take(&mut *self.worker.lock()) {
            let _ = h.join();
        }
    }

    /// Asks the optimiser to stop after the step it is in.
    pub fn stop_optimiser(&self) {
        {
            let mut stop = self.wake.0.lock();
            *stop = true;
            self.wake.1.notify_all();
        }
        self.signal_sealed();
    }

    /// Stops the optimiser, cancels the build it is in (see
    /// [`Collection::cancel_builds`]) and waits for the step to end. The
    /// collection still answers reads.
    pub fn close(&self) {
        self.cancel_builds();
        self.pause_optimiser();
    }

    /// Writes the deleted sets that changed and a new manifest, then drops
    /// the log before the oldest memory segment and the unused files.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let _c = self.checkpoint_lock.lock();
        // Under the write lock: the segments and their deleted sets as of
        // the log position `next` (every deletion in them comes from a
        // record below it).
        let (set, next, deleted, next_segment, fields, history_now) = {
            let ws = self.write.lock();
            let set = self.set();
            let deleted: Vec<Vec<u32>> = set.sealed.iter().map(|s| s.deleted.ones()).collect();
            (set, self.wal.next_lsn(), deleted, ws.next_segment, ws.fields.clone(), self.state.lock().digest)
        };
        // Durable first, so no deletion reaches a sidecar before its record.
        if next > 1 {
            self.wal.sync(next - 1)?;
        }
        let seg_dir = segments_dir(&self.dir);
        let mut entries = Vec::with_capacity(set.sealed.len());
        for (s, offsets) in set.sealed.iter().zip(&deleted) {
            let mut persisted = s.persisted.lock();
            if offsets.len() != persisted.0 {
                let generation = persisted.1 + 1;
                crate::files::write_deleted(&seg_dir.join(deleted_name(s.id, generation)), offsets)?;
                *persisted = (offsets.len(), generation);
            }
            let index = s.index.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let payloads =
                s.payloads.path().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
            entries.push(SegmentEntry {
                id: s.id,
                index,
                payloads,
                deleted: (persisted.1 > 0).then(|| deleted_name(s.id, persisted.1)),
                deleted_generation: persisted.1,
                points: s.len(),
            });
        }
        let oldest = std::iter::once(&set.mutable).chain(&set.frozen).min_by_key(|m| m.first_lsn);
        let (wal_from, history) = oldest.map_or((next, history_now), |m| (m.first_lsn, m.history));
        let manifest = Manifest {
            format: 1,
            config: self.config.clone(),
            segments: entries,
            payload_indexes: fields.to_vec(),
            wal_from,
            next_segment,
        };
        // Before the manifest moves `wal_from` past the records that gave
        // UUIDs their keys: the map as of now (at or past `wal_from`; see
        // `ids.rs` for why any such position is right).
        let uuids = {
            let mut m = self.uuids.write();
            m.sweep();
            (m.version != self.uuids_written.load(Ordering::Acquire)).then(|| m.clone())
        };
        if let Some(m) = uuids {
            // The map may hold writes past `next`: every one it holds was
            // logged before it was applied, so syncing the log as far as it
            // reaches now makes them durable before the file says them (a
            // crash must not leave a file without the pair of a point whose
            // delete it lost).
            let upto = self.wal.next_lsn();
            if upto > 1 {
                self.wal.sync(upto - 1)?;
            }
            m.write(&self.dir)?;
            self.uuids_written.store(m.version, Ordering::Release);
        }
        // Before the manifest: a crash between the two leaves a state.json
        // of another wal_from, which the next open does not trust.
        let files = crate::state::files(set.sealed.iter().map(|s| s.index.file_identity()));
        crate::state::store(&self.dir, wal_from, &self.uuid, &history, &files);
        manifest.write(&self.dir)?;
        self.wal.truncate_before(wal_from)?;
        // Files no manifest names any more (merged segments, old sidecars),
        // but those of segments the optimiser is building now or a snapshot
        // is copying.
        remove_unnamed_files(&seg_dir, &manifest, &|id| self.building.lock().contains(&id) || self.pins.lock().contains_key(&id));
        Ok(())
    }
}

/// Removes the files of `segments/` that `manifest` does not name (a merged
/// segment's, a superseded sidecar, a crashed or failed build's) unless
/// `in_build` says their segment is being built (at open nothing is), and a
/// killed writer's `.NAME.tmp-PID` temporaries.
fn remove_unnamed_files(seg_dir: &Path, manifest: &Manifest, in_build: &dyn Fn(SegmentId) -> bool) {
    // Each named segment's payload index files, for the declared indexes.
    let pidx: Vec<String> = manifest
        .segments
        .iter()
        .flat_map(|e| manifest.payload_indexes.iter().map(|s| crate::payload_index::pidx_name(e.id, s)))
        .collect();
    let keep: std::collections::HashSet<&str> = manifest
        .segments
        .iter()
        .flat_map(|e| [Some(e.index.as_str()), e.payloads.as_deref(), e.deleted.as_deref()])
        .flatten()
        .chain(pidx.iter().map(String::as_str))
        .collect();
    let Ok(entries) = std::fs::read_dir(seg_dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(target) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")).map(|(t, _)| t) {
            vectorwise_index::remove_stale_temporaries(&seg_dir.join(target));
        } else if !keep.contains(name.as_str())
            && e.file_type().is_ok_and(|t| t.is_file())
            && !name.get(..12).and_then(|n| n.parse::<u64>().ok()).is_some_and(in_build)
        {
            tracing::info!(file = %e.path().display(), "removing a segment file no manifest names (merged, superseded, or a failed build)");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub(crate) fn deleted_name(id: SegmentId, generation: u64) -> String {
    format!("{id:012}.deleted-{generation}")
}

pub(crate) fn index_name(id: SegmentId) -> String {
    format!("{id:012}.vwi")
}

pub(crate) fn payloads_name(id: SegmentId) -> String {
    format!("{id:012}.payloads")
}

impl OptimiserStats {
    pub(crate) fn set_busy(&mut self, lane: crate::optimiser::Lane, busy: bool) {
        use crate::optimiser::Lane;
        let (mut sealing, mut merging) = (self.state.contains("sealing"), self.state.contains("merging"));
        match lane {
            Lane::Seal => sealing = busy,
            Lane::Merge => merging = busy,
        }
        self.state = match (sealing, merging) {
            (false, false) => "idle",
            (true, false) => "sealing",
            (false, true) => "merging",
            (true, true) => "sealing+merging",
        };
    }
}

/// The hits a search with `filter` (naming UUIDs) fetches beyond `k`: a
/// UUID deleted and written again during the search may be seen under its
/// new key, which the filter did not know, and under its old one; both are
/// dropped by the re-check when the filter excludes it.
fn uuid_overfetch(filter: &Filter) -> usize {
    (2 * filter.uuid_count()).min(64)
}

/// A filter's selection of one sealed segment: the live points it lets
/// through, and the keys no payload index answered.
struct Selected {
    allow: AllowSet,
    allowed: usize,
    live: usize,
    unindexed: Vec<String>,
}

fn select_sealed(s: &SealedSegment, filter: &Filter, budget: &ScanBudget) -> Result<Selected> {
    let fields = s.fields.read().clone();
    let ids = s.index.ids();
    let seg = SegmentPoints {
        len: s.len(),
        indexes: &fields,
        payload: &|o| s.payloads.get(o as usize),
        id: &|o| ids[o as usize],
        offsets_of: &|ids| ids.iter().filter_map(|&id| s.index.offset_of(id)).collect(),
    };
    let (mut allow, unindexed) = select(filter, &seg, budget)?;
    if s.deleted() > 0 {
        for o in s.deleted.ones() {
            allow.remove(o);
        }
    }
    Ok(Selected { allowed: allow.count(), live: s.live(), allow, unindexed })
}

/// Checks a batch of points for `config` (every error names `points[i]`)
/// and prepares each for the metric: what an upsert or an import writes.
pub fn prepare_points(config: &CollectionConfig, points: Vec<NewPoint>) -> Result<Vec<PointWrite>> {
    let loc = |i: usize, f: &'static str| vec![Loc::Field("points"), Loc::Index(i), Loc::Field(f)];
    let mut out = Vec::with_capacity(points.len());
    for (i, p) in points.into_iter().enumerate() {
        // A UUID's key is given under the write lock (`resolve_uuids_locked`).
        let (id, uuid) = match p.id {
            PointId::Num(n) if n > MAX_ID => return Err(Error::invalid(loc(i, "id"), format!("must be at most {MAX_ID} (2^63 - 1)"))),
            PointId::Num(n) => (n, None),
            PointId::Uuid(u) => (0, Some(u)),
        };
        if p.vector.len() != config.dimension {
            let reason = format!("has {} values; the collection's dimension is {}", p.vector.len(), config.dimension);
            return Err(Error::invalid(loc(i, "vector"), reason));
        }
        let vector = config.metric.prepare_point(&p.vector, i).map_err(|e| Error::invalid(loc(i, "vector"), e.to_string()))?;
        let vector = vector.into_owned();
        let payload = match p.payload {
            None | Some(serde_json::Value::Null) => None,
            Some(v @ serde_json::Value::Object(_)) => {
                let text = serde_json::to_string(&v).expect("a JSON value serialises");
                if text.len() > config.max_payload_bytes {
                    return Err(Error::PayloadTooLarge { index: i, size: text.len(), limit: config.max_payload_bytes });
                }
                Some(Arc::from(text))
            }
            Some(_) => return Err(Error::invalid(loc(i, "payload"), "must be a JSON object or null")),
        };
        out.push(PointWrite { id, uuid, vector, payload });
    }
    Ok(out)
}
