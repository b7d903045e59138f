//! The access log: one info line per request with method, path, status and
//! latency. Its own test binary, so that the global subscriber it installs
//! sees only these requests (tracing's per-thread subscribers race with
//! other tests' callsite registration).

mod common;

use axum::body::Body;
use common::Captured;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vectorwise_server::{AppState, ServerConfig, app};

#[tokio::test]
async fn every_request_is_logged_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // No index: `/` is 503, and the log still says so.
    let app = app(AppState::new(ServerConfig::default()));
    for (method, path, body) in [("GET", "/", ""), ("GET", "/nope", ""), ("POST", "/search", r#"{"k": 1}"#)] {
        let req = Request::builder().method(method).uri(path).body(Body::from(body)).unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        response.into_body().collect().await.unwrap();
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" request ")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, (method, path, status)) in
        lines.iter().zip([("GET", "/", 503), ("GET", "/nope", 404), ("POST", "/search", 422)])
    {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("method={method} path={path} status={status} latency_ms=")), "{line}");
        assert!(line.contains(r#"cache="-""#), "no search was looked up: {line}");
    }
}
