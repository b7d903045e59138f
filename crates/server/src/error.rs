//! [`ApiError`]: everything a request can fail with, and the one exhaustive
//! match that turns it into a status and a FastAPI-shaped body. 5xx bodies say
//! nothing internal; the cause goes to the log here, in one place.

use crate::models::{ErrorResponse, FieldError, ValidationErrorResponse};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body failed validation (422, pydantic-shaped list of problems).
    #[error("request validation failed ({} errors)", .0.len())]
    Validation(Vec<FieldError>),

    /// The query has the wrong number of dimensions (400).
    #[error("query_vector has {actual} dimensions, expected {expected}")]
    DimensionMismatch { expected: usize, actual: usize },

    /// A query of a batch has the wrong number of dimensions (400).
    #[error("query_vectors[{query}] has {actual} dimensions, expected {expected}")]
    BatchDimensionMismatch { query: usize, expected: usize, actual: usize },

    /// A raw binary search body (`application/octet-stream`) that is not
    /// whole queries of the dimension searched (400).
    #[error("body has {bytes} bytes: {}", if *batch {
        format!("not a whole number of queries of {dim} float32 values ({} bytes each)", dim * 4)
    } else {
        format!("one query of {dim} float32 values is {} bytes", dim * 4)
    })]
    RawBodyLength { bytes: usize, dim: usize, batch: bool },

    /// A `.npy` search body whose rows are not of the dimension searched (400).
    #[error("body is a .npy array of shape {shape}: its rows must have {dim} values (the dimension searched)")]
    NpyWidth { shape: String, dim: usize },

    /// The body is larger than the configured limit (413).
    #[error("Request body too large: the limit is {limit} bytes")]
    PayloadTooLarge { limit: usize },

    /// The body could not be read, e.g. the client went away mid-upload (400).
    #[error("Could not read the request body")]
    BodyRead(#[source] axum::Error),

    /// The whole body took longer than `--body-timeout` to arrive (400).
    #[error("Could not read the request body: it took longer than {secs} s to arrive (--body-timeout)")]
    BodyTooSlow { secs: f64 },

    /// No index yet: the CLI is still loading or building it (503).
    #[error("Index not loaded yet")]
    IndexLoading,

    /// Loading the index failed; see the server log (503).
    #[error("Index not available")]
    IndexUnavailable,

    /// Every search permit is taken (503).
    #[error("Too many pending searches, retry later")]
    Overloaded,

    /// No such route (404).
    #[error("Not Found")]
    NotFound,

    /// No such batch job, or not one the caller's key may see (404).
    #[error("No such job")]
    JobNotFound,

    /// The job's answers are asked for before it is done (409).
    #[error("The job is {state} ({done} of {queries} queries answered): its answers are there once it is done")]
    JobNotDone { state: &'static str, done: usize, queries: usize },

    /// The job failed: it has no answers to download (409).
    #[error("The job failed: it has no answers to download (its `error` says why)")]
    JobFailed,

    /// As many jobs as `--max-jobs` are queued or running (503).
    #[error("{max} jobs are queued or running, the most this server takes; retry when one has finished")]
    TooManyJobs { max: usize },

    /// The route exists but not for this method (405).
    #[error("Method Not Allowed")]
    MethodNotAllowed,

    /// The engine refused or failed a search.
    #[error(transparent)]
    Engine(#[from] vectorwise_index::Error),

    /// The collection store refused or failed (see `status`).
    #[error(transparent)]
    Store(vectorwise_store::Error),

    /// No point with this id in the collection (404).
    #[error("Point not found")]
    PointNotFound,

    /// An answer holds a point whose id is a UUID, which this response's
    /// integer ids cannot carry (409).
    #[error("The answer holds the point {uuid}, whose id is a UUID; this response carries integer ids only: search with POST /collections/{collection}/{route}")]
    UuidInIntegerAnswer { uuid: String, collection: String, route: &'static str },

    /// A vector field has the wrong number of values (400).
    #[error("{field} has {actual} dimensions, expected {expected}")]
    VectorDimension { field: String, expected: usize, actual: usize },

    /// No API key, or one the server does not know (401, `WWW-Authenticate: Bearer`).
    #[error("{}", if *missing { "Not authenticated: send an API key as `Authorization: Bearer <key>` or `api-key: <key>`" } else { "Invalid API key" })]
    Unauthenticated { missing: bool },

    /// A known key that may not make this request (403).
    #[error("{}", .0.detail())]
    Forbidden(crate::auth::Forbidden),

    /// The caller spent its rate budget (429, `Retry-After`).
    #[error("Rate limit exceeded: too many {what} from this client; retry after {retry_after} s")]
    RateLimited { what: &'static str, budget: &'static str, retry_after: u64 },

    /// The blocking search task panicked or was cancelled (500).
    #[error("search task failed: {0}")]
    Task(#[from] tokio::task::JoinError),

    /// A search run on the async worker panicked (500; see `dispatch.rs`).
    #[error("search panicked")]
    Panicked,

    /// A response body failed to serialise (500; the answer types always
    /// serialise, so this is a fault of ours).
    #[error("response body failed to serialise: {0}")]
    Encode(#[from] serde_json::Error),
}

const INTERNAL: &str = "Internal server error";

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::DimensionMismatch { .. }
            | ApiError::BatchDimensionMismatch { .. }
            | ApiError::RawBodyLength { .. }
            | ApiError::NpyWidth { .. }
            | ApiError::BodyRead(_)
            | ApiError::BodyTooSlow { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::IndexLoading | ApiError::IndexUnavailable | ApiError::Overloaded | ApiError::TooManyJobs { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NotFound | ApiError::JobNotFound => StatusCode::NOT_FOUND,
            ApiError::JobNotDone { .. } | ApiError::JobFailed | ApiError::UuidInIntegerAnswer { .. } => StatusCode::CONFLICT,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Engine(e) => engine_status(e),
            ApiError::Task(_) | ApiError::Panicked | ApiError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::PointNotFound => StatusCode::NOT_FOUND,
            ApiError::VectorDimension { .. } => StatusCode::BAD_REQUEST,
            ApiError::Store(e) => {
                use vectorwise_store::Error as S;
                match e {
                    S::NotFound(_) | S::Dropped(_) | S::IndexNotFound(_) | S::SnapshotNotFound { .. } => StatusCode::NOT_FOUND,
                    S::Conflict { .. } | S::IndexConflict { .. } | S::SnapshotExists(_) | S::TooManySnapshots { .. } => {
                        StatusCode::CONFLICT
                    }
                    S::Invalid { .. } | S::PayloadTooLarge { .. } | S::ResponseTooLarge { .. } | S::BadSnapshot(_) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    S::DiskFull { .. } | S::MergeNeedsRoom { .. } => StatusCode::INSUFFICIENT_STORAGE,
                    S::LogFailed | S::Backlogged { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    S::Index(e) => engine_status(e),
                    S::Io { .. } | S::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
        }
    }
}

/// The status of an engine error, wherever it is wrapped.
fn engine_status(e: &vectorwise_index::Error) -> StatusCode {
    use vectorwise_index::Error as E;
    match e {
        // Validation runs before the engine, so these mean a check here
        // is missing; they are still the caller's input.
        E::DimensionMismatch { .. } | E::InvalidParameter { .. } | E::NonFinite { .. } | E::DuplicateId { .. } => {
            StatusCode::BAD_REQUEST
        }
        // Routes turn it into a located 422 (`zero_vector` in routes.rs);
        // unlocated it is still the caller's input.
        E::ZeroVector { .. } | E::TooLarge { .. } | E::TooSmall { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        // The engine calls a bad file a user error, but the file is ours,
        // not the HTTP caller's: internal.
        E::Io { .. } | E::CorruptFile { .. } | E::UnsupportedFile { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        // Only the optimiser's builds are cancelled, when their collection goes.
        E::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<vectorwise_store::Error> for ApiError {
    fn from(e: vectorwise_store::Error) -> Self {
        use crate::models::LocItem;
        use vectorwise_store::{Error as S, Loc};
        match e {
            S::Index(e) => ApiError::Engine(e),
            S::Invalid { loc, reason } => {
                // The collection's and the snapshot's names are in the path;
                // everything else in the body.
                let part = if matches!(loc.as_slice(), [Loc::Field("name" | "snapshot")]) { "path" } else { "body" };
                let loc: Vec<LocItem> = std::iter::once(LocItem::from(part))
                    .chain(loc.into_iter().map(|l| match l {
                        Loc::Field(f) => LocItem::from(f),
                        Loc::Index(i) => LocItem::Index(i),
                    }))
                    .collect();
                ApiError::Validation(vec![
                    FieldError::new(loc, "value_error", format!("Value error, {reason}")).with_ctx(serde_json::json!({ "error": reason })),
                ])
            }
            e @ S::ResponseTooLarge { .. } => {
                let msg = e.to_string();
                ApiError::Validation(vec![FieldError::new(vec!["body".into(), "with_payload".into()], "value_error", format!("Value error, {msg}"))])
            }
            S::PayloadTooLarge { index, size, limit } => {
                let loc = vec!["body".into(), "points".into(), LocItem::Index(index), "payload".into()];
                let reason = format!("is {size} bytes as compact JSON; the collection's limit is {limit}");
                ApiError::Validation(vec![
                    FieldError::new(loc, "too_long", format!("Payload {reason}")).with_ctx(serde_json::json!({ "max_length": limit })),
                ])
            }
            e => ApiError::Store(e),
        }
    }
}

impl ApiError {
    /// A zero or too-large query refused by the metric, as a 422 at `at`.
    pub(crate) fn located(self, at: impl FnOnce(usize) -> Vec<crate::models::LocItem>) -> ApiError {
        crate::routes::located(self, |i| {
            let loc = at(i);
            let name = loc
                .iter()
                .skip(1)
                .map(|l| match l {
                    crate::models::LocItem::Key(k) => k.clone(),
                    crate::models::LocItem::Index(i) => format!("[{i}]"),
                })
                .collect::<Vec<_>>()
                .join(".")
                .replace(".[", "[");
            (loc, name)
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // 503 and 507 say what the client can do (retry later; free space):
        // their details name no internal path.
        if let ApiError::Store(vectorwise_store::Error::DiskFull { .. }) = &self {
            tracing::error!(error = %self, "write refused: disk full");
            let detail = "No space left on the server's disk: the write was not applied; reads go on".to_owned();
            return (status, Json(ErrorResponse { detail })).into_response();
        }
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, details = ?self, "internal error");
            return (status, Json(ErrorResponse { detail: INTERNAL.to_owned() })).into_response();
        }
        match self {
            ApiError::Validation(detail) => (status, Json(ValidationErrorResponse { detail })).into_response(),
            ApiError::Overloaded | ApiError::TooManyJobs { .. } | ApiError::Store(vectorwise_store::Error::Backlogged { .. }) => {
                let retry = [(header::RETRY_AFTER, HeaderValue::from_static("1"))];
                (status, retry, Json(ErrorResponse { detail: self.to_string() })).into_response()
            }
            ApiError::Unauthenticated { .. } => {
                let challenge = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
                (status, challenge, Json(ErrorResponse { detail: self.to_string() })).into_response()
            }
            ApiError::RateLimited { retry_after, .. } => {
                let retry = [(header::RETRY_AFTER, HeaderValue::from(retry_after))];
                (status, retry, Json(ErrorResponse { detail: self.to_string() })).into_response()
            }
            // The rest of the body is not read: the connection cannot carry
            // another request, and the client must not send one on it.
            ApiError::PayloadTooLarge { .. } => {
                let close = [(header::CONNECTION, HeaderValue::from_static("close"))];
                (status, close, Json(ErrorResponse { detail: self.to_string() })).into_response()
            }
            other => (status, Json(ErrorResponse { detail: other.to_string() })).into_response(),
        }
    }
}
