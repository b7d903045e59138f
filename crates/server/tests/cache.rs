//! The hot-query cache over a real socket: a repeated search is a hit with
//! the very same answer; a write that changes the answer is reflected by the
//! next search; a deleted and re-created collection never gets the old
//! answers; writers racing searchers never leave a stale answer behind a
//! write's 200; keys and rate limits still apply to hits; the recall monitor
//! samples only searches that ran; metrics and `/stats` count it all.

mod common;

use common::{FIXTURE, Reply, Server, query, row, state_with};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use vectorwise_server::{ApiKey, AppState, Keys, RateLimits, Role, ServerConfig, hash_key};
use vectorwise_store::{Store, SyncMode};

const CACHE: &str = "x-vectorwise-cache";
const TIER: &str = "x-vectorwise-cache-tier";

/// A served app with collections in a temporary data directory.
fn server_with_store(config: ServerConfig) -> (Server, tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    let state = state_with(config);
    state.set_store(Arc::clone(&store));
    (Server::start(state), dir, store)
}

fn put(server: &Server, path: &str, body: &Value) -> Reply {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .put(format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    Reply { status, content_type: None, retry_after: None, body, headers: Default::default() }
}

fn delete(server: &Server, path: &str) -> u16 {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent.delete(format!("{}{path}", server.url)).call().unwrap().status().as_u16()
}

/// Every header but the cache's verdict (and, on a hit, its tier) and the date.
fn headers_but_cache(r: &Reply) -> Vec<(String, String)> {
    r.headers.iter().filter(|(k, _)| *k != CACHE && *k != TIER && *k != "date").map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn ids(r: &Reply) -> Vec<u64> {
    r.json()["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect()
}

#[test]
fn a_repeated_search_is_a_hit_with_the_same_answer_and_headers() {
    let (server, _dir, _store) = server_with_store(ServerConfig::default());
    // The demo's route, on the index file.
    let body = json!({"query_vector": query(1), "k": 5, "profile": "high_accuracy"});
    let first = server.post_json("/search", &body);
    assert_eq!((first.status, first.header(CACHE)), (200, Some("miss")), "{}", first.body);
    let second = server.post_json("/search", &body);
    assert_eq!((second.status, second.header(CACHE)), (200, Some("hit")));
    assert_eq!((first.header(TIER), second.header(TIER)), (None, Some("memory")));
    assert_eq!(second.body, first.body);
    assert_eq!(headers_but_cache(&second), headers_but_cache(&first));
    assert_eq!(second.content_type.as_deref(), Some("application/json"));
    // Each option that changes the answer is another key.
    for other in [
        json!({"query_vector": query(1), "k": 4, "profile": "high_accuracy"}),
        json!({"query_vector": query(1), "k": 5}),
        json!({"query_vector": query(1), "k": 5, "ef_search": 300}),
        json!({"query_vector": query(2), "k": 5, "profile": "high_accuracy"}),
    ] {
        assert_eq!(server.post_json("/search", &other).header(CACHE), Some("miss"), "{other}");
    }
    // The server's default profile named or not: one answer.
    assert_eq!(server.post_json("/search", &json!({"query_vector": query(1), "k": 5, "profile": "balanced"})).header(CACHE), Some("hit"));
    // A refused request is not an answer: never kept.
    let bad = json!({"query_vector": [1.0, 2.0], "k": 5});
    assert_eq!(server.post_json("/search", &bad).status, 400);
    let again = server.post_json("/search", &bad);
    assert_eq!((again.status, again.header(CACHE)), (400, None));

    // A collection search, with payloads and a filter.
    assert_eq!(put(&server, "/collections/docs", &json!({"dimension": 2, "metric": "l2"})).status, 201);
    let points: Vec<Value> =
        (0..20).map(|i| json!({"id": i, "vector": [i as f32, 0.0], "payload": {"even": i % 2 == 0, "i": i}})).collect();
    assert_eq!(put(&server, "/collections/docs/points", &json!({"points": points})).status, 200);
    let search = json!({"vector": [3.2, 0.0], "k": 3, "with_payload": true,
        "filter": {"must": [{"key": "even", "match": {"value": true}}, {"key": "i", "range": {"gte": 0}}]}});
    let first = server.post_json("/collections/docs/search", &search);
    assert_eq!((first.status, first.header(CACHE)), (200, Some("miss")), "{}", first.body);
    assert_eq!(ids(&first), [4, 2, 6]);
    let second = server.post_json("/collections/docs/search", &search);
    assert_eq!(second.header(CACHE), Some("hit"));
    assert_eq!((second.body.as_str(), headers_but_cache(&second)), (first.body.as_str(), headers_but_cache(&first)));
    // The same filter written another way (conditions reordered, key order, spacing): the same answer.
    let reordered = r#"{"k": 3, "filter": {"must": [{"range": {"gte": 0.0}, "key": "i"}, {"key": "even", "match": {"value": true}}]},
        "with_payload": true, "vector": [3.2, 0]}"#;
    let third = server.post("/collections/docs/search", reordered);
    assert_eq!((third.header(CACHE), third.body.as_str()), (Some("hit"), first.body.as_str()));
    for other in [
        json!({"vector": [3.2, 0.0], "k": 3, "with_payload": false, "filter": search["filter"]}),
        json!({"vector": [3.2, 0.0], "k": 3, "with_payload": true, "with_vector": true, "filter": search["filter"]}),
        json!({"vector": [3.2, 0.0], "k": 3, "with_payload": true}),
        json!({"vector": [3.2, 0.0], "k": 3, "with_payload": true, "filter": {"must": [{"key": "even", "match": {"value": false}}]}}),
    ] {
        let r = server.post_json("/collections/docs/search", &other);
        assert_eq!((r.status, r.header(CACHE)), (200, Some("miss")), "{other}");
    }

    let stats = server.get("/stats").json();
    let cache = &stats["cache"];
    assert_eq!((cache["hits"].as_u64(), cache["misses"].as_u64()), (Some(4), Some(10)), "{cache}");
    assert_eq!(cache["entries"].as_u64(), Some(10));
    assert!(cache["bytes"].as_u64().unwrap() > 10 * 256 && cache["max_bytes"] == json!(vectorwise_server::DEFAULT_CACHE_BYTES));
    assert!(cache["saved_seconds"].as_f64().unwrap() > 0.0);
    let scrape = server.scrape();
    assert_eq!(scrape.count("vectorwise_cache_hits_total", &[]), 4.0);
    assert_eq!(scrape.count("vectorwise_cache_misses_total", &[]), 10.0);
    assert_eq!(scrape.count("vectorwise_cache_entries", &[]), 10.0);
    assert!(scrape.count("vectorwise_cache_bytes", &[]) > 0.0);
    assert!(scrape.count("vectorwise_cache_saved_seconds", &[]) > 0.0);
    // Engine time was spent on the demo route's misses only: 5 searches ran.
    assert_eq!(scrape.count("vectorwise_search_duration_seconds_count", &[("kind", "single")]), 5.0);
}

#[test]
fn a_write_is_reflected_by_the_very_next_search() {
    let (server, _dir, _store) = server_with_store(ServerConfig::default());
    assert_eq!(put(&server, "/collections/c", &json!({"dimension": 2, "metric": "l2"})).status, 201);
    let upsert = |points: Value| assert_eq!(put(&server, "/collections/c/points", &json!({"points": points})).status, 200);
    upsert(json!([{"id": 1, "vector": [1.0, 0.0], "payload": {"v": 1}}, {"id": 2, "vector": [2.0, 0.0]}]));
    let search = json!({"vector": [0.0, 0.0], "k": 2, "with_payload": true});
    let ask = || server.post_json("/collections/c/search", &search);
    assert_eq!(ids(&ask()), [1, 2]);
    assert_eq!(ask().header(CACHE), Some("hit"));
    // A new nearest point.
    upsert(json!([{"id": 3, "vector": [0.5, 0.0]}]));
    let r = ask();
    assert_eq!((r.header(CACHE), ids(&r)), (Some("miss"), vec![3, 1]));
    assert_eq!(ask().header(CACHE), Some("hit"));
    // A payload replaced: the same ids, another answer.
    upsert(json!([{"id": 1, "vector": [1.0, 0.0], "payload": {"v": 2}}]));
    let r = ask();
    assert_eq!(r.header(CACHE), Some("miss"));
    assert_eq!(r.json()["hits"][1]["payload"], json!({"v": 2}));
    // A delete.
    assert_eq!(server.post_json("/collections/c/points/delete", &json!({"ids": [3]})).status, 200);
    let r = ask();
    assert_eq!((r.header(CACHE), ids(&r)), (Some("miss"), vec![1, 2]));
    let kept = ask();
    assert_eq!(kept.header(CACHE), Some("hit"));
    // A delete of no point changes no answer, but counts as a write: the
    // cache searches again rather than judge what a write changed.
    assert_eq!(server.post_json("/collections/c/points/delete", &json!({"ids": [99]})).json()["deleted"], 0);
    let r = ask();
    assert_eq!((r.header(CACHE), r.body.as_str()), (Some("miss"), kept.body.as_str()));
}

#[test]
fn a_collection_deleted_and_created_again_never_gets_the_old_answers() {
    let (server, _dir, _store) = server_with_store(ServerConfig::default());
    let search = json!({"vector": [0.0, 0.0], "k": 1});
    let mut answers = Vec::new();
    for round in 0..3u64 {
        assert_eq!(put(&server, "/collections/again", &json!({"dimension": 2, "metric": "l2"})).status, 201);
        // The same number of writes each time: the same write version.
        let points = json!({"points": [{"id": round, "vector": [1.0, 0.0]}]});
        assert_eq!(put(&server, "/collections/again/points", &points).status, 200);
        let first = server.post_json("/collections/again/search", &search);
        assert_eq!((first.header(CACHE), ids(&first)), (Some("miss"), vec![round]), "round {round}");
        assert_eq!(server.post_json("/collections/again/search", &search).header(CACHE), Some("hit"));
        answers.push(first.body);
        assert_eq!(delete(&server, "/collections/again"), 200);
        assert_eq!(server.post_json("/collections/again/search", &search).status, 404);
    }
    assert_eq!(answers.len(), 3);
}

/// `/search` on the collection `default`: from the index file while it is
/// unwritten, from the collection once written; a write is reflected at once.
#[test]
fn the_demo_route_reflects_writes_to_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    store.import("default", &FIXTURE.path, None).unwrap();
    let state = state_with(ServerConfig::default());
    state.set_store(Arc::clone(&store));
    let server = Server::start(state);
    let q = query(7);
    let search = json!({"query_vector": q, "k": 3});
    let before = server.post_json("/search", &search);
    assert_eq!(before.header(CACHE), Some("miss"));
    assert_eq!(server.post_json("/search", &search).header(CACHE), Some("hit"));
    // A point exactly at the query: the nearest from now on.
    let points = json!({"points": [{"id": 5000, "vector": q}]});
    assert_eq!(put(&server, "/collections/default/points", &points).status, 200);
    let after = server.post_json("/search", &search);
    assert_eq!(after.header(CACHE), Some("miss"));
    assert_eq!(after.json()["indices"][0], 5000, "{}", after.body);
    assert_ne!(after.body, before.body);
    assert_eq!(server.post_json("/search", &search).body, after.body);
    assert_eq!(server.post_json("/collections/default/points/delete", &json!({"ids": [5000]})).status, 200);
    let deleted = server.post_json("/search", &search);
    assert_eq!(deleted.header(CACHE), Some("miss"));
    assert_eq!(deleted.json()["indices"], before.json()["indices"]);
}

/// Writers racing searchers: once a write's 200 has come back, no search
/// started after it answers from before it. Each writer owns a query and a
/// marker point; each write upserts 3000 filler points and then the marker
/// (at the query, payload = the write's number) or deletes it. Searchers
/// hammer the same queries meanwhile, so that answers computed while a
/// write is being applied are offered to the cache; after each 200 the
/// writer searches and must see its write. (This test fails when the store
/// bumps the write version before applying the write.)
#[test]
fn concurrent_writers_and_searchers_never_see_a_stale_answer_after_a_write() {
    let config = ServerConfig { max_pending_searches: 10_000, ..ServerConfig::default() };
    let (server, _dir, _store) = server_with_store(config);
    const DIM: usize = 4;
    const WRITERS: usize = 2;
    const WRITES: u64 = 60;
    const FILLER: u64 = 3000;
    let body = json!({"dimension": DIM, "metric": "l2", "seal_points": 1_000_000});
    assert_eq!(put(&server, "/collections/race", &body).status, 201);
    let target = |w: usize| -> Vec<f32> { (0..DIM).map(|d| if d == w { 100.0 } else { 0.0 }).collect() };
    let search = |w: usize| json!({"vector": target(w), "k": 1, "with_payload": true});
    let done = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    let hits_seen = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..3 {
            let (server, done, hits_seen) = (&server, &done, &hits_seen);
            s.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    let r = server.post_json("/collections/race/search", &search(i % WRITERS));
                    assert_eq!(r.status, 200, "{}", r.body);
                    if r.header(CACHE) == Some("hit") {
                        hits_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        // Stops the searchers however the writers end (a failed check panics).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (server, checks, done) = (&server, &checks, &done);
                s.spawn(move || {
                    let _stop = Stop(done);
                    let marker = w as u64;
                    for n in 1..=WRITES {
                        // Fillers far from every query, replaced each time.
                        let mut points: Vec<Value> = (0..FILLER)
                            .map(|f| json!({"id": 1_000_000 * (w as u64 + 1) + f, "vector": vec![-1000.0 - n as f32; DIM]}))
                            .collect();
                        let present = n % 3 != 0;
                        if present {
                            points.push(json!({"id": marker, "vector": target(w), "payload": {"n": n}}));
                        }
                        let r = put(server, "/collections/race/points", &json!({"points": points}));
                        assert_eq!(r.status, 200, "{}", r.body);
                        if !present {
                            let r = server.post_json("/collections/race/points/delete", &json!({"ids": [marker]}));
                            assert_eq!(r.status, 200, "{}", r.body);
                        }
                        // The very next search, and a few more: all after the 200.
                        for _ in 0..3 {
                            let r = server.post_json("/collections/race/search", &search(w));
                            assert_eq!(r.status, 200);
                            let hit = &r.json()["hits"][0];
                            if present {
                                assert_eq!(
                                    (hit["id"].as_u64(), hit["payload"]["n"].as_u64()),
                                    (Some(marker), Some(n)),
                                    "write {n} of writer {w} acknowledged, then answered from before it ({:?})",
                                    r.header(CACHE)
                                );
                            } else {
                                assert_ne!(hit["id"].as_u64(), Some(marker), "marker {marker} deleted, still answered");
                            }
                            checks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
    });
    assert_eq!(checks.into_inner(), WRITERS as u64 * WRITES * 3);
    assert!(hits_seen.into_inner() > 0, "the searchers were answered from the cache at times");
}

#[test]
fn keys_and_rate_limits_apply_to_hits() {
    const READ: &str = "read-key-0123456789";
    let keys = Keys::required(vec![ApiKey {
        name: "reader".into(),
        role: Role::Read,
        sha256: hash_key(READ.as_bytes()),
        collections: None,
    }])
    .unwrap();
    let config = ServerConfig { rate_limits: RateLimits { search: Some(0.5), ..RateLimits::default() }, ..ServerConfig::default() };
    let state: AppState = state_with(config);
    state.set_keys(keys);
    let server = Server::start(state);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let search = json!({"query_vector": row(3), "k": 2}).to_string();
    let call = |key: Option<&str>| {
        let mut request = agent.post(format!("{}/search", server.url)).header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("api-key", key);
        }
        let r = request.send(search.clone()).unwrap();
        (r.status().as_u16(), r.headers().get(CACHE).map(|v| v.to_str().unwrap().to_owned()))
    };
    assert_eq!(call(Some(READ)), (200, Some("miss".to_owned())));
    // Answered from the cache or not, a request without a key is refused.
    assert_eq!(call(None).0, 401);
    assert_eq!(call(Some("not-a-key-0123456789")).0, 401);
    // One search every 2 s: the next, which the cache would answer, is over budget.
    assert_eq!(call(Some(READ)).0, 429);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(call(Some(READ)), (200, Some("hit".to_owned())));
}

/// The monitor samples searches that ran; a hit ran none.
#[test]
fn the_recall_monitor_does_not_sample_hits() {
    let monitor = vectorwise_server::monitor::MonitorConfig { sample_rate: 1.0, cpu_share: 1.0, queue: 1024 };
    let server = Server::start(state_with(ServerConfig { monitor, ..ServerConfig::default() }));
    let search = json!({"query_vector": query(3), "k": 10});
    for _ in 0..5 {
        assert_eq!(server.post_json("/search", &search).status, 200);
    }
    let totals = server.state.monitor().totals();
    assert_eq!((totals.offered, totals.sampled), (1, 1), "{totals:?}");
}

#[test]
fn a_cache_of_zero_bytes_is_off() {
    let (server, _dir, _store) = server_with_store(ServerConfig { cache_bytes: 0, ..ServerConfig::default() });
    let search = json!({"query_vector": query(4), "k": 3});
    let (a, b) = (server.post_json("/search", &search), server.post_json("/search", &search));
    assert_eq!((a.header(CACHE), b.header(CACHE)), (None, None));
    assert_eq!(a.body, b.body);
    let stats = server.get("/stats").json();
    let redis = json!({"configured": false, "connected": false, "hits": 0, "misses": 0, "errors": 0, "rejected": 0, "writes": 0, "skipped": 0});
    assert_eq!(
        stats["cache"],
        json!({"max_bytes": 0, "entries": 0, "bytes": 0, "hits": 0, "misses": 0, "saved_seconds": 0.0, "redis": redis})
    );
    assert_eq!(server.scrape().count("vectorwise_cache_misses_total", &[]), 0.0);
    // The document says nothing of a cache that is off.
    let doc = server.get("/openapi.json").json();
    assert!(doc["paths"]["/search"]["post"]["responses"]["200"]["headers"].get(CACHE).is_none());
}

#[test]
fn the_document_names_the_header_where_the_cache_answers() {
    let server = Server::start(state_with(ServerConfig::default()));
    let doc = server.get("/openapi.json").json();
    for path in ["/search", "/collections/{name}/search"] {
        let header = &doc["paths"][path]["post"]["responses"]["200"]["headers"][CACHE];
        assert_eq!(header["schema"]["enum"], json!(["hit", "miss"]), "{path}: {header}");
    }
    assert!(doc["paths"]["/search/batch"]["post"]["responses"]["200"]["headers"].get(CACHE).is_none());
    assert!(doc["components"]["schemas"]["StatsResponse"]["properties"].get("cache").is_some());
}
