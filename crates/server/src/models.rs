//! The wire format: request and response bodies, error bodies included. Field
//! names and shapes are the demo's (FastAPI + pydantic v2) contract; the
//! OpenAPI schemas are derived from these types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `VectorWise`.
    #[schema(example = "VectorWise")]
    pub service: String,
    pub status: HealthStatus,
    /// Number of vectors in the served index; 0 while none is loaded.
    pub vectors_indexed: usize,
}

/// Service state reported by `GET /`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The index is loaded; searches are served (200).
    Healthy,
    /// The index is still being loaded or built (503).
    Loading,
    /// Loading the index failed (503).
    Unavailable,
}

/// `GET /stats` body: the demo's six fields, then extras.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    pub total_vectors: usize,
    pub dimension: usize,
    /// `HNSW` (graph + codes) or `QuantizedScan` (codes only): what `auto` searches use.
    #[schema(example = "HNSW")]
    pub index_type: String,
    pub hnsw_m: u32,
    /// Search depth of a default request at k = 10: the HNSW beam width, or
    /// the quantised scan's candidates (`rerank × k`); 0 when it is exact.
    #[serde(rename = "hnsw_efSearch")]
    pub hnsw_ef_search: usize,
    #[serde(rename = "hnsw_efConstruction")]
    pub hnsw_ef_construction: u32,
    /// `l2` (distances: squared L2), `ip` (negated inner product) or
    /// `cosine` (squared L2 between unit vectors, `2 - 2·cos`).
    #[schema(example = "cosine")]
    pub metric: String,
    /// `user` when the index was built with ids (`vectorwise build --ids`),
    /// `row` when `indices` are row numbers of the indexed vectors file.
    #[schema(example = "row")]
    pub ids: String,
    pub format_version: u32,
    pub file_size_bytes: u64,
    pub build_seconds: f64,
    pub load_seconds: f64,
    /// Distance kernels in use (`avx2+fma`, `avx512f`, `neon`, `scalar`).
    pub simd: String,
    /// Largest `k` accepted by `POST /search`.
    pub max_k: usize,
    pub index_path: String,
    /// What a request that names no profile, target or ef gets: a profile
    /// name, or `ef_search` when the operator fixed one.
    #[schema(example = "balanced")]
    pub default_profile: String,
    /// The recall table stored in the index; `null` for an index built
    /// without one (run `vectorwise calibrate --index ...`).
    #[schema(required = true)]
    pub calibration: Option<CalibrationStats>,
    /// Recall actually delivered, estimated from sampled queries re-run exactly.
    pub recall_monitor: RecallMonitorStats,
    /// The hot-query cache (every route's answers, collections' included).
    pub cache: CacheInfo,
    /// Learning the table again from live queries unlike the indexed data
    /// (`calibration.source` is then `live`).
    pub live_calibration: crate::learn::LearnStats,
}

/// The hot-query cache's state (`--cache-bytes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheInfo {
    /// The bound, bytes (0: the cache is off).
    pub max_bytes: u64,
    /// Answers held.
    pub entries: u64,
    /// Bytes held: keys, answers, headers and an estimate of each entry's overhead.
    pub bytes: u64,
    /// Searches answered from the cache.
    pub hits: u64,
    /// Searches the cache had no answer for (searched, then kept).
    pub misses: u64,
    /// Sum over the hits of the engine time each answer took when it was
    /// computed: the search time the cache saved.
    pub saved_seconds: f64,
    /// The shared tier in Redis (`--cache-url`).
    pub redis: RedisCacheInfo,
}

/// The shared cache tier's state (`--cache-url`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedisCacheInfo {
    /// Whether a Redis URL is configured (and the cache on).
    pub configured: bool,
    /// Whether a connection is up now.
    pub connected: bool,
    /// Lookups answered from Redis (after a memory miss).
    pub hits: u64,
    /// Lookups Redis had no answer for (absent, unreachable, or a value refused).
    pub misses: u64,
    /// Failed or timed-out commands and connection attempts.
    pub errors: u64,
    /// Values found that did not decode or were another key's (misses too).
    pub rejected: u64,
    /// Answers written to Redis.
    pub writes: u64,
    /// Answers kept in memory only (a key over 64 KiB or a body over 256 KiB).
    pub skipped: u64,
}

impl From<crate::cache::CacheStats> for CacheInfo {
    fn from(s: crate::cache::CacheStats) -> Self {
        CacheInfo {
            max_bytes: s.max_bytes,
            entries: s.entries,
            bytes: s.bytes,
            hits: s.hits,
            misses: s.misses,
            saved_seconds: s.saved.as_secs_f64(),
            redis: RedisCacheInfo {
                configured: s.shared.configured,
                connected: s.shared.connected,
                hits: s.shared.hits,
                misses: s.shared.misses,
                errors: s.shared.errors,
                rejected: s.shared.rejected,
                writes: s.shared.writes,
                skipped: s.shared.skipped,
            },
        }
    }
}

/// The index's calibration, as `/stats` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CalibrationStats {
    /// `leave_one_out` (indexed points as queries, each excluded from its
    /// own answer) or `given` (queries supplied at calibration).
    #[schema(example = "leave_one_out")]
    pub source: String,
    /// Calibration queries.
    pub queries: usize,
    /// Time the calibration took.
    pub seconds: f64,
    /// Each profile's setting at each calibrated k.
    pub profiles: Vec<ProfileStats>,
    /// Every measured setting.
    pub table: Vec<CalibrationPoint>,
}

/// A profile's calibrated setting for one k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileStats {
    #[schema(example = "balanced")]
    pub profile: String,
    pub k: usize,
    /// The recall@k the profile promises.
    pub recall_target: f64,
    /// `hnsw`, `scan` or `exact`.
    #[schema(example = "scan")]
    pub method: String,
    /// The setting: `ef=64`, `rerank=192`, `exact`.
    #[schema(example = "rerank=192")]
    pub setting: String,
    /// Calibrated mean recall@k of the setting.
    pub expected_recall: f64,
    /// Latency measured at calibration (one thread, in-process), when measured.
    #[schema(required = true)]
    pub latency_p50_ms: Option<f64>,
    #[schema(required = true)]
    pub latency_p95_ms: Option<f64>,
}

/// One measured setting of the calibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CalibrationPoint {
    pub k: usize,
    #[schema(example = "scan")]
    pub method: String,
    #[schema(example = "rerank=192")]
    pub setting: String,
    pub recall_mean: f64,
    /// 10th percentile of per-query recall.
    pub recall_p10: f64,
    #[schema(required = true)]
    pub latency_p50_ms: Option<f64>,
    #[schema(required = true)]
    pub latency_p95_ms: Option<f64>,
}

/// The live recall monitor's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecallMonitorStats {
    /// Share of searches re-run exactly in the background.
    pub sample_rate: f64,
    /// Most of one core the exact re-runs may use.
    pub cpu_share: f64,
    /// Queries sampled, and dropped because the backlog was full.
    pub sampled: u64,
    pub dropped: u64,
    /// Exact re-runs done.
    pub evaluated: u64,
    /// Per profile (or `recall_target`, `ef_search`): delivered recall@k.
    pub profiles: Vec<crate::monitor::MonitorEntry>,
    /// Searches since start (the served index and every collection's
    /// segments) whose query was unlike the calibration's queries, so
    /// searched more widely to keep the promised recall: a rising count says
    /// the queries have drifted from the data.
    pub widened: u64,
}

// Validated by hand (see `validate.rs`) so that every malformed body gets a
// pydantic-shaped 422; this type is the result. (A plain comment: doc
// comments become the OpenAPI description.) `deny_unknown_fields` is what
// gives the schema `additionalProperties: false` (utoipa 5 has no struct-level
// `additional_properties`); serde's derive then refuses unknown fields too,
// as the server does.
/// A k-nearest-neighbour query. At most one of `profile`, `recall_target`
/// and `ef_search` may be given (`null` counts as not given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query: `dimension` numbers (see `/stats`; the length this document
    /// states is the served index's), each finite as an f32. On a `cosine`
    /// index it is scaled to unit length inside the engine (so scaling it
    /// changes nothing, and the zero vector is refused); `l2` and `ip` take it
    /// as it is, and refuse a vector whose squared norm reaches 1e34 (422).
    pub query_vector: Vec<f32>,
    /// Number of neighbours wanted; at most `max_k` (see `/stats`).
    #[schema(minimum = 1, maximum = 100, example = 10)]
    pub k: usize,
    /// A calibrated recall promise: `low_latency` (recall@k >= 0.90),
    /// `balanced` (>= 0.95, the default) or `high_accuracy` (>= 0.99). At
    /// most one of `profile`, `recall_target` and `ef_search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<SearchProfile>,
    /// The recall@k wanted, 0 < r <= 1: the cheapest calibrated setting that
    /// reaches it; 1 means exact search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1, example = 0.97)]
    pub recall_target: Option<f64>,
    /// A fixed search depth: the HNSW beam width, or the quantised scan's
    /// candidates (re-ranked per requested neighbour: `ceil(ef_search / k)`).
    /// No recall promise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000, example = 128)]
    pub ef_search: Option<usize>,
}

// Per-request settings both search routes accept, gathered from the request's
// `profile`, `recall_target` and `ef_search` fields; parsed in one place
// (`validate::search_options`) and turned into engine parameters in one place
// (`resolve.rs`).
/// How hard to search; none set means the server's default profile.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SearchOptions {
    pub profile: Option<SearchProfile>,
    pub recall_target: Option<f64>,
    pub ef_search: Option<usize>,
}

impl SearchRequest {
    pub fn options(&self) -> SearchOptions {
        SearchOptions { profile: self.profile, recall_target: self.recall_target, ef_search: self.ef_search }
    }
}

impl SearchBatchRequest {
    pub fn options(&self) -> SearchOptions {
        SearchOptions { profile: self.profile, recall_target: self.recall_target, ef_search: self.ef_search }
    }
}

/// A named recall promise (see `/stats` for what each means on the served index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchProfile {
    LowLatency,
    Balanced,
    HighAccuracy,
}

impl From<SearchProfile> for vectorwise_index::Profile {
    fn from(p: SearchProfile) -> Self {
        match p {
            SearchProfile::LowLatency => vectorwise_index::Profile::LowLatency,
            SearchProfile::Balanced => vectorwise_index::Profile::Balanced,
            SearchProfile::HighAccuracy => vectorwise_index::Profile::HighAccuracy,
        }
    }
}

/// Many k-nearest-neighbour queries in one request, answered in order. At
/// most one of `profile`, `recall_target` and `ef_search` may be given
/// (`null` counts as not given).
// `deny_unknown_fields`: as on `SearchRequest`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBatchRequest {
    /// The queries, each as `query_vector` in `/search`: `dimension` numbers
    /// finite as f32 (not all zero on a `cosine` index; squared norm below
    /// 1e34 on `l2` and `ip`). At most `max_batch` of them (1024 by default).
    #[schema(min_items = 1, max_items = 1024)]
    pub query_vectors: Vec<Vec<f32>>,
    /// Number of neighbours wanted for every query; at most `max_k`.
    #[schema(minimum = 1, maximum = 100, example = 10)]
    pub k: usize,
    /// A calibrated recall promise: `low_latency` (recall@k >= 0.90),
    /// `balanced` (>= 0.95, the default) or `high_accuracy` (>= 0.99). At
    /// most one of `profile`, `recall_target` and `ef_search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<SearchProfile>,
    /// The recall@k wanted, 0 < r <= 1: the cheapest calibrated setting that
    /// reaches it; 1 means exact search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1, example = 0.97)]
    pub recall_target: Option<f64>,
    /// A fixed search depth: the HNSW beam width, or the quantised scan's
    /// candidates (re-ranked per requested neighbour: `ceil(ef_search / k)`).
    /// No recall promise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000, example = 128)]
    pub ef_search: Option<usize>,
}

/// `POST /search` result: `min(k, total_vectors)` neighbours, nearest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Ids of the neighbours: those given at build (`/stats` `ids: user`),
    /// else the row of each vector in the indexed data.
    pub indices: Vec<u64>,
    /// The index's metric (`/stats` `metric`), exact, ascending: `l2`
    /// squared L2; `cosine` squared L2 between the unit vectors (`2 − 2·cos`);
    /// `ip` the negated inner product.
    pub distances: Vec<f32>,
}

/// `POST /search/batch` result: one [`SearchResponse`] per query, in request order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchBatchResponse {
    pub results: Vec<SearchResponse>,
}

/// Body of every error but 422: `{"detail": "..."}`, as FastAPI's HTTPException.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub detail: String,
}

/// 422 body, as FastAPI's `HTTPValidationError`: one entry per problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct ValidationErrorResponse {
    pub detail: Vec<FieldError>,
}

/// One validation problem, as pydantic v2 reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ValidationError)]
pub struct FieldError {
    /// Where: `["body", "k"]`, `["body", "query_vector", 3]`, `["body", 12]`
    /// (a JSON syntax error at character 12), or `["body"]`.
    pub loc: Vec<LocItem>,
    pub msg: String,
    /// pydantic's error type: `missing`, `int_type`, `greater_than`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending value, when it is a short scalar: any JSON value
    /// (`null` included), as the request gave it; absent for lists,
    /// objects and long strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub input: Option<Value>,
    /// The rule's parameters, e.g. `{"gt": 0}`; absent for rules without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false)]
    pub ctx: Option<Value>,
}

/// A step of a [`FieldError::loc`]: an object key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LocItem {
    Key(String),
    Index(usize),
}

impl From<&str> for LocItem {
    fn from(key: &str) -> Self {
        LocItem::Key(key.to_owned())
    }
}

impl From<usize> for LocItem {
    fn from(index: usize) -> Self {
        LocItem::Index(index)
    }
}
