//! The API's handlers: health, stats, search, batch search, metrics, and the
//! 404/405 fallbacks. Searches run on tokio's blocking pool, at most
//! `max_pending_searches` queries at a time (queued or running; a batch counts
//! its queries); past that, 503 at once.

use crate::error::ApiError;
use crate::extract::SearchBody;
use crate::models::{
    CalibrationPoint, FieldError, LocItem, CalibrationStats, ErrorResponse, HealthResponse, HealthStatus, ProfileStats, RecallMonitorStats,
    SearchBatchRequest, SearchBatchResponse, SearchOptions, SearchRequest, SearchResponse, StatsResponse,
    ValidationErrorResponse,
};
use crate::resolve::{headers, resolve};
use crate::state::AppState;
use crate::telemetry::SearchKind;
use axum::Json;
use crate::auth::Caller;
use crate::ratelimit::Budget;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use crate::cache::{Keys, Query, Shape, Target, json_bytes, respond};
use axum::body::Bytes;
use axum::response::Response;
use std::time::{Duration, Instant};
use std::sync::Arc;
use vectorwise_index::plan::SearchPlan;
use vectorwise_index::{Calibration, Index, Neighbor, Profile};

pub(crate) const SERVICE_NAME: &str = "VectorWise";

/// The API routes (docs are added by `docs.rs`, fallbacks by `app`).
pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(health))
        .route("/stats", get(stats))
        .route("/search", post(search))
        .route("/search/batch", post(search_batch))
        .route("/metrics", get(metrics))
}

fn response(hits: Vec<Neighbor>) -> SearchResponse {
    SearchResponse { indices: hits.iter().map(|n| n.id).collect(), distances: hits.iter().map(|n| n.distance).collect() }
}

/// Health check: 200 once the index is served, 503 before.
#[utoipa::path(
    get, path = "/", tag = "health",
    responses(
        (status = 200, description = "Index loaded, searches served", body = HealthResponse),
        (status = 503, description = "Index still loading, or its load failed", body = HealthResponse),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let (code, status, vectors_indexed) = match state.index() {
        Ok(index) => (StatusCode::OK, HealthStatus::Healthy, diverged_default(&state).map_or(index.len(), |c| c.len())),
        Err(ApiError::IndexLoading) => (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Loading, 0),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Unavailable, 0),
    };
    (code, Json(HealthResponse { service: SERVICE_NAME.to_owned(), status, vectors_indexed }))
}

/// Index statistics and the search settings.
#[utoipa::path(
    get, path = "/stats", tag = "index",
    responses(
        (status = 200, description = "The served index", body = StatsResponse),
        (status = 503, description = "Index still loading, or its load failed", body = ErrorResponse),
    )
)]
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Json<StatsResponse>, ApiError> {
    // Before the index: a table counted as learnt is served already.
    let live_calibration = state.learner().stats();
    let index = state.index()?;
    let info = index.info();
    let config = state.config();
    let default = resolve(&index, config, 10, &SearchOptions::default());
    let monitor = state.monitor();
    let totals = monitor.totals();
    let written = diverged_default(&state);
    Ok(Json(StatsResponse {
        total_vectors: written.as_ref().map_or(info.count, |c| c.len()),
        dimension: info.dim,
        index_type: info.index_type.to_owned(),
        hnsw_m: info.hnsw_m,
        hnsw_ef_search: default.depth.unwrap_or(0),
        hnsw_ef_construction: info.ef_construction,
        metric: info.metric.as_str().to_owned(),
        // Written to, `default` holds the ids its writers gave.
        ids: if info.user_ids || written.is_some() { "user" } else { "row" }.to_owned(),
        format_version: info.format_version,
        file_size_bytes: info.file_size_bytes,
        build_seconds: info.build_seconds,
        load_seconds: info.load_seconds,
        simd: info.simd.to_owned(),
        max_k: config.max_k,
        index_path: index.path().display().to_string(),
        default_profile: default.label.to_owned(),
        calibration: index.calibration().map(calibration_stats),
        recall_monitor: RecallMonitorStats {
            sample_rate: monitor.config().sample_rate,
            cpu_share: monitor.config().cpu_share,
            sampled: totals.sampled,
            dropped: totals.dropped,
            evaluated: totals.exact_runs,
            profiles: monitor.snapshot(),
            widened: vectorwise_index::widened_searches(),
        },
        cache: state.cache().stats().into(),
        live_calibration,
    }))
}

/// `/stats`'s view of the stored calibration.
fn calibration_stats(c: &Calibration) -> CalibrationStats {
    let ms = |l: Option<vectorwise_index::calibrate::Latency>| (l.map(|l| l.p50_ms), l.map(|l| l.p95_ms));
    let profiles = c
        .profiles()
        .into_iter()
        .map(|p| {
            let (p50, p95) = ms(p.latency);
            ProfileStats {
                profile: p.profile.as_str().to_owned(),
                k: p.k,
                recall_target: p.profile.target(),
                method: p.choice.params.method.as_str().to_owned(),
                setting: p.choice.params.setting(),
                expected_recall: p.choice.expected_recall.unwrap_or(1.0),
                latency_p50_ms: p50,
                latency_p95_ms: p95,
            }
        })
        .collect();
    let mut table = Vec::new();
    for t in &c.tables {
        for p in &t.points {
            let (p50, p95) = ms(p.latency);
            table.push(CalibrationPoint {
                k: t.k,
                method: p.setting.method.as_str().to_owned(),
                setting: p.setting.setting(),
                recall_mean: p.recall_mean,
                recall_p10: p.recall_p10,
                latency_p50_ms: p50,
                latency_p95_ms: p95,
            });
        }
    }
    CalibrationStats { source: c.source.as_str().to_owned(), queries: c.queries, seconds: c.seconds, profiles, table }
}

/// Hands a searched query to the recall monitor (which samples a share of them).
fn offer_to_monitor(state: &AppState, index: &Arc<Index>, resolved: &SearchPlan, query: &[f32], k: usize, hits: &[Neighbor]) {
    // A profile's promise is fixed; a per-request target is not one label's.
    let promised = resolved.profile.map(Profile::target);
    let ids: Vec<u64> = hits.iter().map(|n| n.id).collect();
    state.monitor().offer(index, resolved.label, promised, query, k, &ids);
}

/// The engine's refusals of a query's values, as a 422 at the query's place
/// (`at` gives its `loc` and name from its index in the request), pydantic's
/// `value_error`, as any other invalid value: a zero query on a `cosine`
/// index (it has no direction), values too large for f32 distances.
pub(crate) fn located(error: ApiError, at: impl FnOnce(usize) -> (Vec<LocItem>, String)) -> ApiError {
    use vectorwise_index::Error as E;
    let (index, why) = match &error {
        ApiError::Engine(E::ZeroVector { index }) => {
            (*index, "must not be the zero vector: it has no direction under the cosine metric")
        }
        ApiError::Engine(E::TooLarge { index }) => (*index, "is too large: its squared norm must stay below 1e34"),
        ApiError::Engine(E::TooSmall { index }) => {
            (*index, "is too small: a non-zero vector's squared norm must be at least 1e-20 under l2 and ip")
        }
        _ => return error,
    };
    let (loc, name) = at(index);
    let reason = format!("{name} {why}");
    ApiError::Validation(vec![
        FieldError::new(loc, "value_error", format!("Value error, {reason}")).with_ctx(serde_json::json!({ "error": reason })),
    ])
}

/// k nearest neighbours of the query by the index's metric, ascending.
#[utoipa::path(
    post, path = "/search", tag = "search",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "min(k, total_vectors) neighbours, nearest first", body = SearchResponse,
            headers(
            ("x-vectorwise-profile" = String, description = "What chose the setting: `low_latency`, `balanced`, `high_accuracy`, `recall_target` or `ef_search`"),
            ("x-vectorwise-method" = String, description = "`hnsw`, `scan` or `exact`"),
            ("x-vectorwise-setting" = String, description = "The engine setting used: `ef=64`, `rerank=192`, `exact`"),
            ("x-vectorwise-ef-search" = usize, description = "Candidates examined (HNSW beam width, or the scan's rerank × k); absent for exact"),
            ("x-vectorwise-recall-target" = f64, description = "The recall@k asked for (profile or recall_target), when one was"),
            ("x-vectorwise-expected-recall" = f64, description = "Calibrated mean recall@k of the setting; absent when the index has no calibration"),
            ("x-vectorwise-widened" = bool, description = "`true` when the query was unlike the calibration's queries and was searched more widely to keep the promise; absent otherwise"),
        )),
        (status = 400, description = "query_vector's length is not the index's dimension, or a binary \
            body is not one query of it; or the body could not be read (sent slower than --body-timeout, or cut off)", body = ErrorResponse),
        (status = 409, description = "The answer holds a point of the collection `default` whose id is a UUID,             which `indices` cannot carry (the detail names it; search with POST /collections/default/search)", body = ErrorResponse),
        (status = 413, description = "Body larger than the configured limit", body = ErrorResponse),
        (status = 422, description = "Invalid body: every problem, located. Also an empty or `null` body, \
            a body whose Content-Type is neither JSON (`application/json`, `application/*+json` \
            or none) nor binary (`application/octet-stream`, `application/x-npy`), and a query the index's metric refuses: the zero vector under \
            `cosine`, a squared norm of 1e34 or more under `l2` and `ip`", body = ValidationErrorResponse),
        (status = 500, description = "Internal error (details in the server log)", body = ErrorResponse),
        (status = 503, description = "Index not loaded, or too many pending searches", body = ErrorResponse,
            headers(("retry-after" = u32, description = "`1`, when the searches pending are too many"))),
    )
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    SearchBody(request): SearchBody<SearchRequest>,
) -> Result<Response, ApiError> {
    let (index, generation) = state.served()?;
    let options = request.options();
    let planned = crate::resolve::request(state.config(), &options);
    if let Some(c) = diverged_default(&state) {
        // The version is read before the search (see `cache.rs`).
        let target = Target::collection(&c);
        let key = (request.query_vector.len() == c.dimension())
            .then(|| state.cache().key(&demo_query(target, request.k, planned, &request.query_vector)))
            .flatten();
        if let Some(key) = &key
            && let Some(hit) = state.cache().get(key).await
        {
            return Ok(hit);
        }
        let (headers, mut results, took) =
            search_default(&state, Arc::clone(&c), vec![request.query_vector], request.k, &options, false).await?;
        let body = json_bytes(&results.pop().unwrap_or(SearchResponse { indices: vec![], distances: vec![] }))?;
        let shareable = target.unchanged(Some(&c));
        return Ok(keep(&state, key, headers, body, took, shareable));
    }
    let SearchRequest { query_vector: query, k, .. } = request;
    if query.len() != index.dim() {
        return Err(ApiError::DimensionMismatch { expected: index.dim(), actual: query.len() });
    }
    let target = Target::Index { generation, file: index.file_identity() };
    let key = state.cache().key(&demo_query(target, k, planned, &query));
    if let Some(key) = &key
        && let Some(hit) = state.cache().get(key).await
    {
        return Ok(hit);
    }
    let permit = state.try_acquire_search(SearchKind::Single, 1)?;
    let resolved = index.plan(k, planned);
    let mut headers = headers(&resolved);
    let monitored = state.clone();
    let cost = crate::cache::Key::cost(&demo_query(target, k, planned, &[]));
    let (hits, took, widened) = state.dispatch().run(cost, move || {
        // Held until the search ends, even if the client has gone away.
        let _permit = permit;
        let start = Instant::now();
        let (hits, widened) = vectorwise_index::widened_in(|| index.search(&query, k, &resolved.params));
        let took = start.elapsed();
        monitored.metrics().search(SearchKind::Single, took);
        if let Ok(hits) = &hits {
            offer_to_monitor(&monitored, &index, &resolved, &query, k, hits);
            // What the table chooses for (a profile, a recall target short
            // of exact) is what it learns from.
            let tabled = match planned {
                vectorwise_index::plan::SearchRequest::Profile(_) => true,
                vectorwise_index::plan::SearchRequest::RecallTarget(r) => r < 1.0,
                vectorwise_index::plan::SearchRequest::EfSearch(_) => false,
            };
            if tabled {
                monitored.learner().offer(&monitored, &index, generation, &query, widened);
            }
        }
        hits.map(|hits| (hits, took, widened))
            .map_err(|e| located(e.into(), |_| (vec!["body".into(), "query_vector".into()], "query_vector".into())))
    })
    .await?;
    if widened {
        headers.insert(crate::resolve::header::WIDENED, axum::http::HeaderValue::from_static("true"));
    }
    let body = json_bytes(&response(hits))?;
    Ok(keep(&state, key, headers, body, took, true))
}

/// A `/search` on `target`, as the cache keys it.
fn demo_query(target: Target, k: usize, request: vectorwise_index::plan::SearchRequest, vector: &[f32]) -> Query<'_> {
    Query { shape: Shape::Demo, target, k, request, with_payload: false, with_vector: false, filter: None, vector }
}

/// The response to a search computed in `took`, kept in the cache under
/// `key` (none: the cache is off), in the shared tier too when `shareable`
/// (see [`Target::unchanged`]).
pub(crate) fn keep(state: &AppState, key: Option<Keys>, headers: HeaderMap, body: Bytes, took: Duration, shareable: bool) -> Response {
    let verdict = key.is_some().then_some("miss");
    if let Some(key) = key {
        state.cache().put(key, headers.clone(), body.clone(), took, shareable);
    }
    respond(headers, body, verdict)
}

/// k nearest neighbours of each query, as `/search` answers one, in request order.
#[utoipa::path(
    post, path = "/search/batch", tag = "search",
    request_body = SearchBatchRequest,
    responses(
        (status = 200, description = "One result per query, in request order", body = SearchBatchResponse,
            headers(
            ("x-vectorwise-profile" = String, description = "What chose the setting: `low_latency`, `balanced`, `high_accuracy`, `recall_target` or `ef_search`"),
            ("x-vectorwise-method" = String, description = "`hnsw`, `scan` or `exact`"),
            ("x-vectorwise-setting" = String, description = "The engine setting used: `ef=64`, `rerank=192`, `exact`"),
            ("x-vectorwise-ef-search" = usize, description = "Candidates examined (HNSW beam width, or the scan's rerank × k); absent for exact"),
            ("x-vectorwise-recall-target" = f64, description = "The recall@k asked for (profile or recall_target), when one was"),
            ("x-vectorwise-expected-recall" = f64, description = "Calibrated mean recall@k of the setting; absent when the index has no calibration"),
            ("x-vectorwise-widened-queries" = String, description = "The queries (indices from 0, and ranges: `0-3,7`) that were unlike the calibration's and were searched more widely; absent when none was, or when the list would pass 2 KiB"),
            ("x-vectorwise-widened-count" = usize, description = "How many queries were widened; absent when none was"),
        )),
        (status = 400, description = "A query's length is not the index's dimension (the detail names \
            the query), or a binary body is not whole queries of it; or the body could not be read (sent slower than --body-timeout, or cut off)",
            body = ErrorResponse),
        (status = 409, description = "An answer holds a point of the collection `default` whose id is a UUID,             which `indices` cannot carry (the detail names it; search with POST /collections/default/search/batch)", body = ErrorResponse),
        (status = 413, description = "Body larger than the configured limit", body = ErrorResponse),
        (status = 422, description = "Invalid body, empty batch, or more than max_batch queries; \
            every problem located (`loc` holds the query's index). Also an empty or `null` body, a body \
            whose Content-Type is neither JSON (`application/json`, `application/*+json` or none) nor \
            binary (`application/octet-stream`, `application/x-npy`), and a query the index's metric refuses: the zero vector under `cosine`, \
            a squared norm of 1e34 or more under `l2` and `ip`", body = ValidationErrorResponse),
        (status = 500, description = "Internal error (details in the server log)", body = ErrorResponse),
        (status = 503, description = "Index not loaded, or too many pending searches", body = ErrorResponse,
            headers(("retry-after" = u32, description = "`1`, when the searches pending are too many"))),
    )
)]
pub(crate) async fn search_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    SearchBody(request): SearchBody<SearchBatchRequest>,
) -> Result<(HeaderMap, Json<SearchBatchResponse>), ApiError> {
    let index = state.index()?;
    // The batch budget is spent here, where the number of queries is known.
    state.admit(&caller, Budget::Batch, request.query_vectors.len())?;
    let options = request.options();
    if let Some(c) = diverged_default(&state) {
        return search_default(&state, c, request.query_vectors, request.k, &options, true)
            .await
            .map(|(h, results, _)| (h, Json(SearchBatchResponse { results })));
    }
    let SearchBatchRequest { query_vectors, k, .. } = request;
    let dim = index.dim();
    if let Some((query, q)) = query_vectors.iter().enumerate().find(|(_, q)| q.len() != dim) {
        return Err(ApiError::BatchDimensionMismatch { query, expected: dim, actual: q.len() });
    }
    let n = query_vectors.len();
    let permit = state.try_acquire_search(SearchKind::Batch, n)?;
    let resolved = resolve(&index, state.config(), k, &options);
    let mut headers = headers(&resolved);
    // One blocking task for the whole batch; the engine spreads its queries
    // over the rayon pool.
    let dispatch = Arc::clone(state.dispatch());
    let results = dispatch.pool(move || {
        let _permit = permit;
        let flat: Vec<f32> = query_vectors.concat();
        state.metrics().batch_size(n);
        let start = Instant::now();
        let results = index.search_batch_flagged(&flat, k, &resolved.params);
        state.metrics().search(SearchKind::Batch, start.elapsed());
        if let Ok(results) = &results {
            for (query, (hits, _)) in flat.chunks_exact(dim).zip(results) {
                offer_to_monitor(&state, &index, &resolved, query, k, hits);
            }
        }
        Ok(results)
    })
    .await?
    .map_err(|e| located(e.into(), |i| (vec!["body".into(), "query_vectors".into(), i.into()], format!("query_vectors[{i}]"))))?;
    // Which queries were widened, as the collections' batch says it.
    crate::collections::widened_queries(&mut headers, results.iter().map(|(_, w)| *w));
    Ok((headers, Json(SearchBatchResponse { results: results.into_iter().map(|(hits, _)| response(hits)).collect() })))
}

/// The collection `default` (the served index, imported) once writes have
/// made it differ from the index file: the demo's routes then answer from
/// it, so they see every write. Until then they read the file directly.
fn diverged_default(state: &AppState) -> Option<Arc<vectorwise_store::Collection>> {
    let c = state.store()?.get(crate::DEFAULT_COLLECTION).ok()?;
    (!c.is_pristine_import()).then_some(c)
}

/// `/search` and `/search/batch` on the collection `default`: the same
/// checks, answers in the demo's shape (its ids as `indices`).
async fn search_default(
    state: &AppState,
    c: Arc<vectorwise_store::Collection>,
    queries: Vec<Vec<f32>>,
    k: usize,
    options: &SearchOptions,
    batch: bool,
) -> Result<(HeaderMap, Vec<SearchResponse>, Duration), ApiError> {
    let dim = c.dimension();
    let c_name = c.name().to_string();
    if let Some((query, q)) = queries.iter().enumerate().find(|(_, q)| q.len() != dim) {
        return Err(if batch {
            ApiError::BatchDimensionMismatch { query, expected: dim, actual: q.len() }
        } else {
            ApiError::DimensionMismatch { expected: dim, actual: q.len() }
        });
    }
    let kind = if batch { SearchKind::Batch } else { SearchKind::Single };
    let permit = state.try_acquire_search(kind, queries.len())?;
    let opts = vectorwise_store::SearchOptions {
        k,
        request: crate::resolve::request(state.config(), options),
        with_payload: false,
        with_vector: false,
        payload_budget: 0,
        filter: None,
    };
    let cost = (!batch).then(|| {
        let target = crate::cache::Target::collection(&c);
        crate::cache::Key::cost(&demo_query(target, k, opts.request, &[]))
    });
    let (outcomes, took) = crate::collections::search_all(state.clone(), c, queries, opts, permit, cost, move |i| {
        if batch { vec!["body".into(), "query_vectors".into(), i.into()] } else { vec!["body".into(), "query_vector".into()] }
    })
    .await?;
    let mut headers = outcomes.first().map(crate::collections::outcome_headers).unwrap_or_default();
    if batch {
        crate::collections::widened_queries(&mut headers, outcomes.iter().map(|o| o.widened));
    } else if outcomes.first().is_some_and(|o| o.widened) {
        headers.insert(crate::resolve::header::WIDENED, HeaderValue::from_static("true"));
    }
    let name = c_name;
    let results = outcomes
        .into_iter()
        .map(|o| {
            let indices = o
                .hits
                .iter()
                .map(|h| match h.id {
                    vectorwise_store::PointId::Num(n) => Ok(n),
                    id @ vectorwise_store::PointId::Uuid(_) => Err(ApiError::UuidInIntegerAnswer {
                        uuid: id.to_string(),
                        collection: name.clone(),
                        route: if batch { "search/batch" } else { "search" },
                    }),
                })
                .collect::<Result<_, _>>()?;
            Ok(SearchResponse { indices, distances: o.hits.iter().map(|h| h.distance).collect() })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok((headers, results, took))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "Every `vectorwise_*` series (see README, Metrics)", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    if let Some(store) = state.store() {
        let all: Vec<_> = store.list().iter().filter_map(|(name, _)| store.get(name).ok()).map(|c| c.stats()).collect();
        state.metrics().collections(&all);
    }
    state.metrics().cache(&state.cache().stats(), state.dispatch().counts());
    ([(header::CONTENT_TYPE, content_type)], state.metrics().render())
}

/// 404 for unknown paths, FastAPI's body.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// 405 for known paths with another method, FastAPI's body.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
