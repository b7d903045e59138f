//! The snapshots API (admin): take a snapshot of a collection, list its
//! snapshots, download one (streamed from the file, never read into
//! memory), delete one. The store does the work (`vectorwise_store::snapshot`:
//! the archive's format and what it guarantees); restoring is
//! `vectorwise restore` with the server stopped.

use crate::error::ApiError;
use crate::extract::ValidJson;
use crate::models::{ErrorResponse, FieldError, ValidationErrorResponse};
use crate::state::{AppState, ServerConfig};
use crate::validate::{FromBody, body_object, unknown_fields};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Serialize;
use serde_json::{Value, json};
use std::io::Read;
use utoipa::ToSchema;
use vectorwise_store::{SnapshotSummary, Store};

pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/collections/{name}/snapshots", post(create).get(list))
        .route("/collections/{name}/snapshots/{snapshot}", get(download).delete(remove))
}

const NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// `POST /collections/{name}/snapshots` (the body may be left out).
#[derive(Clone, Debug, Default, PartialEq, ToSchema)]
pub struct CreateSnapshot {
    /// 1 to 64 of `A-Z a-z 0-9 _ -`; default: the time taken, `20261206T132150Z-123`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: Option<String>,
}

impl FromBody for CreateSnapshot {
    fn from_body(body: &Value, _: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        // `null`, like no body: every field's default.
        if body.is_null() {
            return Ok(CreateSnapshot::default());
        }
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let at = || vec!["body".into(), "name".into()];
        let name = match map.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if vectorwise_store::valid_name(s) => Some(s.clone()),
            Some(v @ Value::String(_)) => {
                errors.push(
                    FieldError::new(at(), "string_pattern_mismatch", format!("String should match pattern '{NAME_PATTERN}'"))
                        .with_input(v)
                        .with_ctx(json!({ "pattern": NAME_PATTERN })),
                );
                None
            }
            Some(other) => {
                errors.push(FieldError::new(at(), "string_type", "Input should be a valid string").with_input(other));
                None
            }
        };
        unknown_fields(map, &["name"], &mut errors);
        if errors.is_empty() { Ok(CreateSnapshot { name }) } else { Err(errors) }
    }
}

/// A stored snapshot.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SnapshotOut {
    pub name: String,
    /// Archive bytes.
    pub size: u64,
    /// When it was taken (RFC 3339, UTC).
    pub created: String,
    /// Live points it holds.
    pub points: usize,
    /// The log position (LSN) of the last write it holds.
    pub position: u64,
}

impl From<SnapshotSummary> for SnapshotOut {
    fn from(s: SnapshotSummary) -> Self {
        SnapshotOut { name: s.name, size: s.size, created: s.created, points: s.points, position: s.position }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    /// Oldest first.
    pub snapshots: Vec<SnapshotOut>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SnapshotDeleted {
    pub deleted: bool,
}

fn store(state: &AppState) -> Result<std::sync::Arc<Store>, ApiError> {
    state.store().ok_or(ApiError::NotFound)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

/// Takes a snapshot: a consistent archive of the collection as of one log
/// position, written atomically beside the collections.
#[utoipa::path(post, path = "/collections/{name}/snapshots", tag = "snapshots", operation_id = "create_snapshot",
    request_body(content = Option<CreateSnapshot>, description = "Optional: a name for the snapshot"),
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 201, description = "Written: every write acknowledged before the request is in it, and every write in it is durable", body = SnapshotOut),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 409, description = "A snapshot of this name exists, or the collection keeps as many snapshots as the server allows (`--max-snapshots`): delete one first", body = ErrorResponse),
        (status = 422, description = "Invalid name", body = ValidationErrorResponse),
        (status = 503, description = "The log failed to sync earlier (writes are refused until restart)", body = ErrorResponse),
        (status = 507, description = "The disk is full; nothing was kept", body = ErrorResponse),
    ))]
pub(crate) async fn create(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Result<(StatusCode, Json<SnapshotOut>), ApiError> {
    let req = optional_body(request, &state).await?;
    let store = store(&state)?;
    let summary = blocking(move || Ok(store.snapshot(&name, req.name.as_deref())?)).await?;
    Ok((StatusCode::CREATED, Json(summary.into())))
}

/// The body, where an empty one is `{}`: read (within the body limit), then
/// parsed and checked as every JSON body is.
async fn optional_body(request: Request, state: &AppState) -> Result<CreateSnapshot, ApiError> {
    let headers = request.headers().clone();
    let limit = state.config().body_limit_bytes;
    let bytes = Bytes::from_request(request, state).await.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => ApiError::PayloadTooLarge { limit },
        other => ApiError::BodyRead(axum::Error::new(other)),
    })?;
    if bytes.is_empty() {
        return Ok(CreateSnapshot::default());
    }
    let mut again = Request::new(Body::from(bytes));
    *again.headers_mut() = headers;
    Ok(ValidJson::<CreateSnapshot>::from_request(again, state).await?.0)
}

/// The collection's snapshots (those of a deleted collection stay listed).
#[utoipa::path(get, path = "/collections/{name}/snapshots", tag = "snapshots", operation_id = "list_snapshots",
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "Its snapshots", body = SnapshotList),
        (status = 404, description = "No such collection, and no snapshot of one", body = ErrorResponse),
        (status = 422, description = "Invalid name", body = ValidationErrorResponse),
    ))]
pub(crate) async fn list(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<SnapshotList>, ApiError> {
    let store = store(&state)?;
    let found = blocking(move || Ok(store.list_snapshots(&name)?)).await?;
    Ok(Json(SnapshotList { snapshots: found.into_iter().map(SnapshotOut::from).collect() }))
}

/// Bytes read from the file per chunk of the download.
const CHUNK: usize = 256 << 10;

/// Downloads a snapshot's archive (a tar file; `vectorwise restore` reads it).
#[utoipa::path(get, path = "/collections/{name}/snapshots/{snapshot}", tag = "snapshots", operation_id = "download_snapshot",
    params(("name" = String, Path, description = "Collection name"), ("snapshot" = String, Path, description = "Snapshot name")),
    responses(
        (status = 200, description = "The archive, streamed", body = String, content_type = "application/x-tar"),
        (status = 404, description = "No such snapshot", body = ErrorResponse),
        (status = 422, description = "Invalid name", body = ValidationErrorResponse),
    ))]
pub(crate) async fn download(State(state): State<AppState>, Path((name, snapshot)): Path<(String, String)>) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let file_name = format!("{snapshot}.tar");
    let (file, size) = blocking(move || {
        let path = store.snapshot_path(&name, &snapshot)?;
        let io = |e| ApiError::Store(vectorwise_store::Error::Io { path: path.clone(), source: e });
        let file = std::fs::File::open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok((file, size))
    })
    .await?;
    // An open file: a delete meanwhile does not cut the download short.
    let stream = futures_util::stream::try_unfold(file, |mut file| async move {
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok::<_, std::io::Error>((!chunk.is_empty()).then(|| (Bytes::from(chunk), file)))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Deletes a snapshot.
#[utoipa::path(delete, path = "/collections/{name}/snapshots/{snapshot}", tag = "snapshots", operation_id = "delete_snapshot",
    params(("name" = String, Path, description = "Collection name"), ("snapshot" = String, Path, description = "Snapshot name")),
    responses(
        (status = 200, description = "Deleted", body = SnapshotDeleted),
        (status = 404, description = "No such snapshot", body = ErrorResponse),
        (status = 422, description = "Invalid name", body = ValidationErrorResponse),
    ))]
pub(crate) async fn remove(State(state): State<AppState>, Path((name, snapshot)): Path<(String, String)>) -> Result<Json<SnapshotDeleted>, ApiError> {
    let store = store(&state)?;
    blocking(move || Ok(store.delete_snapshot(&name, &snapshot)?)).await?;
    Ok(Json(SnapshotDeleted { deleted: true }))
}
