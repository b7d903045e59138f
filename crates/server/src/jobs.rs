//! Batch jobs: a large query set searched in the background, at low
//! priority, with its answers kept on disk to download (what the demo wanted
//! Celery for).
//!
//! `POST /collections/{name}/jobs` takes the queries (JSON `vectors` within
//! the body limit, or a `.npy` / raw float32 upload streamed to disk within
//! `--job-body-limit`), checks them as a batch search checks its vectors, and
//! answers 202 once the job is on disk. One worker thread runs the jobs in
//! order on a pool of `--job-threads` threads at nice 19, so interactive
//! searches keep the cores they need; each query is the collection search
//! `/search/batch` runs, so the answers are the same for the same state.
//!
//! **On disk** (`<data>/.jobs/<id>/`): `job.json` (the request and its state,
//! replaced atomically), `queries` (the upload as sent, its rows from
//! `data_offset` on; removed once the job is done), `ids.i64` and
//! `distances.f32` (the answers, `k` a row,
//! little-endian, a missing answer −1 / +inf, as Faiss pads). A job appears
//! whole: it is written in `.incoming-<id>` and renamed. Every second the
//! worker syncs the answers written so far and then records how many queries
//! are done (a checkpoint); a restart resumes a queued or running job from
//! its checkpoint (`resumed` counts those). Finished jobs stay
//! `--job-retention-hours`, then are removed.
//!
//! **Who sees a job**: with API keys, the key that submitted it and admin
//! keys; without keys, everyone. Another key gets 404, as for a job that
//! does not exist.

use crate::auth::Caller;
use crate::binary;
use crate::error::ApiError;
use crate::extract::ValidJson;
use crate::models::{ErrorResponse, FieldError, LocItem, SearchOptions, ValidationErrorResponse};
use crate::state::{AppState, ServerConfig};
use crate::validate::{FromBody, body_object, required, unknown_fields};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use futures_util::StreamExt;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};
use utoipa::ToSchema;
use vectorwise_index::plan::SearchRequest;
use vectorwise_store::Store;

/// The folder of a data directory that holds the jobs (a dot folder: never a
/// collection's name).
pub(crate) const JOBS_DIR: &str = ".jobs";

/// The record's format.
const FORMAT: u32 = 1;

/// How often the worker makes its progress durable.
const CHECKPOINT: Duration = Duration::from_secs(1);

/// How often finished jobs past their retention are looked for.
const SWEEP: Duration = Duration::from_secs(10);

/// Queries searched between two looks at the cancel flag.
const CHUNK: usize = 128;

/// What the operator bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct JobLimits {
    /// Jobs queued or running at once; past it, 503 (`--max-jobs`).
    pub max_unfinished: usize,
    /// Queries in one job (`--max-job-queries`).
    pub max_queries: usize,
    /// Largest binary upload (`--job-body-limit`); JSON bodies keep `--body-limit`.
    pub body_limit_bytes: u64,
    /// Threads the jobs search on, at nice 19 (`--job-threads`).
    pub threads: usize,
    /// How long a finished job and its answers are kept (`--job-retention-hours`).
    pub retention: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            max_unfinished: 16,
            max_queries: 1_000_000,
            body_limit_bytes: 1 << 30,
            threads: 1,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

// ---- the record ---------------------------------------------------------------

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    fn finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// How hard a job searches, resolved at submission (the server's default
/// applied), so that a restart with other defaults does not change it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSearch {
    /// A profile's name.
    #[schema(value_type = String)]
    Profile(vectorwise_index::Profile),
    RecallTarget(f64),
    EfSearch(usize),
}

impl From<SearchRequest> for JobSearch {
    fn from(r: SearchRequest) -> Self {
        match r {
            SearchRequest::Profile(p) => JobSearch::Profile(p),
            SearchRequest::RecallTarget(t) => JobSearch::RecallTarget(t),
            SearchRequest::EfSearch(ef) => JobSearch::EfSearch(ef),
        }
    }
}

impl From<JobSearch> for SearchRequest {
    fn from(r: JobSearch) -> Self {
        match r {
            JobSearch::Profile(p) => SearchRequest::Profile(p),
            JobSearch::RecallTarget(t) => SearchRequest::RecallTarget(t),
            JobSearch::EfSearch(ef) => SearchRequest::EfSearch(ef),
        }
    }
}

/// `job.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: u32,
    id: String,
    collection: String,
    dimension: usize,
    queries: usize,
    k: usize,
    search: JobSearch,
    /// The filter as the client sent it (parsed again when the job runs).
    filter: Option<Value>,
    /// The submitting key's name; `None` when the server has no keys.
    owner: Option<String>,
    /// Where the rows start in `queries`.
    data_offset: u64,
    state: JobState,
    /// Queries answered as of the last checkpoint.
    done: usize,
    error: Option<String>,
    created: String,
    /// Unix microseconds of `created` (the order jobs run and are listed in).
    created_micros: u64,
    started: Option<String>,
    finished: Option<String>,
    finished_secs: Option<u64>,
    /// Times a restart resumed it.
    resumed: u32,
}

/// A job as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobOut {
    pub id: String,
    pub collection: String,
    pub state: JobState,
    /// Queries in the job.
    pub queries: usize,
    /// Queries answered so far.
    pub done: usize,
    #[schema(minimum = 1)]
    pub k: usize,
    /// How hard it searches: `{"profile": "balanced"}`, `{"recall_target": 0.99}` or `{"ef_search": 64}`.
    pub search: JobSearch,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// RFC 3339, UTC.
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times a server restart resumed it from its last checkpoint.
    pub resumed: u32,
    /// Where its answers are, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<JobResults>,
}

/// The downloads of a finished job.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobResults {
    /// `.npy` of int64, shape (queries, k); −1 where a query has fewer than k answers.
    pub ids: String,
    /// `.npy` of float32, shape (queries, k); +inf where a query has fewer than k answers.
    pub distances: String,
    /// JSON lines, one `{"hits": [{"id", "distance"}]}` a query, in order.
    pub jsonl: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Oldest first.
    pub jobs: Vec<JobOut>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobDeleted {
    pub deleted: bool,
    /// What it was when deleted (a queued or running job is cancelled).
    pub state: JobState,
}

// ---- the runner -----------------------------------------------------------------

/// The jobs of a data directory and the worker that runs them.
#[derive(Clone, Debug)]
pub(crate) struct Jobs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    store: Weak<Store>,
    limits: JobLimits,
    table: Mutex<Table>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Table {
    jobs: BTreeMap<String, Entry>,
    queue: VecDeque<String>,
    /// Submissions whose upload is in progress (see [`Jobs::reserve`]).
    uploading: usize,
    /// When finished jobs past their retention were last removed.
    swept: Option<Instant>,
}

/// A submission's place among the `--max-jobs` (see [`Jobs::reserve`]).
struct Reservation(Arc<Shared>);

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.table.lock().uploading -= 1;
    }
}

#[derive(Debug)]
struct Entry {
    record: Record,
    /// Queries answered, ahead of the last checkpoint while it runs.
    progress: Arc<AtomicUsize>,
    cancel: Arc<AtomicBool>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_text() -> String {
    vectorwise_store::snapshot::rfc3339(now_secs())
}

fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn sync_dir(dir: &FsPath) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `record` to `dir/job.json` atomically (a synced temporary renamed over it).
fn persist(dir: &FsPath, record: &Record) -> std::io::Result<()> {
    let tmp = dir.join("job.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("job.json"))?;
    sync_dir(dir);
    Ok(())
}

impl Jobs {
    /// The jobs of `store`'s data directory: leftovers of interrupted
    /// submissions and deletions removed, expired jobs removed, queued and
    /// running ones queued again (oldest first); the worker started.
    pub(crate) fn open(store: &Arc<Store>, limits: JobLimits) -> std::io::Result<Jobs> {
        let dir = store.dir().join(JOBS_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut table = Table::default();
        let mut resumable = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".incoming-") || name.starts_with(".deleting-") {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !valid_id(&name) {
                continue;
            }
            let record = std::fs::read(path.join("job.json"))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
                .and_then(|r| if r.format == FORMAT && r.id == name { Ok(r) } else { Err("not a job record of this version".into()) });
            let mut record = match record {
                Ok(r) => r,
                Err(error) => {
                    tracing::error!(job = %name, %error, path = %path.display(), "a job's record cannot be read: left as it is");
                    continue;
                }
            };
            if record.state.finished() {
                if expired(&record, limits.retention) {
                    let _ = remove_job_dir(&dir, &name);
                    continue;
                }
            } else {
                if record.state == JobState::Running || record.done > 0 {
                    record.resumed += 1;
                }
                record.state = JobState::Queued;
                if let Err(error) = persist(&path, &record) {
                    tracing::error!(job = %name, %error, "cannot record a resumed job");
                }
                resumable.push((record.created_micros, name.clone()));
                tracing::info!(job = %name, done = record.done, queries = record.queries, "job resumed");
            }
            let progress = Arc::new(AtomicUsize::new(record.done));
            table.jobs.insert(name, Entry { record, progress, cancel: Arc::default() });
        }
        resumable.sort();
        table.queue = resumable.into_iter().map(|(_, id)| id).collect();
        let shared = Arc::new(Shared { dir, store: Arc::downgrade(store), limits, table: Mutex::new(table), wake: Condvar::new() });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new().name("jobs".into()).spawn(move || work(worker))?;
        Ok(Jobs { shared })
    }

    fn visible(caller: &Caller, record: &Record) -> bool {
        caller.admin || record.owner.as_deref() == caller.key.as_deref()
    }

    /// The job `id` of `collection`, if `caller` may see it.
    pub(crate) fn get(&self, caller: &Caller, collection: &str, id: &str) -> Result<JobOut, ApiError> {
        let table = self.shared.table.lock();
        let entry = table.jobs.get(id).filter(|e| e.record.collection == collection && Self::visible(caller, &e.record));
        entry.map(out).ok_or(ApiError::JobNotFound)
    }

    /// The jobs of `collection` `caller` may see, oldest first.
    pub(crate) fn list(&self, caller: &Caller, collection: &str) -> Vec<JobOut> {
        let table = self.shared.table.lock();
        let mut jobs: Vec<&Entry> =
            table.jobs.values().filter(|e| e.record.collection == collection && Self::visible(caller, &e.record)).collect();
        jobs.sort_by(|a, b| (a.record.created_micros, &a.record.id).cmp(&(b.record.created_micros, &b.record.id)));
        jobs.into_iter().map(out).collect()
    }

    /// Cancels (if it has not finished) and deletes a job and its files.
    pub(crate) fn delete(&self, caller: &Caller, collection: &str, id: &str) -> Result<JobState, ApiError> {
        let state = {
            let mut table = self.shared.table.lock();
            let entry = table.jobs.get(id).filter(|e| e.record.collection == collection && Self::visible(caller, &e.record));
            let Some(entry) = entry else { return Err(ApiError::JobNotFound) };
            entry.cancel.store(true, Ordering::Release);
            let state = entry.record.state;
            table.jobs.remove(id);
            table.queue.retain(|q| q != id);
            state
        };
        remove_job_dir(&self.shared.dir, id).map_err(|e| {
            tracing::error!(job = %id, error = %e, "cannot remove a deleted job's files");
            ApiError::Store(vectorwise_store::Error::Io { path: self.shared.dir.join(id), source: e })
        })?;
        Ok(state)
    }

    /// Deletes every job of `collection` (cancelling those that run): a
    /// collection's jobs go with it.
    pub(crate) fn drop_collection(&self, collection: &str) {
        let ids: Vec<String> = {
            let mut table = self.shared.table.lock();
            let ids: Vec<String> = table.jobs.values().filter(|e| e.record.collection == collection).map(|e| e.record.id.clone()).collect();
            for id in &ids {
                if let Some(e) = table.jobs.remove(id) {
                    e.cancel.store(true, Ordering::Release);
                }
            }
            table.queue.retain(|q| !ids.contains(q));
            ids
        };
        for id in ids {
            if let Err(error) = remove_job_dir(&self.shared.dir, &id) {
                tracing::warn!(job = %id, %error, "cannot remove a deleted collection's job");
            }
        }
    }

    /// A finished job's files, for a download: its record and folder.
    fn finished(&self, caller: &Caller, collection: &str, id: &str) -> Result<(Record, PathBuf), ApiError> {
        let table = self.shared.table.lock();
        let entry = table.jobs.get(id).filter(|e| e.record.collection == collection && Self::visible(caller, &e.record));
        let Some(entry) = entry else { return Err(ApiError::JobNotFound) };
        if entry.record.state == JobState::Failed {
            return Err(ApiError::JobFailed);
        }
        if entry.record.state != JobState::Done {
            let done = entry.progress.load(Ordering::Relaxed);
            return Err(ApiError::JobNotDone { state: entry.record.state.as_str(), done, queries: entry.record.queries });
        }
        Ok((entry.record.clone(), self.shared.dir.join(id)))
    }

    /// A place among the `--max-jobs` for a submission whose upload is in
    /// progress, or the 503; given back on drop (the job, if accepted, then
    /// holds its own place as an unfinished job).
    fn reserve(&self) -> Result<Reservation, ApiError> {
        let mut table = self.shared.table.lock();
        let unfinished = table.jobs.values().filter(|e| !e.record.state.finished()).count();
        if unfinished + table.uploading >= self.shared.limits.max_unfinished {
            return Err(ApiError::TooManyJobs { max: self.shared.limits.max_unfinished });
        }
        table.uploading += 1;
        Ok(Reservation(Arc::clone(&self.shared)))
    }

    /// A folder for a new job's files, named for it (renamed into place by [`Jobs::add`]).
    fn incoming(&self) -> std::io::Result<(String, PathBuf)> {
        let id = format!("{:016x}", rand::random::<u64>());
        let path = self.shared.dir.join(format!(".incoming-{id}"));
        std::fs::create_dir(&path)?;
        Ok((id, path))
    }

    /// Makes the job in `incoming` (its queries written there) a queued job.
    fn add(&self, incoming: &FsPath, record: Record) -> Result<JobOut, ApiError> {
        let io = |e: std::io::Error| ApiError::from(vectorwise_store::Error::io(incoming, e));
        persist(incoming, &record).map_err(io)?;
        let mut table = self.shared.table.lock();
        // The caller holds a reservation, counted in `uploading`.
        if table.jobs.values().filter(|e| !e.record.state.finished()).count() + table.uploading > self.shared.limits.max_unfinished {
            drop(table);
            let _ = std::fs::remove_dir_all(incoming);
            return Err(ApiError::TooManyJobs { max: self.shared.limits.max_unfinished });
        }
        std::fs::rename(incoming, self.shared.dir.join(&record.id)).map_err(io)?;
        sync_dir(&self.shared.dir);
        let id = record.id.clone();
        let entry = Entry { progress: Arc::new(AtomicUsize::new(0)), cancel: Arc::default(), record };
        let shown = out(&entry);
        table.jobs.insert(id.clone(), entry);
        table.queue.push_back(id);
        self.shared.wake.notify_all();
        Ok(shown)
    }
}

fn expired(record: &Record, retention: Duration) -> bool {
    record.finished_secs.is_some_and(|f| now_secs().saturating_sub(f) > retention.as_secs())
}

/// Renames a job's folder out of the way (atomic: it is gone for a restart
/// at once), then removes it.
fn remove_job_dir(dir: &FsPath, id: &str) -> std::io::Result<()> {
    let gone = dir.join(format!(".deleting-{id}"));
    match std::fs::rename(dir.join(id), &gone) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir);
    std::fs::remove_dir_all(&gone)
}

fn out(entry: &Entry) -> JobOut {
    let r = &entry.record;
    let base = format!("/collections/{}/jobs/{}", r.collection, r.id);
    JobOut {
        id: r.id.clone(),
        collection: r.collection.clone(),
        state: r.state,
        queries: r.queries,
        done: if r.state == JobState::Done { r.queries } else { entry.progress.load(Ordering::Relaxed) },
        k: r.k,
        search: r.search,
        filter: r.filter.clone(),
        created: r.created.clone(),
        started: r.started.clone(),
        finished: r.finished.clone(),
        error: r.error.clone(),
        resumed: r.resumed,
        results: (r.state == JobState::Done).then(|| JobResults {
            ids: format!("{base}/ids.npy"),
            distances: format!("{base}/distances.npy"),
            jsonl: format!("{base}/results.jsonl"),
        }),
    }
}

/// A rayon pool of `threads` threads named `name-i`, each at `nice`
/// (Linux: per thread; best effort), for background work the searches
/// must not wait for: the jobs' searches, a live calibration (`learn.rs`).
pub(crate) fn niced_pool(name: &'static str, threads: usize, nice: i32) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    background_pool(name, threads, move || {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
    })
}

/// A rayon pool of `threads` threads named `name-i`, each calling `lower`
/// (which lowers its own priority) when it starts.
pub(crate) fn background_pool(
    name: &'static str,
    threads: usize,
    lower: impl Fn() + Send + Sync + 'static,
) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(move |_| lower())
        .build()
}

/// The worker: runs queued jobs one at a time, oldest first; removes
/// expired ones; ends when the store is gone.
fn work(shared: Arc<Shared>) {
    // Nice 19: below everything else the server does.
    let pool = match niced_pool("job-search", shared.limits.threads.max(1), 19) {
        Ok(pool) => pool,
        Err(error) => {
            tracing::error!(%error, "cannot start the jobs' threads: jobs stay queued");
            return;
        }
    };
    loop {
        let id = {
            let mut table = shared.table.lock();
            loop {
                if shared.store.strong_count() == 0 {
                    return;
                }
                // Every 10 s, busy or idle: finished jobs past their retention go.
                if table.swept.is_none_or(|t| t.elapsed() >= SWEEP) {
                    table.swept = Some(Instant::now());
                    let expired: Vec<String> = table
                        .jobs
                        .values()
                        .filter(|e| e.record.state.finished() && expired(&e.record, shared.limits.retention))
                        .map(|e| e.record.id.clone())
                        .collect();
                    for id in expired {
                        table.jobs.remove(&id);
                        if let Err(error) = remove_job_dir(&shared.dir, &id) {
                            tracing::warn!(job = %id, %error, "cannot remove an expired job");
                        }
                    }
                }
                if let Some(id) = table.queue.pop_front() {
                    break id;
                }
                shared.wake.wait_for(&mut table, SWEEP);
            }
        };
        let Some(store) = shared.store.upgrade() else { return };
        run(&shared, &store, &pool, &id);
    }
}

/// How a run ended short of done.
enum Stop {
    Cancelled,
    Failed(String),
}

/// Runs job `id` from its checkpoint to the end (or a cancel, or a failure)
/// and records the outcome.
fn run(shared: &Shared, store: &Arc<Store>, pool: &rayon::ThreadPool, id: &str) {
    let (mut record, progress, cancel) = {
        let mut table = shared.table.lock();
        let Some(entry) = table.jobs.get_mut(id) else { return };
        entry.record.state = JobState::Running;
        entry.record.started.get_or_insert_with(now_text);
        (entry.record.clone(), Arc::clone(&entry.progress), Arc::clone(&entry.cancel))
    };
    let dir = shared.dir.join(id);
    if cancel.load(Ordering::Acquire) {
        return;
    }
    if let Err(error) = persist(&dir, &record) {
        tracing::error!(job = %id, %error, "cannot record a job's start");
    }
    tracing::info!(job = %id, collection = %record.collection, queries = record.queries, from = record.done, "job running");
    let started = Instant::now();
    let ended = execute(store, pool, &dir, &mut record, &progress, &cancel);
    let mut table = shared.table.lock();
    let Some(entry) = table.jobs.get_mut(id) else { return };
    match ended {
        Err(Stop::Cancelled) => return,
        Ok(()) => {
            entry.record.state = JobState::Done;
            entry.record.done = record.queries;
            tracing::info!(job = %id, seconds = started.elapsed().as_secs_f64(), "job done");
        }
        Err(Stop::Failed(why)) => {
            entry.record.state = JobState::Failed;
            // The queries answered when it failed (their answers are not kept).
            entry.record.done = progress.load(Ordering::Relaxed);
            entry.record.error = Some(why);
        }
    }
    entry.record.finished = Some(now_text());
    entry.record.finished_secs = Some(now_secs());
    entry.progress.store(entry.record.done, Ordering::Relaxed);
    // Its end recorded first: a crash between the two leaves a finished
    // job with files it no longer needs, never a running one without them.
    if let Err(error) = persist(&dir, &entry.record) {
        tracing::error!(job = %id, %error, "cannot record a job's end");
        return;
    }
    // The upload is not needed any more; a failed job's answers neither.
    let _ = std::fs::remove_file(dir.join("queries"));
    if entry.record.state == JobState::Failed {
        let _ = std::fs::remove_file(dir.join("ids.i64"));
        let _ = std::fs::remove_file(dir.join("distances.f32"));
    }
}

/// Searches the job's queries from `record.done` on, writing the answers and
/// a checkpoint every [`CHECKPOINT`].
fn execute(
    store: &Arc<Store>,
    pool: &rayon::ThreadPool,
    dir: &FsPath,
    record: &mut Record,
    progress: &AtomicUsize,
    cancel: &AtomicBool,
) -> Result<(), Stop> {
    let internal = |what: &str, error: &dyn std::fmt::Display| {
        tracing::error!(job = %record.id, %error, "job failed: {what}");
        Stop::Failed(format!("{what}; see the server log"))
    };
    let gone = || Stop::Failed(format!("the collection '{}' no longer exists", record.collection));
    let c = store.get(&record.collection).map_err(|_| gone())?;
    if c.dimension() != record.dimension {
        return Err(Stop::Failed(format!(
            "the collection '{}' was created again with dimension {} (the job's queries have {})",
            record.collection,
            c.dimension(),
            record.dimension
        )));
    }
    let filter = match &record.filter {
        None => None,
        Some(v) => {
            let mut errors = Vec::new();
            match crate::filter::parse(v, &[LocItem::from("filter")], &mut errors) {
                Some(f) if errors.is_empty() => f.map(Arc::new),
                _ => return Err(Stop::Failed("the job's filter is no longer valid".into())),
            }
        }
    };
    let opts = vectorwise_store::SearchOptions {
        k: record.k,
        request: record.search.into(),
        with_payload: false,
        with_vector: false,
        payload_budget: 0,
        filter,
    };
    let open = |name: &str, write: bool| {
        std::fs::File::options().read(true).write(write).create(write).truncate(false).open(dir.join(name))
    };
    let queries = open("queries", false).map_err(|e| internal("cannot read its queries", &e))?;
    let ids_file = open("ids.i64", true).map_err(|e| internal("cannot write its answers", &e))?;
    let dist_file = open("distances.f32", true).map_err(|e| internal("cannot write its answers", &e))?;
    let (n, k, dim) = (record.queries, record.k, record.dimension);
    let mut at = record.done.min(n);
    let mut row = vec![0u8; CHUNK * dim * 4];
    let mut last = Instant::now();
    while at < n {
        if cancel.load(Ordering::Acquire) {
            return Err(Stop::Cancelled);
        }
        let rows = CHUNK.min(n - at);
        let bytes = &mut row[..rows * dim * 4];
        queries
            .read_exact_at(bytes, record.data_offset + (at * dim * 4) as u64)
            .map_err(|e| internal("cannot read its queries", &e))?;
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let rows_of: Vec<Vec<f32>> = values.chunks_exact(dim).map(<[f32]>::to_vec).collect();
        // One filter evaluation per sealed segment for the chunk, as a batch search does.
        let found = match pool.install(|| c.search_many(&rows_of, &opts)) {
            Ok(found) => found,
            Err(_) if store.get(&record.collection).is_err() => return Err(gone()),
            Err(e) => return Err(internal("a search failed", &e)),
        };
        let mut ids = Vec::with_capacity(rows * k * 8);
        let mut distances = Vec::with_capacity(rows * k * 4);
        for (i, outcome) in found.into_iter().enumerate() {
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) if store.get(&record.collection).is_err() => {
                    tracing::info!(job = %record.id, error = %e, "job stopped: its collection was deleted");
                    return Err(gone());
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    return Err(if e.status().is_client_error() {
                        // A query the metric refuses (e.g. a zero vector under cosine).
                        Stop::Failed(format!("query {}: {}", at + i, e))
                    } else {
                        internal("a search failed", &e)
                    });
                }
            };
            for j in 0..k {
                let (id, d) = match outcome.hits.get(j) {
                    None => (-1i64, f32::INFINITY),
                    Some(vectorwise_store::Found { id: vectorwise_store::PointId::Num(n), distance, .. }) => (*n as i64, *distance),
                    Some(h) => {
                        let why = format!(
                            "query {}: the answer holds the point {}, whose id is a UUID; job answers carry integer ids only (search with POST /collections/{}/search/batch)",
                            at + i, h.id, record.collection
                        );
                        return Err(Stop::Failed(why));
                    }
                };
                ids.extend_from_slice(&id.to_le_bytes());
                distances.extend_from_slice(&d.to_le_bytes());
            }
        }
        ids_file.write_all_at(&ids, (at * k * 8) as u64).map_err(|e| internal("cannot write its answers", &e))?;
        dist_file.write_all_at(&distances, (at * k * 4) as u64).map_err(|e| internal("cannot write its answers", &e))?;
        at += rows;
        progress.store(at, Ordering::Relaxed);
        if at == n || last.elapsed() >= CHECKPOINT {
            ids_file.sync_data().map_err(|e| internal("cannot write its answers", &e))?;
            dist_file.sync_data().map_err(|e| internal("cannot write its answers", &e))?;
            if at < n {
                record.done = at;
                if cancel.load(Ordering::Acquire) {
                    return Err(Stop::Cancelled);
                }
                persist(dir, record).map_err(|e| internal("cannot record its progress", &e))?;
            }
            last = Instant::now();
        }
    }
    Ok(())
}

// ---- the request ----------------------------------------------------------------

/// The fields a job takes besides its vectors (JSON body or query string).
const OPTION_FIELDS: &[&str] = &["k", "profile", "recall_target", "ef_search", "filter"];
const JSON_FIELDS: &[&str] = &["vectors", "k", "profile", "recall_target", "ef_search", "filter"];

/// `POST /collections/{name}/jobs` with a JSON body (a binary upload takes
/// the same fields, but `vectors`, from the query string).
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct JobRequest {
    /// 1 to `--max-job-queries` vectors of the collection's dimension.
    pub vectors: Vec<Vec<f32>>,
    /// Answers per query, 1 to `--max-k`.
    #[schema(minimum = 1)]
    pub k: usize,
    pub profile: Option<crate::models::SearchProfile>,
    pub recall_target: Option<f64>,
    pub ef_search: Option<usize>,
    /// One filter for every query, as on `/collections/{name}/search`.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

/// What a job asks besides its vectors.
struct JobOptions {
    k: usize,
    search: SearchOptions,
    filter: Option<Value>,
}

fn job_options(map: &Map<String, Value>, config: &ServerConfig, errors: &mut Vec<FieldError>) -> Option<JobOptions> {
    let k = crate::validate::parse_k(map, config, errors);
    let search = crate::validate::search_options(map, errors);
    let filter = match map.get("filter") {
        None | Some(Value::Null) => Some(None),
        Some(v) => crate::filter::parse(v, &[LocItem::from("body"), LocItem::from("filter")], errors).map(|_| Some(v.clone())),
    };
    Some(JobOptions { k: k?, search: search?, filter: filter? })
}

impl FromBody for JobRequest {
    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let at = [LocItem::from("body"), LocItem::from("vectors")];
        let vectors = required(map, "vectors", &mut errors)
            .and_then(|v| crate::validate::parse_queries(v, &at, config.jobs.max_queries, &mut errors));
        let o = job_options(map, config, &mut errors);
        unknown_fields(map, JSON_FIELDS, &mut errors);
        let (Some(vectors), Some(o), true) = (vectors, o, errors.is_empty()) else { return Err(errors) };
        Ok(JobRequest {
            vectors,
            k: o.k,
            profile: o.search.profile,
            recall_target: o.search.recall_target,
            ef_search: o.search.ef_search,
            filter: o.filter,
        })
    }
}

// ---- the routes -----------------------------------------------------------------

pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/collections/{name}/jobs", post(submit).get(list))
        .route("/collections/{name}/jobs/{id}", get(info).delete(remove))
        .route("/collections/{name}/jobs/{id}/{file}", get(download))
}

fn jobs(state: &AppState) -> Result<Jobs, ApiError> {
    state.jobs().ok_or(ApiError::NotFound)
}

/// Streams `request`'s body into `path`, at most `limit` bytes (413 past
/// it, before any byte when the declared length says so); returns its
/// first bytes (up to [`binary::UPLOAD_HEAD`]) and its length.
async fn upload(request: Request, path: PathBuf, limit: u64) -> Result<(Vec<u8>, u64), ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit: usize::try_from(limit).unwrap_or(usize::MAX) };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| ApiError::from(vectorwise_store::Error::io(&path, e));
    // tokio's file: its writes run on the blocking pool, so a disk slow to
    // take them (writeback throttling) never stalls an async worker.
    let file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut stream = request.into_body().into_data_stream();
    let (mut head, mut len) = (Vec::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ApiError::BodyRead)?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(too_large());
        }
        if head.len() < binary::UPLOAD_HEAD {
            let take = (binary::UPLOAD_HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.into_inner().sync_all().await.map_err(io)?;
    Ok((head, len))
}

/// Reads `request`'s body and drops it (at most `limit` bytes: 413 past it).
async fn drain(request: Request, limit: u64) -> Result<(), ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit: usize::try_from(limit).unwrap_or(usize::MAX) };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut stream = request.into_body().into_data_stream();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        len += chunk.map_err(ApiError::BodyRead)?.len() as u64;
        if len > limit {
            return Err(too_large());
        }
    }
    Ok(())
}

/// Checks an uploaded file's values, reading it in pieces of whole rows:
/// every value finite, and every row a query the collection's metric takes
/// (not the zero vector under `cosine`, not too large), as a batch search
/// checks its queries, so that a job never fails on a query it accepted.
fn check_values(path: &FsPath, start: u64, rows: usize, dim: usize, metric: vectorwise_index::Metric) -> Result<(), ApiError> {
    let io = |e: std::io::Error| ApiError::from(vectorwise_store::Error::io(path, e));
    let file = std::fs::File::open(path).map_err(io)?;
    let per = ((4 << 20) / (dim * 4)).max(1);
    let mut buf = vec![0u8; per.min(rows) * dim * 4];
    let mut errors = Vec::new();
    let mut row = 0;
    while row < rows && errors.len() < crate::validate::MAX_ELEMENT_ERRORS {
        let n = per.min(rows - row);
        let bytes = &mut buf[..n * dim * 4];
        file.read_exact_at(bytes, start + (row * dim * 4) as u64).map_err(io)?;
        binary::non_finite(bytes, row * dim, dim, &["body".into()], &mut errors);
        if errors.is_empty() {
            let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            for (i, q) in values.chunks_exact(dim).enumerate() {
                check_query(metric, q, row + i, |r| (vec![LocItem::from("body"), LocItem::Index(r)], format!("row {r}")))?;
            }
        }
        row += n;
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(errors)) }
}

/// A query `metric` refuses (the zero vector under `cosine`, values too
/// large), as the located 422 a batch search gives for it.
fn check_query(
    metric: vectorwise_index::Metric,
    q: &[f32],
    row: usize,
    at: impl Fn(usize) -> (Vec<LocItem>, String),
) -> Result<(), ApiError> {
    match metric.prepare_point(q, row) {
        Ok(_) => Ok(()),
        Err(e) => Err(crate::routes::located(ApiError::Engine(e), at)),
    }
}

/// Submits a batch job: the queries are on disk when this answers 202.
#[utoipa::path(post, path = "/collections/{name}/jobs", tag = "jobs", operation_id = "submit_job",
    request_body(description = "JSON `{\"vectors\", \"k\", ...}` within the body limit, or a float32 `.npy` (`application/x-npy`, shape (n, dimension)) or raw little-endian float32 rows (`application/octet-stream`) within `--job-body-limit`, with `k`, `profile`, `recall_target`, `ef_search`, `filter` in the query string",
        content((JobRequest = "application/json"), (String = "application/x-npy"), (String = "application/octet-stream"))),
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 202, description = "Queued", body = JobOut,
            headers(("location" = String, description = "The job's path: /collections/{name}/jobs/{id}"))),
        (status = 400, description = "The vectors' length is not the collection's dimension, a raw body is not whole rows of it, or the body could not be read", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 413, description = "The body is over its limit", body = ErrorResponse),
        (status = 422, description = "Invalid body or query string", body = ValidationErrorResponse),
        (status = 503, description = "Too many jobs queued, running or being uploaded (`--max-jobs`)", body = ErrorResponse,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The disk is full; nothing was kept", body = ErrorResponse),
    ))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let jobs = jobs(&state)?;
    let c = state.store().ok_or(ApiError::NotFound)?.get(&name)?;
    let dim = c.dimension();
    let limits = state.config().jobs.clone();
    // Uploads in progress count against the bound too, so that at most
    // --max-jobs uploads (each within --job-body-limit) fill the disk at once.
    let _place = jobs.reserve()?;
    let maker = jobs.clone();
    let (id, incoming) = tokio::task::spawn_blocking(move || maker.incoming())
        .await?
        .map_err(|e| ApiError::from(vectorwise_store::Error::io(&jobs.shared.dir, e)))?;
    // Whatever happens below, a refused submission leaves no folder.
    let guard = RemoveOnDrop(Some(incoming.clone()));
    let queries_path = incoming.join("queries");
    let (options, data_offset, rows) = match binary::encoding(request.headers()) {
        Some(encoding) => {
            let (fields, mut errors) = binary::query_fields(request.uri(), OPTION_FIELDS);
            let mut option_errors = Vec::new();
            let options = job_options(&fields, state.config(), &mut option_errors);
            unknown_fields(&fields, OPTION_FIELDS, &mut option_errors);
            errors.extend(option_errors.into_iter().map(binary::in_query));
            // A bad query string is refused without keeping the body: it is
            // read and dropped (a client still sending would otherwise lose
            // the answer to a reset connection), never written to disk.
            if !errors.is_empty() {
                drain(request, limits.body_limit_bytes).await?;
                return Err(ApiError::Validation(errors));
            }
            let (head, len) = upload(request, queries_path.clone(), limits.body_limit_bytes).await?;
            let (start, rows) = match binary::upload_rows(&head, len, encoding, dim, limits.max_queries) {
                Ok(found) => found,
                Err(ApiError::Validation(mut body_errors)) => {
                    body_errors.extend(errors);
                    return Err(ApiError::Validation(body_errors));
                }
                // As with JSON: what is invalid (422) before what does not fit (400).
                Err(e) if errors.is_empty() => return Err(e),
                Err(_) => return Err(ApiError::Validation(errors)),
            };
            if !errors.is_empty() {
                return Err(ApiError::Validation(errors));
            }
            let path = queries_path.clone();
            let metric = c.metric();
            tokio::task::spawn_blocking(move || check_values(&path, start, rows, dim, metric)).await??;
            let options = options.ok_or_else(|| ApiError::Validation(Vec::new()))?;
            (options, start, rows)
        }
        None => {
            // Every field of a JSON submission is in its body.
            let (fields, _) = binary::query_fields(request.uri(), &[]);
            let mut errors = Vec::new();
            unknown_fields(&fields, &[], &mut errors);
            if !errors.is_empty() {
                return Err(ApiError::Validation(errors.into_iter().map(binary::in_query).collect()));
            }
            let ValidJson(req) = ValidJson::<JobRequest>::from_request(request, &state).await?;
            if let Some(i) = req.vectors.iter().position(|v| v.len() != dim) {
                return Err(ApiError::VectorDimension { field: format!("vectors[{i}]"), expected: dim, actual: req.vectors[i].len() });
            }
            for (i, q) in req.vectors.iter().enumerate() {
                check_query(c.metric(), q, i, |r| {
                    (vec![LocItem::from("body"), LocItem::from("vectors"), LocItem::Index(r)], format!("vectors[{r}]"))
                })?;
            }
            let rows = req.vectors.len();
            let path = queries_path.clone();
            let vectors = req.vectors;
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                for v in &vectors {
                    for x in v {
                        f.write_all(&x.to_le_bytes())?;
                    }
                }
                f.into_inner().map_err(|e| e.into_error())?.sync_all()
            })
            .await?
            .map_err(|e| ApiError::from(vectorwise_store::Error::io(&queries_path, e)))?;
            let search = SearchOptions { profile: req.profile, recall_target: req.recall_target, ef_search: req.ef_search };
            (JobOptions { k: req.k, search, filter: req.filter }, 0, rows)
        }
    };
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let record = Record {
        format: FORMAT,
        id: id.clone(),
        collection: name.clone(),
        dimension: dim,
        queries: rows,
        k: options.k,
        search: crate::resolve::request(state.config(), &options.search).into(),
        filter: options.filter,
        owner: caller.key.as_deref().map(str::to_owned),
        data_offset,
        state: JobState::Queued,
        done: 0,
        error: None,
        created: vectorwise_store::snapshot::rfc3339(now.as_secs()),
        created_micros: now.as_micros() as u64,
        started: None,
        finished: None,
        finished_secs: None,
        resumed: 0,
    };
    let shown = tokio::task::spawn_blocking(move || {
        let shown = jobs.add(&incoming, record);
        (shown, incoming)
    })
    .await?
    .0?;
    // The folder was renamed into place: the guard finds nothing to remove.
    drop(guard);
    let location = format!("/collections/{name}/jobs/{id}");
    let mut response = (StatusCode::ACCEPTED, Json(shown)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Removes a folder when dropped (unless forgotten).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// The collection's jobs (those the caller's key may see).
#[utoipa::path(get, path = "/collections/{name}/jobs", tag = "jobs", operation_id = "list_jobs",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Its jobs, oldest first", body = JobList),
        (status = 404, description = "No such collection", body = ErrorResponse)))]
pub(crate) async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(name): Path<String>) -> Result<Json<JobList>, ApiError> {
    let jobs = jobs(&state)?;
    let listed = jobs.list(&caller, &name);
    if listed.is_empty() {
        // A collection that is not there (and left no job): 404.
        state.store().ok_or(ApiError::NotFound)?.get(&name)?;
    }
    Ok(Json(JobList { jobs: listed }))
}

/// A job: its state and progress, and where its answers are once done.
#[utoipa::path(get, path = "/collections/{name}/jobs/{id}", tag = "jobs", operation_id = "get_job",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = JobOut),
        (status = 404, description = "No such job", body = ErrorResponse)))]
pub(crate) async fn info(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path((name, id)): Path<(String, String)>) -> Result<Json<JobOut>, ApiError> {
    Ok(Json(jobs(&state)?.get(&caller, &name, &id)?))
}

/// Deletes a job: a queued or running one is cancelled; its files and answers are removed.
#[utoipa::path(delete, path = "/collections/{name}/jobs/{id}", tag = "jobs", operation_id = "delete_job",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "Deleted", body = JobDeleted),
        (status = 404, description = "No such job", body = ErrorResponse)))]
pub(crate) async fn remove(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path((name, id)): Path<(String, String)>) -> Result<Json<JobDeleted>, ApiError> {
    let jobs = jobs(&state)?;
    let state = tokio::task::spawn_blocking(move || jobs.delete(&caller, &name, &id)).await??;
    Ok(Json(JobDeleted { deleted: true, state }))
}

/// Bytes read per piece of a download.
const PIECE: usize = 256 << 10;

/// A finished job's answers: `ids.npy`, `distances.npy` or `results.jsonl`.
#[utoipa::path(get, path = "/collections/{name}/jobs/{id}/{file}", tag = "jobs", operation_id = "download_job_results",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Job id"),
        ("file" = String, Path, description = "`ids.npy`, `distances.npy` or `results.jsonl`")),
    responses(
        (status = 200, description = "The answers, streamed: `.npy` (int64 ids or float32 distances, shape (queries, k)) or JSON lines",
            content((String = "application/x-npy"), (String = "application/jsonl"))),
        (status = 404, description = "No such job or file", body = ErrorResponse),
        (status = 409, description = "The job has not finished, or it failed (then it has no answers)", body = ErrorResponse)))]
pub(crate) async fn download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, id, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let jobs = jobs(&state)?;
    if !matches!(file.as_str(), "ids.npy" | "distances.npy" | "results.jsonl") {
        return Err(ApiError::NotFound);
    }
    let (record, dir) = jobs.finished(&caller, &name, &id)?;
    let (n, k) = (record.queries, record.k);
    let io = |path: PathBuf| move |e: std::io::Error| ApiError::from(vectorwise_store::Error::io(&path, e));
    let (content_type, length, body) = match file.as_str() {
        "ids.npy" | "distances.npy" => {
            let (stored, descr, width) = if file == "ids.npy" { ("ids.i64", "<i8", 8) } else { ("distances.f32", "<f4", 4) };
            let path = dir.join(stored);
            let f = tokio::task::spawn_blocking({
                let path = path.clone();
                move || std::fs::File::open(&path)
            })
            .await?
            .map_err(io(path))?;
            let header = vectorwise_index::vectors::npy_header(descr, n, k);
            let data_len = (n * k * width) as u64;
            let length = header.len() as u64 + data_len;
            let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(header)) });
            let rest = futures_util::stream::try_unfold((f, 0u64), move |(f, at)| async move {
                if at >= data_len {
                    return Ok::<_, std::io::Error>(None);
                }
                let want = PIECE.min((data_len - at) as usize);
                let (f, chunk) = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    f.read_exact_at(&mut buf, at)?;
                    Ok::<_, std::io::Error>((f, buf))
                })
                .await
                .map_err(std::io::Error::other)??;
                Ok(Some((Bytes::from(chunk), (f, at + want as u64))))
            });
            ("application/x-npy", Some(length), Body::from_stream(first.chain(rest)))
        }
        _ => {
            let open = move |name: &str| std::fs::File::open(dir.join(name));
            let files = tokio::task::spawn_blocking(move || Ok::<_, std::io::Error>((open("ids.i64")?, open("distances.f32")?)))
                .await?
                .map_err(io(PathBuf::from(&id)))?;
            let rows_per = (PIECE / (k * 12).max(1)).max(1);
            let lines = futures_util::stream::try_unfold((files, 0usize), move |(files, at)| async move {
                if at >= n {
                    return Ok::<_, std::io::Error>(None);
                }
                let rows = rows_per.min(n - at);
                let (files, text) = tokio::task::spawn_blocking(move || {
                    let mut ids = vec![0u8; rows * k * 8];
                    let mut dists = vec![0u8; rows * k * 4];
                    files.0.read_exact_at(&mut ids, (at * k * 8) as u64)?;
                    files.1.read_exact_at(&mut dists, (at * k * 4) as u64)?;
                    Ok::<_, std::io::Error>((files, jsonl(&ids, &dists, rows, k)))
                })
                .await
                .map_err(std::io::Error::other)??;
                Ok(Some((Bytes::from(text), (files, at + rows))))
            });
            ("application/jsonl", None, Body::from_stream(lines))
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}-{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// One JSON line a query: `{"hits":[{"id":..,"distance":..},...]}`, the
/// padding left out; numbers printed as `/search/batch` prints them.
fn jsonl(ids: &[u8], dists: &[u8], rows: usize, k: usize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Hit {
        id: u64,
        distance: f32,
    }
    #[derive(Serialize)]
    struct Line {
        hits: Vec<Hit>,
    }
    let mut out = Vec::with_capacity(rows * (k * 40 + 12));
    for r in 0..rows {
        let hits = (0..k)
            .filter_map(|j| {
                let i = r * k + j;
                let id = i64::from_le_bytes(ids[i * 8..i * 8 + 8].try_into().ok()?);
                let d = f32::from_le_bytes(dists[i * 4..i * 4 + 4].try_into().ok()?);
                (id >= 0).then_some(Hit { id: id as u64, distance: d })
            })
            .collect();
        // Serialising plain numbers cannot fail.
        let _ = serde_json::to_writer(&mut out, &Line { hits });
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_are_padded_to_64_bytes_and_name_the_shape() {
        for (rows, cols) in [(1, 1), (3, 10), (1_000_000, 100)] {
            let h = vectorwise_index::vectors::npy_header("<i8", rows, cols);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
            let text = std::str::from_utf8(&h[10..]).unwrap();
            assert!(text.contains(&format!("'shape': ({rows}, {cols})")), "{text}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn jsonl_leaves_out_the_padding() {
        let ids: Vec<u8> = [5i64, 7, -1, 2, -1, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let d: Vec<u8> = [0.5f32, 1.25, f32::INFINITY, 0.0, f32::INFINITY, f32::INFINITY].iter().flat_map(|x| x.to_le_bytes()).collect();
        let text = String::from_utf8(jsonl(&ids, &d, 2, 3)).unwrap();
        assert_eq!(text, "{\"hits\":[{\"id\":5,\"distance\":0.5},{\"id\":7,\"distance\":1.25}]}\n{\"hits\":[{\"id\":2,\"distance\":0.0}]}\n");
    }

    /// An upload in progress holds a place among `--max-jobs` until its
    /// submission ends, so that uploads cannot outnumber the bound.
    #[test]
    fn uploads_in_progress_hold_a_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), vectorwise_store::SyncMode::Always).unwrap());
        let jobs = Jobs::open(&store, JobLimits { max_unfinished: 2, ..JobLimits::default() }).unwrap();
        let first = jobs.reserve().unwrap();
        let second = jobs.reserve().unwrap();
        assert!(matches!(jobs.reserve(), Err(ApiError::TooManyJobs { max: 2 })));
        drop(first);
        let third = jobs.reserve().unwrap();
        assert!(jobs.reserve().is_err());
        drop((second, third));
        assert_eq!(jobs.shared.table.lock().uploading, 0);
    }

    #[test]
    fn ids_are_16_lowercase_hex_digits() {
        assert!(valid_id("0123456789abcdef"));
        assert!(!valid_id("0123456789ABCDEF") && !valid_id("../x") && !valid_id(".incoming-0123456789abcdef"));
    }
}
