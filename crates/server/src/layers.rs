//! Cross-cutting middleware: the access log (one line per request, with the
//! name of the API key used and the cache's verdict), request metrics, and CORS from the configured
//! origin list. Authorization is `auth.rs`'s.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};

/// Logs method, path, status and latency of every request at info level.
pub(crate) async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let latency_ms = (start.elapsed().as_secs_f64() * 1e3 * 1e3).round() / 1e3;
    // The key's name (never the key) when one was needed.
    let key = response.extensions().get::<crate::auth::KeyName>().map_or("-", |k| &*k.0);
    // `hit` / `miss` for a search the hot-query cache looked up.
    let cache = response.headers().get(crate::cache::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-");
    // On a hit, `memory` or `redis`.
    let cache_tier = response.headers().get(crate::cache::TIER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info!(%method, %path, status = response.status().as_u16(), latency_ms, key, cache, cache_tier, "request");
    response
}

/// Counts every request and times it by its matched route template (never
/// the raw path, which clients choose); see `telemetry.rs`.
pub(crate) async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let response = next.run(req).await;
    state.metrics().http_request(route.as_deref(), &method, response.status(), start.elapsed());
    response
}

/// `*` (or an entry `*`) allows any origin; else only the listed ones.
/// Entries that are not valid header values are skipped with a warning.
pub(crate) fn cors(origins: &str) -> CorsLayer {
    let entries: Vec<&str> = origins.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    let allow = if entries.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(entries.iter().filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring invalid CORS origin");
                None
            }
        }))
    };
    // Browsers may read the headers that say which profile and setting a search used.
    // And `Location`, which names a submitted batch job.
    let mut expose: Vec<axum::http::HeaderName> =
        crate::resolve::header::ALL.iter().map(|h| axum::http::HeaderName::from_static(h)).collect();
    expose.push(axum::http::header::LOCATION);
    // Request headers mirrored rather than `*`: a wildcard does not cover
    // `Authorization` (Fetch standard), which keyed browser clients send.
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods(Any)
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(expose)
}
