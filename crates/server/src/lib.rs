//! The VectorWise HTTP API (axum), compatible with the FastAPI demo it
//! replaces: `GET /`, `GET /stats`, `POST /search`, FastAPI-shaped errors,
//! OpenAPI at `/openapi.json`, Swagger UI at `/docs`, ReDoc at `/redoc`; and
//! beyond the demo, `POST /search/batch` and Prometheus metrics at `/metrics`.
//!
//! Modules: `state` (config, the index slot, search permits), `routes`
//! (handlers), `extract` + `validate` (body parsing and pydantic-style rules),
//! `binary` (search bodies of raw f32 or `.npy`, fields in the query string),
//! `models` (wire types), `error` (the one error -> status mapping), `docs`,
//! `layers` (access log, request metrics, CORS), `telemetry` (the per-state
//! Prometheus recorder and its series), `auth` (API keys, roles and the one
//! table of what each route needs), `ratelimit` (per-caller budgets),
//! `cache` (the hot-query cache of search answers), `snapshots` (take,
//! list, download and delete collection snapshots), `jobs` (batch jobs run
//! in the background, persisted, their answers downloadable).
//!
//! The CLI builds an [`AppState`], calls [`app`] and serves it with
//! [`serve`] or [`serve_tls`] (`listener`: the accept loop, connection
//! limits, draining shutdown; `tls`: rustls settings, HTTP/2 by ALPN); it may
//! start serving before the index is loaded and call [`AppState::set_index`]
//! (or [`AppState::set_failed`]) later.

#![forbid(unsafe_code)]

mod auth;
mod binary;
mod cache;
mod collections;
mod dispatch;
mod docs;
mod error;
mod extract;
mod filter;
mod jobs;
mod layers;
pub mod learn;
mod listener;
mod models;
mod multipart;
pub mod monitor;
mod ratelimit;
mod resolve;
mod routes;
mod shared_cache;
mod snapshots;
mod state;
mod telemetry;
mod tls;
mod validate;

pub use auth::{ApiKey, KeyFileError, KeyHash, Keys, Role, check_plain_key, hash_key, load_key_file, parse_key_file, to_hex, valid_key_name};
pub use cache::DEFAULT_CACHE_BYTES;
pub use jobs::JobLimits;
pub use shared_cache::{DEFAULT_TIMEOUT as DEFAULT_CACHE_TIMEOUT, DEFAULT_TTL as DEFAULT_CACHE_TTL, check_url as check_cache_url};
pub use docs::{openapi, openapi_for};
pub use error::ApiError;
pub use models::{
    ErrorResponse, FieldError, HealthResponse, HealthStatus, LocItem, SearchBatchRequest, SearchBatchResponse,
    SearchOptions, SearchRequest, SearchResponse, StatsResponse, ValidationErrorResponse,
};
pub use listener::{ConnectionLimits, serve, serve_tls};
pub use tls::{Tls, TlsError};
pub use ratelimit::{Budget, RateLimits};
pub use state::{AppState, ServerConfig};

/// A collection search's `filter` written as JSON text (the API's shape),
/// as the store's [`vectorwise_store::Filter`], by the same rules as `POST
/// /collections/{name}/search` (a key repeated in an object is refused, as
/// there); `null` is no filter. On a bad filter, a message naming the first
/// problem's place (`filter.must.0.match: ...`), for the command line's
/// in-process search.
pub fn parse_filter(text: &str) -> Result<Option<vectorwise_store::Filter>, String> {
    let value = serde_json::from_str::<extract::NoDuplicateKeys>(text).map_err(|e| format!("not a JSON filter: {e}"))?.0;
    let mut errors = Vec::new();
    match filter::parse(&value, &[LocItem::from("filter")], &mut errors) {
        Some(f) if errors.is_empty() => Ok(f),
        _ => Err(errors.first().map_or_else(
            || "invalid filter".to_owned(),
            |e| {
                let loc: Vec<String> = e.loc.iter().map(|l| match l {
                    LocItem::Key(k) => k.clone(),
                    LocItem::Index(i) => i.to_string(),
                }).collect();
                format!("{}: {}", loc.join("."), e.msg)
            },
        )),
    }
}

use axum::extract::DefaultBodyLimit;

/// The collection the served index is (`serve` imports it under this name):
/// the demo's routes answer from it once it has been written to.
pub const DEFAULT_COLLECTION: &str = "default";

/// The whole service: API routes, docs, body limit, authorization and rate
/// limits, CORS, access log and request metrics.
pub fn app(state: AppState) -> axum::Router {
    let config = state.config().clone();
    routes::router()
        .merge(collections::router())
        .merge(snapshots::router())
        .merge(jobs::router())
        .merge(docs::router())
        // After the merge, so that the docs routes get the 405 body too.
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(config.body_timeout))
        // Inside CORS, so that preflights (which carry no key) are answered
        // and 401/403/429 carry the CORS headers a browser needs to read them;
        // outside the body's layers, so that a refused request's body is
        // never read.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .layer(layers::cors(&config.cors_origins))
        .layer(axum::middleware::from_fn(layers::access_log))
        // Outermost, so its latency covers every other layer. `Router::layer`
        // wraps each route after routing, so the matched route is known.
        .layer(axum::middleware::from_fn_with_state(state.clone(), layers::record_metrics))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use telemetry::SearchKind::{Batch, Single};
    use tower::ServiceExt;
    use vectorwise_index::{Index, build_index, dataset, hnsw};

    /// Saturation, deterministically: with every permit held by (stand-ins
    /// for) running searches the next one is 503; once one ends, it is served.
    #[tokio::test]
    async fn a_full_search_pool_answers_503_until_a_permit_frees() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.vwi");
        let data = dataset::sphere(50, 8, 1);
        build_index(
            &data,
            &path,
            &hnsw::BuildOptions { m: 8, ef_construction: 32, threads: Some(1), seed: 1 },
            &|_| {},
        )
        .unwrap();
        let config = ServerConfig { max_pending_searches: 2, ..ServerConfig::default() };
        let state = AppState::with_index(config, Arc::new(Index::open(&path).unwrap()));
        let app = app(state.clone());
        let request = || {
            let body = serde_json::json!({"query_vector": data.row(3), "k": 1}).to_string();
            Request::post("/search").header("content-type", "application/json").body(Body::from(body)).unwrap()
        };

        let held = [state.try_acquire_search(Single, 1).unwrap(), state.try_acquire_search(Single, 1).unwrap()];
        assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
        // The permit went back when the search ended.
        let _all = [state.try_acquire_search(Single, 1).unwrap(), state.try_acquire_search(Single, 1).unwrap()];
    }

    /// A batch takes one permit per query (all or none), capped at the whole
    /// bound so that a batch larger than the bound can still run when idle.
    #[tokio::test]
    async fn a_batch_counts_its_queries_against_the_bound() {
        let state = AppState::new(ServerConfig { max_pending_searches: 4, ..ServerConfig::default() });
        let one = state.try_acquire_search(Single, 1).unwrap();
        assert!(state.try_acquire_search(Batch, 4).is_err(), "4 queries need 4 free permits");
        let three = state.try_acquire_search(Batch, 3).unwrap();
        assert!(state.try_acquire_search(Single, 1).is_err());
        drop((one, three));
        // Larger than the bound: takes all 4, so nothing else fits meanwhile.
        let big = state.try_acquire_search(Batch, 1000).unwrap();
        assert!(state.try_acquire_search(Single, 1).is_err());
        drop(big);
        let _ = state.try_acquire_search(Single, 1).unwrap();
        // A bound of 0 refuses everything, batches included.
        let none = AppState::new(ServerConfig { max_pending_searches: 0, ..ServerConfig::default() });
        assert!(none.try_acquire_search(Batch, 5).is_err() && none.try_acquire_search(Single, 1).is_err());
    }

    /// The in-flight gauge counts queries (uncapped) while their permits are held.
    #[test]
    fn in_flight_counts_the_queries_holding_permits() {
        let state = AppState::new(ServerConfig { max_pending_searches: 4, ..ServerConfig::default() });
        let gauge = |state: &AppState| {
            let text = state.metrics().render();
            let line = text.lines().find(|l| l.starts_with("vectorwise_searches_in_flight ")).unwrap().to_owned();
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        let batch = state.try_acquire_search(Batch, 10).unwrap();
        assert_eq!(gauge(&state), 10.0);
        assert!(state.try_acquire_search(Single, 1).is_err(), "the batch holds the whole bound");
        assert_eq!(gauge(&state), 10.0, "a refused request adds nothing");
        drop(batch);
        let single = state.try_acquire_search(Single, 1).unwrap();
        assert_eq!(gauge(&state), 1.0);
        drop(single);
        assert_eq!(gauge(&state), 0.0);
    }
}
