//! `GET /metrics` over a real socket: after known traffic every counter has
//! moved by exactly the right amount, labels are route templates (never raw
//! paths), and each server's counts are its own.

mod common;

use common::{FIXTURE, N, SMALL_N, Server, query, row, state_with};
use serde_json::json;
use std::sync::Arc;
use vectorwise_server::{AppState, ServerConfig};

const REQUESTS: &str = "vectorwise_http_requests_total";

#[test]
fn counters_move_by_the_traffic_sent() {
    let server = Server::start(state_with(ServerConfig::default()));
    let before = server.scrape();
    // A fresh state: nothing counted yet, rejections exported at 0.
    assert!(before.label_sets(REQUESTS).is_empty(), "{}", before.text);
    assert_eq!(before.value("vectorwise_searches_rejected_total", &[("kind", "single")]), Some(0.0));
    assert_eq!(before.value("vectorwise_searches_in_flight", &[]), Some(0.0));

    for _ in 0..3 {
        assert_eq!(server.get("/").status, 200);
    }
    assert_eq!(server.get("/stats").status, 200);
    for i in 0..2 {
        assert_eq!(server.post_json("/search", &json!({"query_vector": row(i), "k": 5})).status, 200);
    }
    assert_eq!(server.post_json("/search", &json!({"query_vector": row(0), "k": 0})).status, 422);
    assert_eq!(server.post_json("/search", &json!({"query_vector": [1.0], "k": 5})).status, 400);
    let batch = |n: u64| json!({"query_vectors": (0..n).map(query).collect::<Vec<_>>(), "k": 3});
    assert_eq!(server.post_json("/search/batch", &batch(3)).status, 200);
    assert_eq!(server.post_json("/search/batch", &batch(5)).status, 200);
    assert_eq!(server.post_json("/search/batch", &batch(0)).status, 422);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.get("/a/b/c?x=1").status, 404);
    assert_eq!(server.get("/search").status, 405);
    assert_eq!(server.get("/docs/no-such-file.js").status, 404);

    let m = server.scrape();
    let requests = |route: &str, method: &str, status: &str| {
        m.count(REQUESTS, &[("route", route), ("method", method), ("status", status)])
    };
    assert_eq!(requests("/", "GET", "200"), 3.0);
    assert_eq!(requests("/stats", "GET", "200"), 1.0);
    assert_eq!(requests("/search", "POST", "200"), 2.0);
    assert_eq!(requests("/search", "POST", "422"), 1.0);
    assert_eq!(requests("/search", "POST", "400"), 1.0);
    assert_eq!(requests("/search", "GET", "405"), 1.0);
    assert_eq!(requests("/search/batch", "POST", "200"), 2.0);
    assert_eq!(requests("/search/batch", "POST", "422"), 1.0);
    assert_eq!(requests("unmatched", "GET", "404"), 2.0);
    assert_eq!(requests("/docs/{*file}", "GET", "404"), 1.0);
    // Nothing else was counted: those 15 and the first scrape (a scrape is
    // counted once it is answered, so this one is not in its own figures).
    assert_eq!(requests("/metrics", "GET", "200"), 1.0);
    let total: f64 = m.samples.iter().filter(|(n, ..)| n == REQUESTS).map(|s| s.2).sum();
    assert_eq!(total, 16.0, "{}", m.text);
    assert!(!m.text.contains("/nope") && !m.text.contains("/a/b/c"), "raw paths leaked:\n{}", m.text);

    // Latency histograms: one observation per request, by route.
    let duration = "vectorwise_http_request_duration_seconds_count";
    assert_eq!(m.count(duration, &[("route", "/search")]), 5.0);
    assert_eq!(m.count(duration, &[("route", "/search/batch")]), 3.0);
    assert_eq!(m.count(duration, &[("route", "unmatched")]), 2.0);
    let buckets = m.label_sets("vectorwise_http_request_duration_seconds_bucket");
    let les: Vec<&str> =
        buckets.iter().filter(|l| l["route"] == "/").map(|l| l["le"].as_str()).collect();
    assert_eq!(les.first(), Some(&"0.0001"));
    assert_eq!(&les[les.len() - 2..], ["10", "+Inf"]);
    // Engine time: one observation per search call, a batch being one call.
    assert_eq!(m.count("vectorwise_search_duration_seconds_count", &[("kind", "single")]), 2.0);
    assert_eq!(m.count("vectorwise_search_duration_seconds_count", &[("kind", "batch")]), 2.0);
    assert!(m.count("vectorwise_search_duration_seconds_sum", &[("kind", "batch")]) > 0.0);
    assert_eq!(m.count("vectorwise_search_batch_size_count", &[]), 2.0);
    assert_eq!(m.count("vectorwise_search_batch_size_sum", &[]), 8.0);
    assert_eq!(m.count("vectorwise_search_batch_size_bucket", &[("le", "4")]), 1.0);
    assert_eq!(m.count("vectorwise_search_batch_size_bucket", &[("le", "8")]), 2.0);
    // Nothing in flight after the answers; no overload.
    assert_eq!(m.value("vectorwise_searches_in_flight", &[]), Some(0.0));
    assert_eq!(m.count("vectorwise_searches_rejected_total", &[("kind", "single")]), 0.0);
    assert_eq!(m.count("vectorwise_searches_rejected_total", &[("kind", "batch")]), 0.0);
    // The index.
    assert_eq!(m.value("vectorwise_vectors_indexed", &[]), Some(N as f64));
    assert!(m.value("vectorwise_index_load_seconds", &[]).unwrap() >= 0.0);
    let info = m.label_sets("vectorwise_build_info");
    assert_eq!(info.len(), 1, "{}", m.text);
    assert_eq!(info[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info[0]["index_type"], "HNSW");
    assert_eq!(info[0]["simd"], FIXTURE.index.info().simd);

    // The scrapes themselves are counted, once answered.
    let again = server.scrape();
    assert_eq!(again.count(REQUESTS, &[("route", "/metrics"), ("method", "GET"), ("status", "200")]), 2.0);
    assert_eq!(again.count(REQUESTS, &[("route", "/"), ("method", "GET"), ("status", "200")]), 3.0);
}

#[test]
fn overload_rejections_are_counted_by_kind() {
    let server = Server::start(state_with(ServerConfig { max_pending_searches: 0, ..ServerConfig::default() }));
    for _ in 0..2 {
        assert_eq!(server.post_json("/search", &json!({"query_vector": query(1), "k": 3})).status, 503);
    }
    let batch = json!({"query_vectors": [query(1), query(2), query(3)], "k": 3});
    assert_eq!(server.post_json("/search/batch", &batch).status, 503);
    // Bad bodies are answered before the bound is looked at: not rejections.
    assert_eq!(server.post_json("/search", &json!({"query_vector": [1.0], "k": 3})).status, 400);

    let m = server.scrape();
    assert_eq!(m.value("vectorwise_searches_rejected_total", &[("kind", "single")]), Some(2.0));
    assert_eq!(m.value("vectorwise_searches_rejected_total", &[("kind", "batch")]), Some(1.0));
    let requests = |route: &str| m.count(REQUESTS, &[("route", route), ("method", "POST"), ("status", "503")]);
    assert_eq!((requests("/search"), requests("/search/batch")), (2.0, 1.0));
    assert_eq!(m.value("vectorwise_searches_in_flight", &[]), Some(0.0));
    assert_eq!(m.value("vectorwise_search_duration_seconds_count", &[("kind", "single")]), None);
}

#[test]
fn index_gauges_and_build_info_follow_the_served_index() {
    let state = AppState::new(ServerConfig::default());
    let server = Server::start(state.clone());
    let m = server.scrape();
    assert_eq!(m.value("vectorwise_vectors_indexed", &[]), Some(0.0));
    let info = |m: &common::Scrape, index_type: &str| {
        let simd = vectorwise_index::distance::kernels().name;
        m.value(
            "vectorwise_build_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("simd", simd), ("index_type", index_type)],
        )
    };
    assert_eq!(info(&m, "none"), Some(1.0));
    assert_eq!(info(&m, "HNSW"), None);

    state.set_index(Arc::clone(&FIXTURE.index));
    let m = server.scrape();
    assert_eq!(m.value("vectorwise_vectors_indexed", &[]), Some(N as f64));
    assert_eq!((info(&m, "none"), info(&m, "HNSW")), (Some(0.0), Some(1.0)));
    let load = m.value("vectorwise_index_load_seconds", &[]).unwrap();
    assert!((load - FIXTURE.index.info().load_seconds).abs() < 1e-9, "{load}");

    // A swap to another index of the same type.
    state.set_index(Arc::clone(&FIXTURE.small));
    let m = server.scrape();
    assert_eq!(m.value("vectorwise_vectors_indexed", &[]), Some(SMALL_N as f64));
    assert_eq!(info(&m, "HNSW"), Some(1.0));
}

#[test]
fn each_server_counts_only_its_own_requests() {
    let (a, b) = (Server::start(state_with(ServerConfig::default())), Server::start(state_with(ServerConfig::default())));
    for _ in 0..4 {
        a.get("/");
    }
    b.get("/");
    let ok = [("route", "/"), ("method", "GET"), ("status", "200")];
    assert_eq!((a.scrape().count(REQUESTS, &ok), b.scrape().count(REQUESTS, &ok)), (4.0, 1.0));
}

#[test]
fn metrics_are_prometheus_text_and_documented() {
    let server = Server::start(state_with(ServerConfig::default()));
    server.post_json("/search/batch", &json!({"query_vectors": [query(1)], "k": 1}));
    let reply = server.get("/metrics");
    assert_eq!(reply.content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    for (name, kind) in [
        ("vectorwise_http_requests_total", "counter"),
        ("vectorwise_http_request_duration_seconds", "histogram"),
        ("vectorwise_search_duration_seconds", "histogram"),
        ("vectorwise_search_batch_size", "histogram"),
        ("vectorwise_searches_in_flight", "gauge"),
        ("vectorwise_searches_rejected_total", "counter"),
        ("vectorwise_vectors_indexed", "gauge"),
        ("vectorwise_index_load_seconds", "gauge"),
        ("vectorwise_build_info", "gauge"),
        ("vectorwise_searches_dispatched_total", "counter"),
    ] {
        assert!(reply.body.contains(&format!("# TYPE {name} {kind}\n")), "{name}:\n{}", reply.body);
        assert!(reply.body.contains(&format!("# HELP {name} ")), "{name}");
    }
    let doc = server.get("/openapi.json").json();
    let op = &doc["paths"]["/metrics"]["get"];
    // The document names the very Content-Type the server sends.
    let content_type = reply.content_type.as_deref().unwrap();
    assert!(op["responses"]["200"]["content"][content_type].is_object(), "{op}");
}

/// Single searches run on the blocking pool until their kind is known to be
/// short, then on the async worker (`dispatch.rs`); both answer alike, and
/// `vectorwise_searches_dispatched_total` says where each ran.
#[test]
fn short_searches_move_to_the_worker_once_known_and_answer_as_on_the_pool() {
    const DISPATCHED: &str = "vectorwise_searches_dispatched_total";
    let server = Server::start(state_with(ServerConfig { cache_bytes: 0, ..ServerConfig::default() }));
    let placed = |m: &common::Scrape| {
        (m.value(DISPATCHED, &[("place", "worker")]).unwrap(), m.value(DISPATCHED, &[("place", "pool")]).unwrap())
    };
    assert_eq!(placed(&server.scrape()), (0.0, 0.0), "exported before any search");
    let params = vectorwise_index::SearchParams::default();
    for i in 0..40 {
        let reply = server.post_json("/search", &json!({"query_vector": query(i), "k": 5}));
        assert_eq!(reply.status, 200);
        let want: Vec<u64> = FIXTURE.index.search(&query(i), 5, &params).unwrap().iter().map(|n| n.id).collect();
        let got: Vec<u64> = serde_json::from_value(reply.json()["indices"].clone()).unwrap();
        assert_eq!(got, want, "query {i}");
    }
    let (worker, pool) = placed(&server.scrape());
    assert_eq!(worker + pool, 40.0);
    // The first of a kind is never known; a search of 1000 points takes
    // microseconds, so most of the rest run on the worker even on a loaded machine.
    assert!(pool >= 1.0 && worker >= 20.0, "worker {worker}, pool {pool}");
    // Another k is another kind: its first search goes to the pool.
    assert_eq!(server.post_json("/search", &json!({"query_vector": query(99), "k": 7})).status, 200);
    let (_, after) = placed(&server.scrape());
    assert_eq!(after, pool + 1.0);
}
