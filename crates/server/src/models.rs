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
    #[schema(example = "HNSW")]
    pub index_type: String,
    pub hnsw_m: u32,
    /// Beam width used by every search.
    #[serde(rename = "hnsw_efSearch")]
    pub hnsw_ef_search: usize,
    #[serde(rename = "hnsw_efConstruction")]
    pub hnsw_ef_construction: u32,
    #[schema(example = "l2")]
    pub metric: String,
    pub format_version: u32,
    pub file_size_bytes: u64,
    pub build_seconds: f64,
    pub load_seconds: f64,
    /// Distance kernels in use (`avx2+fma`, `avx512f`, `neon`, `scalar`).
    pub simd: String,
    /// Largest `k` accepted by `POST /search`.
    pub max_k: usize,
    pub index_path: String,
}

// Validated by hand (see `validate.rs`) so that every malformed body gets a
// pydantic-shaped 422; this type is the result. (A plain comment: doc
// comments become the OpenAPI description.)
/// A k-nearest-neighbour query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchRequest {
    /// The query; any non-zero length-`dimension` vector of finite numbers.
    /// It is L2-normalised before the search, so scaling it changes nothing.
    pub query_vector: Vec<f32>,
    /// Number of neighbours wanted; at most `max_k` (see `/stats`).
    #[schema(minimum = 1, maximum = 100, example = 10)]
    pub k: usize,
    #[serde(skip)]
    pub options: SearchOptions,
}

// Per-request settings both search routes accept; parsed in one place
// (`validate::search_options`) and turned into engine parameters in one place
// (`SearchOptions::params`). None yet: every search uses the configured
// `ef_search`. Fields added here also need their schema on the request types.
/// Optional search settings shared by `/search` and `/search/batch`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchOptions {}

/// Many k-nearest-neighbour queries in one request, answered in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchBatchRequest {
    /// The queries, each as `query_vector` in `/search`: non-zero, finite,
    /// length `dimension`, L2-normalised before the search. At most
    /// `max_batch` of them (1024 by default).
    #[schema(min_items = 1, max_items = 1024)]
    pub query_vectors: Vec<Vec<f32>>,
    /// Number of neighbours wanted for every query; at most `max_k`.
    #[schema(minimum = 1, maximum = 100, example = 10)]
    pub k: usize,
    #[serde(skip)]
    pub options: SearchOptions,
}

/// `POST /search` result: `min(k, total_vectors)` neighbours, nearest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Ids of the neighbours (the row of each vector in the indexed data).
    pub indices: Vec<u64>,
    /// Squared L2 distances from the normalised query, ascending.
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
    /// The offending value, when it is a short scalar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// The rule's parameters, e.g. `{"gt": 0}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
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
