//! The collections API: create, list, inspect and delete collections;
//! upsert, delete and read points; search one collection. The store
//! (`vectorwise-store`) does the work; this module translates HTTP: bodies
//! are validated like the demo's (FastAPI-shaped 422s naming the field),
//! writes and searches run on the blocking pool.

use crate::error::ApiError;
use crate::binary::{FromBinary, Searched};
use crate::extract::{SearchBody, ValidJson};
use crate::models::{ErrorResponse, FieldError, LocItem, SearchOptions, ValidationErrorResponse};
use crate::resolve::headers;
use crate::state::{AppState, SearchPermit, ServerConfig};
use crate::telemetry::SearchKind;
use crate::validate::{
    FromBody, body_object, parse_int, parse_queries, parse_vector, required, search_options, unknown_fields,
};
use crate::auth::Caller;
use crate::cache::{Query, Shape, Target, json_bytes};
use axum::response::Response;
use crate::ratelimit::Budget;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use utoipa::ToSchema;
use vectorwise_index::Metric;
use vectorwise_store::{Collection, CollectionConfig, NewPoint, PointId, Store};

pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/collections", get(list))
        .route("/collections/{name}", put(create).get(info).delete(remove))
        .route("/collections/{name}/points", put(upsert))
        .route("/collections/{name}/points/delete", post(delete_points))
        .route("/collections/{name}/points/get", post(get_points))
        .route("/collections/{name}/points/{id}", get(get_point))
        .route("/collections/{name}/search", post(search))
        .route("/collections/{name}/search/batch", post(search_batch))
        .route("/collections/{name}/index", put(create_index))
        .route("/collections/{name}/index/{field}", axum::routing::delete(drop_index))
}

// ---- wire types -------------------------------------------------------------

/// `PUT /collections/{name}`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
#[schema(as = CreateCollection)]
pub struct CreateCollection {
    /// Values per vector (1–65536).
    pub dimension: usize,
    /// `l2`, `ip` or `cosine` (default `cosine`).
    #[schema(value_type = Option<String>)]
    pub metric: Metric,
    /// The mutable segment is sealed into an index past this many points (default 10000).
    pub seal_points: Option<usize>,
    /// Largest payload per point, compact JSON bytes (default 65536).
    pub max_payload_bytes: Option<usize>,
}

/// One point of an upsert.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct PointIn {
    /// 0 to 2^63 - 1, or a UUID string; an existing id is replaced.
    #[schema(value_type = Object)]
    pub id: PointId,
    pub vector: Vec<f32>,
    /// A JSON object (or null).
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

/// `PUT /collections/{name}/points`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct UpsertRequest {
    pub points: Vec<PointIn>,
}

/// `POST /collections/{name}/points/delete`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct DeleteRequest {
    /// Ids: integers 0 to 2^63 - 1, or UUID strings.
    #[schema(value_type = Vec<Object>)]
    pub ids: Vec<PointId>,
}

/// `POST /collections/{name}/points/get`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct GetRequest {
    /// Ids: integers 0 to 2^63 - 1, or UUID strings.
    #[schema(value_type = Vec<Object>)]
    pub ids: Vec<PointId>,
    /// Default true.
    pub with_vector: Option<bool>,
    /// Default true.
    pub with_payload: Option<bool>,
}

/// `POST /collections/{name}/search`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct CollectionSearchRequest {
    pub vector: Vec<f32>,
    pub k: usize,
    /// Default false.
    pub with_payload: Option<bool>,
    /// Default false.
    pub with_vector: Option<bool>,
    #[schema(value_type = Option<crate::models::SearchProfile>)]
    pub profile: Option<crate::models::SearchProfile>,
    pub recall_target: Option<f64>,
    pub ef_search: Option<usize>,
    /// Only points this payload filter lets through are answered (see `Filter`).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Arc<vectorwise_store::Filter>>,
}

/// `POST /collections/{name}/search/batch`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct CollectionSearchBatchRequest {
    pub vectors: Vec<Vec<f32>>,
    pub k: usize,
    pub with_payload: Option<bool>,
    pub with_vector: Option<bool>,
    #[schema(value_type = Option<crate::models::SearchProfile>)]
    pub profile: Option<crate::models::SearchProfile>,
    pub recall_target: Option<f64>,
    pub ef_search: Option<usize>,
    /// One payload filter for every vector of the batch (see `Filter`).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Arc<vectorwise_store::Filter>>,
}

/// `PUT /collections/{name}/index`: declares a payload index.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct CreatePayloadIndex {
    /// A dotted payload key (`meta.source`).
    pub field: String,
    /// `keyword`, `integer`, `float` or `bool`.
    #[schema(value_type = String)]
    #[schema(pattern = "^(keyword|integer|float|bool)$")]
    pub r#type: vectorwise_store::FieldType,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CollectionSummary {
    pub name: String,
    pub points: usize,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionSummary>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UpsertResponse {
    /// Points written (all of the batch).
    pub upserted: usize,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeleteResponse {
    /// How many of the ids existed.
    pub deleted: usize,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DroppedResponse {
    pub deleted: bool,
}

/// A stored point.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PointOut {
    #[schema(value_type = Object)]
    pub id: PointId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// The point's payload object, or null.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PointsResponse {
    pub points: Vec<PointOut>,
}

/// One search hit.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HitOut {
    #[schema(value_type = Object)]
    pub id: PointId,
    /// The collection metric's distance (smaller is nearer).
    pub distance: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CollectionSearchResponse {
    pub hits: Vec<HitOut>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CollectionSearchBatchResponse {
    pub results: Vec<CollectionSearchResponse>,
}

// ---- validation ---------------------------------------------------------------

fn at(items: &[&str]) -> Vec<LocItem> {
    std::iter::once("body").chain(items.iter().copied()).map(LocItem::from).collect()
}

fn parse_bool(map: &Map<String, Value>, name: &str, errors: &mut Vec<FieldError>) -> Option<bool> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            errors.push(FieldError::new(at(&[name]), "bool_type", "Input should be a valid boolean").with_input(v));
            None
        }
    }
}

/// An integer in `lo..=hi` at `loc`.
fn int_in(v: &Value, loc: &[LocItem], lo: i128, hi: i128, errors: &mut Vec<FieldError>) -> Option<u64> {
    let n = parse_int(v, loc, errors)?;
    if n < lo {
        errors.push(FieldError::new(loc.to_vec(), "greater_than_equal", format!("Input should be greater than or equal to {lo}")).with_input(v).with_ctx(json!({"ge": lo as i64})));
        return None;
    }
    if n > hi {
        errors.push(FieldError::new(loc.to_vec(), "less_than_equal", format!("Input should be less than or equal to {hi}")).with_input(v).with_ctx(json!({"le": hi as i64})));
        return None;
    }
    Some(n as u64)
}

const MAX_ID: i128 = i64::MAX as i128;

/// Most payload bytes one search response carries (a batch shares it among
/// its vectors): one small request must not make a response of gigabytes.
pub(crate) const RESPONSE_PAYLOAD_BYTES: usize = 64 << 20;

/// A point id: an integer from 0 to 2^63 - 1, or a UUID string.
pub(crate) fn parse_point_id(v: &Value, loc: &[LocItem], errors: &mut Vec<FieldError>) -> Option<PointId> {
    match v {
        Value::String(s) => {
            let id = PointId::parse_uuid(s);
            if id.is_none() {
                errors.push(
                    FieldError::new(loc.to_vec(), "uuid_parsing", "Input should be an integer from 0 to 2^63 - 1 or a valid UUID string").with_input(v),
                );
            }
            id
        }
        // Strict, as `has_id` is: `7.0` is not an id (a float id is a
        // client's bug more often than an integer it meant).
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            errors.push(FieldError::new(loc.to_vec(), "int_type", "Input should be a valid integer").with_input(v));
            None
        }
        _ => int_in(v, loc, 0, MAX_ID, errors).map(PointId::Num),
    }
}

pub(crate) fn parse_ids(v: &Value, loc: &[LocItem], max: usize, errors: &mut Vec<FieldError>) -> Option<Vec<PointId>> {
    let Value::Array(items) = v else {
        errors.push(FieldError::new(loc.to_vec(), "list_type", "Input should be a valid list").with_input(v));
        return None;
    };
    if items.len() > max {
        errors.push(FieldError::new(loc.to_vec(), "too_long", format!("List should have at most {max} items")).with_ctx(json!({"max_length": max})));
        return None;
    }
    let before = errors.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut l = loc.to_vec();
        l.push(LocItem::Index(i));
        if let Some(id) = parse_point_id(item, &l, errors) {
            out.push(id);
        }
        if errors.len() - before >= 32 {
            break;
        }
    }
    (errors.len() == before).then_some(out)
}

impl FromBody for CreateCollection {
    fn from_body(body: &Value, _: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let dimension = required(map, "dimension", &mut errors).and_then(|v| int_in(v, &at(&["dimension"]), 1, 65_536, &mut errors));
        let metric = match map.get("metric") {
            None | Some(Value::Null) => Some(Metric::Cosine),
            Some(v) => match v.as_str().and_then(|s| s.parse::<Metric>().ok()) {
                Some(m) => Some(m),
                None => {
                    errors.push(FieldError::new(at(&["metric"]), "enum", "Input should be 'l2', 'ip' or 'cosine'").with_input(v).with_ctx(json!({"expected": "'l2', 'ip' or 'cosine'"})));
                    None
                }
            },
        };
        let opt = |name: &str, lo: i128, hi: i128, errors: &mut Vec<FieldError>| match map.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(v) => int_in(v, &at(&[name]), lo, hi, errors).map(|n| Some(n as usize)),
        };
        let seal_points = opt("seal_points", 2, 10_000_000, &mut errors);
        let max_payload_bytes = opt("max_payload_bytes", 2, 16 << 20, &mut errors);
        unknown_fields(map, &["dimension", "metric", "seal_points", "max_payload_bytes"], &mut errors);
        match (dimension, metric, seal_points, max_payload_bytes) {
            (Some(d), Some(metric), Some(seal_points), Some(max_payload_bytes)) if errors.is_empty() => {
                Ok(CreateCollection { dimension: d as usize, metric, seal_points, max_payload_bytes })
            }
            _ => Err(errors),
        }
    }
}

impl FromBody for UpsertRequest {
    fn fast(bytes: &[u8], config: &ServerConfig) -> Option<Self> {
        UpsertRequest::parse_fast(bytes, config)
    }

    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let points = required(map, "points", &mut errors).and_then(|v| {
            let Value::Array(items) = v else {
                errors.push(FieldError::new(at(&["points"]), "list_type", "Input should be a valid list").with_input(v));
                return None;
            };
            let max = config.max_batch.max(1) * 10;
            if items.len() > max {
                errors.push(FieldError::new(at(&["points"]), "too_long", format!("List should have at most {max} items")).with_ctx(json!({"max_length": max})));
                return None;
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let base: Vec<LocItem> = vec!["body".into(), "points".into(), LocItem::Index(i)];
                let loc = |f: &str| {
                    let mut l = base.clone();
                    l.push(f.into());
                    l
                };
                let Value::Object(p) = item else {
                    errors.push(FieldError::new(base.clone(), "model_type", "Input should be a valid dictionary or object").with_input(item));
                    continue;
                };
                let id = match p.get("id") {
                    None => {
                        errors.push(FieldError::new(loc("id"), "missing", "Field required"));
                        None
                    }
                    Some(v) => parse_point_id(v, &loc("id"), &mut errors),
                };
                let vector = match p.get("vector") {
                    None => {
                        errors.push(FieldError::new(loc("vector"), "missing", "Field required"));
                        None
                    }
                    Some(v) => parse_vector(v, &loc("vector"), &mut errors),
                };
                let payload = match p.get("payload") {
                    None | Some(Value::Null) => None,
                    Some(v @ Value::Object(_)) => Some(v.clone()),
                    Some(v) => {
                        errors.push(FieldError::new(loc("payload"), "dict_type", "Input should be a valid dictionary").with_input(v));
                        None
                    }
                };
                for key in p.keys() {
                    if !["id", "vector", "payload"].contains(&key.as_str()) {
                        errors.push(FieldError::new(loc(key), "extra_forbidden", "Extra inputs are not permitted").with_input(&p[key]));
                    }
                }
                if let (Some(id), Some(vector)) = (id, vector) {
                    out.push(PointIn { id, vector, payload });
                }
                if errors.len() >= 32 {
                    break;
                }
            }
            Some(out)
        });
        unknown_fields(map, &["points"], &mut errors);
        match points {
            Some(points) if errors.is_empty() => Ok(UpsertRequest { points }),
            _ => Err(errors),
        }
    }
}

/// The upsert body as serde reads it straight from the bytes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastUpsert {
    points: Vec<FastPoint>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastPoint {
    id: PointId,
    vector: Vec<f32>,
    #[serde(default)]
    payload: Option<crate::extract::NoDuplicateKeys>,
}

impl UpsertRequest {
    /// The direct parse: about half the CPU of the `Value` path for 1000
    /// points of 128 values. Anything unusual (an id out of range, a value
    /// that is not a finite f32, a payload that is not an object, too many
    /// points) goes to the `Value` path for its located 422.
    fn parse_fast(bytes: &[u8], config: &ServerConfig) -> Option<UpsertRequest> {
        let body: FastUpsert = serde_json::from_slice(bytes).ok()?;
        if body.points.len() > config.max_batch.max(1) * 10 {
            return None;
        }
        let mut points = Vec::with_capacity(body.points.len());
        for p in body.points {
            if matches!(p.id, PointId::Num(n) if n > MAX_ID as u64) || p.vector.iter().any(|x| !x.is_finite()) {
                return None;
            }
            let payload = match p.payload.map(|v| v.0) {
                None | Some(Value::Null) => None,
                Some(v @ Value::Object(_)) => Some(v),
                Some(_) => return None,
            };
            points.push(PointIn { id: p.id, vector: p.vector, payload });
        }
        Some(UpsertRequest { points })
    }
}

impl FromBody for DeleteRequest {
    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let ids = required(map, "ids", &mut errors).and_then(|v| parse_ids(v, &at(&["ids"]), config.max_batch.max(1) * 100, &mut errors));
        unknown_fields(map, &["ids"], &mut errors);
        match ids {
            Some(ids) if errors.is_empty() => Ok(DeleteRequest { ids }),
            _ => Err(errors),
        }
    }
}

impl FromBody for GetRequest {
    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let ids = required(map, "ids", &mut errors).and_then(|v| parse_ids(v, &at(&["ids"]), config.max_batch.max(1) * 10, &mut errors));
        let with_vector = parse_bool(map, "with_vector", &mut errors);
        let with_payload = parse_bool(map, "with_payload", &mut errors);
        unknown_fields(map, &["ids", "with_vector", "with_payload"], &mut errors);
        match ids {
            Some(ids) if errors.is_empty() => Ok(GetRequest { ids, with_vector, with_payload }),
            _ => Err(errors),
        }
    }
}

const SEARCH_FIELDS: &[&str] = &["vector", "k", "with_payload", "with_vector", "profile", "recall_target", "ef_search", "filter"];
const BATCH_FIELDS: &[&str] = &["vectors", "k", "with_payload", "with_vector", "profile", "recall_target", "ef_search", "filter"];
/// Both searches' fields but their vectors: what a binary body's query string may hold.
const QUERY_FIELDS: &[&str] = &["k", "with_payload", "with_vector", "profile", "recall_target", "ef_search", "filter"];

/// What `search` and `search/batch` share: k, what to return, how hard to search.
struct HitOptions {
    k: usize,
    with_payload: Option<bool>,
    with_vector: Option<bool>,
    search: SearchOptions,
    filter: Option<Arc<vectorwise_store::Filter>>,
}

fn hit_options(map: &Map<String, Value>, config: &ServerConfig, errors: &mut Vec<FieldError>) -> Option<HitOptions> {
    let k = crate::validate::parse_k(map, config, errors);
    let with_payload = parse_bool(map, "with_payload", errors);
    let with_vector = parse_bool(map, "with_vector", errors);
    let search = search_options(map, errors);
    let filter = match map.get("filter") {
        None => Some(None),
        Some(v) => crate::filter::parse(v, &at(&["filter"]), errors),
    };
    Some(HitOptions { k: k?, with_payload, with_vector, search: search?, filter: filter?.map(Arc::new) })
}

impl FromBody for CreatePayloadIndex {
    fn from_body(body: &Value, _: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let field = required(map, "field", &mut errors).and_then(|v| match v {
            Value::String(s) => match vectorwise_store::KeyPath::parse(s) {
                Ok(_) => Some(s.clone()),
                Err(reason) => {
                    errors.push(FieldError::new(at(&["field"]), "value_error", format!("Value error, key {reason}")).with_input(v));
                    None
                }
            },
            other => {
                errors.push(FieldError::new(at(&["field"]), "string_type", "Input should be a valid string").with_input(other));
                None
            }
        });
        let field_type = required(map, "type", &mut errors).and_then(|v| {
            let t = serde_json::from_value::<vectorwise_store::FieldType>(v.clone()).ok();
            if t.is_none() {
                errors.push(
                    FieldError::new(at(&["type"]), "enum", "Input should be 'keyword', 'integer', 'float' or 'bool'")
                        .with_input(v)
                        .with_ctx(json!({"expected": "'keyword', 'integer', 'float' or 'bool'"})),
                );
            }
            t
        });
        unknown_fields(map, &["field", "type"], &mut errors);
        match (field, field_type) {
            (Some(field), Some(r#type)) if errors.is_empty() => Ok(CreatePayloadIndex { field, r#type }),
            _ => Err(errors),
        }
    }
}

impl FromBody for CollectionSearchRequest {
    fn fast(bytes: &[u8], config: &ServerConfig) -> Option<Self> {
        crate::validate::fast_search(bytes, "vector", config)
    }

    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let vector = required(map, "vector", &mut errors).and_then(|v| parse_vector(v, &at(&["vector"]), &mut errors));
        let h = hit_options(map, config, &mut errors);
        unknown_fields(map, SEARCH_FIELDS, &mut errors);
        let (Some(vector), Some(h), true) = (vector, h, errors.is_empty()) else { return Err(errors) };
        let SearchOptions { profile, recall_target, ef_search } = h.search;
        Ok(CollectionSearchRequest {
            vector,
            k: h.k,
            with_payload: h.with_payload,
            with_vector: h.with_vector,
            profile,
            recall_target,
            ef_search,
            filter: h.filter,
        })
    }
}

impl FromBody for CollectionSearchBatchRequest {
    fn fast(bytes: &[u8], config: &ServerConfig) -> Option<Self> {
        crate::validate::fast_search(bytes, "vectors", config)
    }

    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let at_vectors = at(&["vectors"]);
        let vectors = required(map, "vectors", &mut errors).and_then(|v| parse_queries(v, &at_vectors, config.max_batch, &mut errors));
        let h = hit_options(map, config, &mut errors);
        unknown_fields(map, BATCH_FIELDS, &mut errors);
        let (Some(vectors), Some(h), true) = (vectors, h, errors.is_empty()) else { return Err(errors) };
        let SearchOptions { profile, recall_target, ef_search } = h.search;
        Ok(CollectionSearchBatchRequest {
            vectors,
            k: h.k,
            with_payload: h.with_payload,
            with_vector: h.with_vector,
            profile,
            recall_target,
            ef_search,
            filter: h.filter,
        })
    }
}

impl FromBinary for CollectionSearchRequest {
    const BATCH: bool = false;
    const SEARCHED: Searched = Searched::Collection;
    const FIELDS: &'static [&'static str] = QUERY_FIELDS;

    fn from_parts(fields: &Map<String, Value>, vector: Option<Vec<f32>>, _dim: usize, config: &ServerConfig, errors: &mut Vec<FieldError>) -> Option<Self> {
        let h = hit_options(fields, config, errors);
        unknown_fields(fields, QUERY_FIELDS, errors);
        let h = h?;
        let SearchOptions { profile, recall_target, ef_search } = h.search;
        Some(CollectionSearchRequest {
            vector: vector?,
            k: h.k,
            with_payload: h.with_payload,
            with_vector: h.with_vector,
            profile,
            recall_target,
            ef_search,
            filter: h.filter,
        })
    }
}

impl FromBinary for CollectionSearchBatchRequest {
    const BATCH: bool = true;
    const SEARCHED: Searched = Searched::Collection;
    const FIELDS: &'static [&'static str] = QUERY_FIELDS;

    fn from_parts(fields: &Map<String, Value>, vectors: Option<Vec<f32>>, dim: usize, config: &ServerConfig, errors: &mut Vec<FieldError>) -> Option<Self> {
        let h = hit_options(fields, config, errors);
        unknown_fields(fields, QUERY_FIELDS, errors);
        let h = h?;
        let SearchOptions { profile, recall_target, ef_search } = h.search;
        Some(CollectionSearchBatchRequest {
            vectors: crate::binary::rows(&vectors?, dim),
            k: h.k,
            with_payload: h.with_payload,
            with_vector: h.with_vector,
            profile,
            recall_target,
            ef_search,
            filter: h.filter,
        })
    }
}

// ---- handlers -------------------------------------------------------------------

fn store(state: &AppState) -> Result<Arc<Store>, ApiError> {
    state.store().ok_or(ApiError::NotFound)
}

fn collection(state: &AppState, name: &str) -> Result<Arc<Collection>, ApiError> {
    Ok(store(state)?.get(name)?)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

fn payload_value(text: Option<Arc<str>>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Creates a collection (201), or returns the existing one with the same settings (200).
#[utoipa::path(put, path = "/collections/{name}", tag = "collections", request_body = CreateCollection,
    params(("name" = String, Path, description = "1 to 64 characters: A-Z a-z 0-9 _ -")),
    responses(
        (status = 201, description = "Created", body = Object),
        (status = 200, description = "It exists with these settings", body = Object),
        (status = 409, description = "It exists with other settings", body = ErrorResponse),
        (status = 422, description = "Invalid name or settings", body = ValidationErrorResponse),
        (status = 507, description = "The disk is full; nothing was created", body = ErrorResponse),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<CreateCollection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = store(&state)?;
    let mut config = CollectionConfig::new(req.dimension, req.metric);
    if let Some(s) = req.seal_points {
        config.seal_points = s;
    }
    if let Some(m) = req.max_payload_bytes {
        config.max_payload_bytes = m;
    }
    let (c, created) = blocking(move || Ok(store.create(&name, config)?)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::to_value(c.stats()).unwrap_or_default())))
}

/// The collections, by name, with their live point counts.
#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, description = "All collections", body = CollectionList)))]
pub(crate) async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Json<CollectionList>, ApiError> {
    let store = store(&state)?;
    // A key limited to some collections sees only those.
    let collections = store
        .list()
        .into_iter()
        .filter(|(name, _)| caller.may_use(name))
        .map(|(name, points)| CollectionSummary { name, points })
        .collect();
    Ok(Json(CollectionList { collections }))
}

/// A collection's settings, points, segments, log and optimiser.
#[utoipa::path(get, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Its stats", body = Object), (status = 404, description = "No such collection", body = ErrorResponse)))]
pub(crate) async fn info(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let c = collection(&state, &name)?;
    Ok(Json(serde_json::to_value(c.stats()).unwrap_or_default()))
}

/// Deletes a collection and its files.
#[utoipa::path(delete, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Deleted", body = DroppedResponse), (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 409, description = "`default` while it is the served index", body = ErrorResponse)))]
pub(crate) async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<DroppedResponse>, ApiError> {
    let store = store(&state)?;
    if name == crate::DEFAULT_COLLECTION && state.index().is_ok() && store.get(&name).is_ok() {
        // The demo's routes answer from it: it goes with the served index.
        return Err(ApiError::Store(vectorwise_store::Error::Conflict {
            name,
            reason: "it is the served index (`serve --index`); delete its points instead".into(),
        }));
    }
    let jobs = state.jobs();
    blocking(move || {
        store.drop_collection(&name)?;
        // Its batch jobs go with it.
        if let Some(jobs) = jobs {
            jobs.drop_collection(&name);
        }
        Ok(())
    })
    .await?;
    Ok(Json(DroppedResponse { deleted: true }))
}

/// Inserts or replaces points. Answers once the whole batch is durable
/// (fdatasync) and visible to every later search; a bad point refuses the
/// whole batch (422 naming it).
#[utoipa::path(put, path = "/collections/{name}/points", tag = "points", request_body = UpsertRequest,
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "Durable and visible", body = UpsertResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 413, description = "Body larger than the configured limit", body = ErrorResponse),
        (status = 422, description = "A point is invalid (wrong dimension, non-finite, zero under cosine, payload not an object or too large); nothing was written", body = ValidationErrorResponse),
        (status = 503, description = "The log failed to sync earlier (writes are refused until restart); or the optimiser stayed behind for 5 s, more written points waiting to be indexed than `--write-backlog-points` allows (nothing was written; retry after `Retry-After`)", body = ErrorResponse,
            headers(("retry-after" = u32, description = "`1`, when the optimiser is behind"))),
        (status = 507, description = "The disk is full; nothing was written", body = ErrorResponse),
    ))]
pub(crate) async fn upsert(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: crate::multipart::UpsertBody,
) -> Result<Json<UpsertResponse>, ApiError> {
    let c = collection(&state, &name)?;
    let form = body.form;
    let points: Vec<NewPoint> = body.request.points.into_iter().map(|p| NewPoint { id: p.id, vector: p.vector, payload: p.payload }).collect();
    let (deadline, waited) = backlog_wait(&c).await;
    let upserted = blocking(move || Ok(c.upsert_until(points, deadline, waited)?))
        .await
        .map_err(|e| if form { crate::multipart::locate_in_parts(e) } else { e })?;
    Ok(Json(UpsertResponse { upserted }))
}

/// Waits while `c`'s write backlog is over its limit, up to the collection's
/// wait, on the async side: an upsert waiting in the blocking pool held one
/// of its few threads for up to 5 s, and a few of them left searches (and the
/// hand-off of a search run on a worker, `dispatch.rs`) queued behind. The
/// upsert's deadline, and whether it waited (counted here).
async fn backlog_wait(c: &Collection) -> (std::time::Instant, bool) {
    let deadline = std::time::Instant::now() + c.backlog_wait();
    let mut waited = false;
    while c.write_backlogged() && std::time::Instant::now() < deadline {
        if !waited {
            waited = true;
            c.note_write_waited();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    (deadline, waited)
}

/// Deletes points by id; answers once durable.
#[utoipa::path(post, path = "/collections/{name}/points/delete", tag = "points", request_body = DeleteRequest,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Durable; how many existed", body = DeleteResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 422, description = "Invalid ids", body = ValidationErrorResponse),
        (status = 503, description = "The log failed to sync earlier; writes are refused until restart", body = ErrorResponse),
        (status = 507, description = "The disk is full; nothing was written", body = ErrorResponse)))]
pub(crate) async fn delete_points(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<DeleteRequest>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let c = collection(&state, &name)?;
    let deleted = blocking(move || Ok(c.delete(req.ids)?)).await?;
    Ok(Json(DeleteResponse { deleted }))
}

/// One point: its vector and payload.
#[utoipa::path(get, path = "/collections/{name}/points/{id}", tag = "points",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Point id: an integer, or a UUID")),
    responses((status = 200, description = "The point", body = PointOut), (status = 404, description = "No such collection or point", body = ErrorResponse)))]
pub(crate) async fn get_point(State(state): State<AppState>, Path((name, id)): Path<(String, String)>) -> Result<Json<PointOut>, ApiError> {
    let c = collection(&state, &name)?;
    // Digits are an integer id (at most 19 of them below 2^63); anything
    // else, 32 digits included, a UUID in one of its forms.
    let id = if id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        match id.parse::<u64>() {
            Ok(n) if n <= MAX_ID as u64 => PointId::Num(n),
            _ => return Err(ApiError::PointNotFound),
        }
    } else {
        PointId::parse_uuid(&id).ok_or(ApiError::PointNotFound)?
    };
    let mut found = c.get(&[id], true, true)?;
    let p = found.pop().ok_or(ApiError::PointNotFound)?;
    Ok(Json(PointOut { id: p.id, vector: p.vector, payload: Some(payload_value(p.payload).unwrap_or(Value::Null)) }))
}

/// Many points by id (missing ids are left out).
#[utoipa::path(post, path = "/collections/{name}/points/get", tag = "points", request_body = GetRequest,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "The points that exist, in the order asked", body = PointsResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 422, description = "Invalid ids", body = ValidationErrorResponse)))]
pub(crate) async fn get_points(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<GetRequest>,
) -> Result<Json<PointsResponse>, ApiError> {
    let c = collection(&state, &name)?;
    let (wv, wp) = (req.with_vector.unwrap_or(true), req.with_payload.unwrap_or(true));
    let points = c
        .get(&req.ids, wp, wv)?
        .into_iter()
        .map(|p| PointOut { id: p.id, vector: p.vector, payload: wp.then(|| payload_value(p.payload).unwrap_or(Value::Null)) })
        .collect();
    Ok(Json(PointsResponse { points }))
}

/// Declares a payload index on a key: built in every segment and kept
/// current; filters on the key then read the index, not the payloads.
#[utoipa::path(put, path = "/collections/{name}/index", tag = "collections", request_body = CreatePayloadIndex,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 201, description = "Declared and built", body = Object),
        (status = 200, description = "The key already has this index", body = Object),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 409, description = "The key has an index of another type", body = ErrorResponse),
        (status = 422, description = "Invalid body", body = ValidationErrorResponse),
        (status = 503, description = "The log failed to sync earlier; writes are refused until restart", body = ErrorResponse),
        (status = 507, description = "The disk is full; the index was not declared", body = ErrorResponse)))]
pub(crate) async fn create_index(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ValidJson(req): ValidJson<CreatePayloadIndex>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let c = collection(&state, &name)?;
    let spec = vectorwise_store::FieldSpec { field: req.field.clone(), field_type: req.r#type };
    let created = blocking(move || Ok(c.create_payload_index(spec)?)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "field": req.field, "type": req.r#type.as_str() }))))
}

/// Drops the payload index on a key (filters on it then read payloads).
#[utoipa::path(delete, path = "/collections/{name}/index/{field}", tag = "collections",
    params(("name" = String, Path, description = "Collection name"), ("field" = String, Path, description = "The indexed key")),
    responses((status = 200, description = "Dropped", body = Object),
        (status = 404, description = "No such collection or index", body = ErrorResponse),
        (status = 503, description = "The log failed to sync earlier; writes are refused until restart", body = ErrorResponse),
        (status = 507, description = "The disk is full; the index is kept", body = ErrorResponse)))]
pub(crate) async fn drop_index(
    State(state): State<AppState>,
    Path((name, field)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let c = collection(&state, &name)?;
    let f = field.clone();
    blocking(move || Ok(c.drop_payload_index(&f)?)).await?;
    Ok(Json(json!({ "dropped": field })))
}

/// The store's options for a request of `queries` vectors: nothing returned
/// beyond ids and distances unless asked; the response's payload bound shared
/// by its vectors.
fn store_options(
    state: &AppState,
    k: usize,
    with_payload: Option<bool>,
    with_vector: Option<bool>,
    search: &SearchOptions,
    queries: usize,
    filter: Option<Arc<vectorwise_store::Filter>>,
) -> vectorwise_store::SearchOptions {
    vectorwise_store::SearchOptions {
        k,
        request: crate::resolve::request(state.config(), search),
        with_payload: with_payload.unwrap_or(false),
        with_vector: with_vector.unwrap_or(false),
        payload_budget: RESPONSE_PAYLOAD_BYTES / queries.max(1),
        filter,
    }
}

/// Hits as the API answers them: `payload` (null for a point without one)
/// only when asked for, `vector` likewise.
fn hits_out(found: Vec<vectorwise_store::Found>, with_payload: bool) -> CollectionSearchResponse {
    CollectionSearchResponse {
        hits: found
            .into_iter()
            .map(|f| HitOut {
                id: f.id,
                distance: f.distance,
                payload: with_payload.then(|| payload_value(f.payload).unwrap_or(Value::Null)),
                vector: f.vector,
            })
            .collect(),
    }
}

pub(crate) fn outcome_headers(o: &vectorwise_store::SearchOutcome) -> HeaderMap {
    let mut h = o.plan.as_ref().map(headers).unwrap_or_default();
    if o.plan.is_none() {
        // Memory segments only: searched exactly.
        h.insert(crate::resolve::header::METHOD, axum::http::HeaderValue::from_static("exact"));
    }
    h.remove(crate::resolve::header::EXPECTED_RECALL);
    if let Some(r) = o.expected_recall {
        if let Ok(v) = format!("{r:.4}").parse() {
            h.insert(crate::resolve::header::EXPECTED_RECALL, v);
        }
    }
    if let Ok(v) = o.segments.to_string().parse() {
        h.insert(crate::resolve::header::SEGMENTS, v);
    }
    if let Some(f) = &o.filter {
        use crate::resolve::header;
        let share = if f.live == 0 { 0.0 } else { f.allowed as f64 / f.live as f64 };
        let paths: Vec<&str> = f.paths.iter().map(|p| p.as_str()).collect();
        let values = [
            (header::FILTER_SELECTIVITY, format!("{share:.6}")),
            (header::FILTER_ALLOWED, f.allowed.to_string()),
            (header::FILTER_PATHS, if paths.is_empty() { "exact".into() } else { paths.join(",") }),
        ];
        for (name, value) in values {
            if let Ok(v) = value.parse() {
                h.insert(name, v);
            }
        }
        if !f.unindexed.is_empty() {
            // Keys may hold commas and any non-control text: each is
            // percent-encoded (RFC 3986 unreserved characters kept), then
            // joined by commas.
            // At most 16 keys (a header line must stay readable), then `+N`.
            let mut keys: Vec<String> = f.unindexed.iter().take(16).map(|k| percent_encode(k)).collect();
            if f.unindexed.len() > 16 {
                keys.push(format!("+{}", f.unindexed.len() - 16));
            }
            if let Ok(v) = keys.join(",").parse() {
                h.insert(header::FILTER_UNINDEXED, v);
            }
        }
    }
    h
}

/// `text` with every byte but RFC 3986's unreserved characters (and `.`,
/// `[`, `]` of keys) as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~[]".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Hands a collection search to the recall monitor, under its profile's
/// label (`+filter` for a filtered one, whose exact run searches the points
/// the filter lets through). A search of memory segments only is exact and
/// not offered.
pub(crate) fn offer_to_monitor(
    state: &AppState,
    c: &Arc<Collection>,
    opts: &vectorwise_store::SearchOptions,
    query: &[f32],
    outcome: &vectorwise_store::SearchOutcome,
) {
    let Some(plan) = &outcome.plan else { return };
    let promised = plan.profile.map(vectorwise_index::Profile::target);
    let label = if opts.filter.is_some() { format!("{}+filter", plan.label) } else { plan.label.to_string() };
    let ids: Vec<u64> = outcome.hits.iter().map(|h| h.key).collect();
    let searched = || crate::monitor::Searched::Collection(Arc::clone(c), opts.filter.clone());
    state.monitor().offer_searched(searched, &label, promised, query, opts.k, &ids);
}

/// Searches `c` for every query, in order, on the rayon pool from a blocking
/// task that holds `permit` (`Collection::search_many`: a filter is applied
/// to each sealed segment once for the batch); a query the metric refuses is
/// a 422 at `loc(i)`. A single query with a `cost` key is dispatched as
/// `/collections/{name}/search` dispatches it (`dispatch.rs`).
/// With the time the searches took.
pub(crate) async fn search_all(
    state: AppState,
    c: Arc<Collection>,
    queries: Vec<Vec<f32>>,
    opts: vectorwise_store::SearchOptions,
    permit: SearchPermit,
    cost: Option<u64>,
    loc: impl Fn(usize) -> Vec<LocItem> + Send + Sync + 'static,
) -> Result<(Vec<vectorwise_store::SearchOutcome>, std::time::Duration), ApiError> {
    let dispatch = Arc::clone(state.dispatch());
    let queries_len = queries.len();
    let search = move || {
        let _permit = permit;
        let start = std::time::Instant::now();
        // One filter evaluation per sealed segment for the whole batch.
        let outcomes = c
            .search_many(&queries, &opts)?
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| outcome.map_err(|e| ApiError::from(e).located(|_| loc(i))))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let took = start.elapsed();
        for (q, outcome) in queries.iter().zip(&outcomes) {
            offer_to_monitor(&state, &c, &opts, q, outcome);
        }
        Ok((outcomes, took))
    };
    match cost {
        Some(key) if queries_len == 1 => dispatch.run(key, search).await,
        _ => dispatch.pool(search).await,
    }
}

/// The k nearest live points of the collection, merged over its segments by exact distance.
#[utoipa::path(post, path = "/collections/{name}/search", tag = "search", operation_id = "search_collection", request_body = CollectionSearchRequest,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "min(k, points) hits, nearest first", body = CollectionSearchResponse,
            headers(("x-vectorwise-widened" = bool, description = "`true` when the query was unlike the calibration's queries and was searched more widely to keep the promise; absent otherwise"))),
        (status = 400, description = "The vector's length is not the collection's dimension, or a binary body is not one vector of it", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 422, description = "Invalid body", body = ValidationErrorResponse),
        (status = 503, description = "Too many pending searches", body = ErrorResponse)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    Path(name): Path<String>,
    SearchBody(req): SearchBody<CollectionSearchRequest>,
) -> Result<Response, ApiError> {
    let c = collection(&state, &name)?;
    if req.vector.len() != c.dimension() {
        return Err(ApiError::VectorDimension { field: "vector".into(), expected: c.dimension(), actual: req.vector.len() });
    }
    let search = SearchOptions { profile: req.profile, recall_target: req.recall_target, ef_search: req.ef_search };
    let opts = store_options(&state, req.k, req.with_payload, req.with_vector, &search, 1, req.filter);
    // The version is read before the search runs (see `cache.rs`).
    let target = Target::collection(&c);
    let query = Query {
        shape: Shape::Hits,
        target,
        k: opts.k,
        request: opts.request,
        with_payload: opts.with_payload,
        with_vector: opts.with_vector,
        filter: opts.filter.as_deref(),
        vector: &req.vector,
    };
    let key = state.cache().key(&query);
    // What dispatch.rs learns the cost of: the query without its vector.
    let cost = crate::cache::Key::cost(&query);
    if let Some(key) = &key
        && let Some(hit) = state.cache().get(key).await
    {
        return Ok(hit);
    }
    let permit = state.try_acquire_search(SearchKind::Single, 1)?;
    let with_payload = opts.with_payload;
    let monitored = state.clone();
    let searched = Arc::clone(&c);
    let (outcome, took) = state.dispatch().run(cost, move || {
        let _permit = permit;
        let start = std::time::Instant::now();
        let outcome = c.search(&req.vector, &opts)?;
        let took = start.elapsed();
        offer_to_monitor(&monitored, &c, &opts, &req.vector, &outcome);
        Ok((outcome, took))
    })
    .await
    .map_err(|e| e.located(|_| vec!["body".into(), "vector".into()]))?;
    let mut headers = outcome_headers(&outcome);
    if outcome.widened {
        headers.insert(crate::resolve::header::WIDENED, axum::http::HeaderValue::from_static("true"));
    }
    let body = json_bytes(&hits_out(outcome.hits, with_payload))?;
    let shareable = target.unchanged(Some(&searched));
    Ok(crate::routes::keep(&state, key, headers, body, took, shareable))
}

/// Longest `x-vectorwise-widened-queries` value sent: proxies refuse large
/// header sections (nginx by default past 4 KiB: a 502).
const WIDENED_LIST_MAX: usize = 2048;

/// A batch's widened queries, when there are any: how many in
/// `x-vectorwise-widened-count`, and which in `x-vectorwise-widened-queries`
/// as indices and ranges (`0-3,7,9-12`), left out when that would pass
/// [`WIDENED_LIST_MAX`] bytes.
pub(crate) fn widened_queries(headers: &mut HeaderMap, widened: impl Iterator<Item = bool>) {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut count = 0;
    for (i, _) in widened.enumerate().filter(|(_, w)| *w) {
        count += 1;
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    if count == 0 {
        return;
    }
    headers.insert(crate::resolve::header::WIDENED_COUNT, axum::http::HeaderValue::from(count));
    let list = runs.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",");
    if list.len() <= WIDENED_LIST_MAX
        && let Ok(value) = axum::http::HeaderValue::from_str(&list)
    {
        headers.insert(crate::resolve::header::WIDENED_QUERIES, value);
    }
}

/// `/collections/{name}/search` for many vectors, in request order.
#[utoipa::path(post, path = "/collections/{name}/search/batch", tag = "search", operation_id = "search_collection_batch", request_body = CollectionSearchBatchRequest,
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "One result per vector", body = CollectionSearchBatchResponse,
            headers(("x-vectorwise-widened-queries" = String, description = "The vectors (indices from 0, and ranges: `0-3,7,9-12`) that were unlike the calibration's queries and were searched more widely; absent when none was, or when the list would pass 2 KiB"),
                ("x-vectorwise-widened-count" = usize, description = "How many vectors were widened; absent when none was"))),
        (status = 400, description = "A vector's length is not the collection's dimension, or a binary body is not whole vectors of it", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 422, description = "Invalid body", body = ValidationErrorResponse),
        (status = 503, description = "Too many pending searches", body = ErrorResponse)))]
pub(crate) async fn search_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    SearchBody(req): SearchBody<CollectionSearchBatchRequest>,
) -> Result<(HeaderMap, Json<CollectionSearchBatchResponse>), ApiError> {
    let c = collection(&state, &name)?;
    // The batch budget is spent here, where the number of queries is known.
    state.admit(&caller, Budget::Batch, req.vectors.len())?;
    if let Some(i) = req.vectors.iter().position(|v| v.len() != c.dimension()) {
        return Err(ApiError::VectorDimension { field: format!("vectors[{i}]"), expected: c.dimension(), actual: req.vectors[i].len() });
    }
    let permit = state.try_acquire_search(SearchKind::Batch, req.vectors.len())?;
    let search = SearchOptions { profile: req.profile, recall_target: req.recall_target, ef_search: req.ef_search };
    let opts = store_options(&state, req.k, req.with_payload, req.with_vector, &search, req.vectors.len(), req.filter);
    let with_payload = opts.with_payload;
    let (outcomes, _) =
        search_all(state.clone(), c, req.vectors, opts, permit, None, |i| vec!["body".into(), "vectors".into(), LocItem::Index(i)]).await?;
    let mut headers = outcomes.first().map(outcome_headers).unwrap_or_default();
    widened_queries(&mut headers, outcomes.iter().map(|o| o.widened));
    let results = outcomes.into_iter().map(|o| hits_out(o.hits, with_payload)).collect();
    Ok((headers, Json(CollectionSearchBatchResponse { results })))
}
