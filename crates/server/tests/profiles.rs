//! Search profiles and recall targets over a real socket, on calibrated
//! indexes: each profile keeps its promise on held-out queries, the headers
//! say what was used, `/stats` shows a monotone table, bad values are 422,
//! an uncalibrated index still answers, and the live monitor's estimate is
//! the recall the responses actually had.

mod common;

use common::{Reply, Server};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Index, IndexOptions, Matrix, Method, Profile, dataset, hnsw};
use vectorwise_server::monitor::MonitorConfig;
use vectorwise_server::{AppState, ServerConfig};

const DIM: usize = 32;

struct Calibrated {
    _dir: tempfile::TempDir,
    scan: Arc<Index>,
    graph: Arc<Index>,
    graph_path: std::path::PathBuf,
}

/// A scan-only index over structureless data (the demo's kind) and a graph
/// index over clustered data, both calibrated leave-one-out.
static FIXTURE: LazyLock<Calibrated> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let data_scan = dataset::sphere(6_000, DIM, 21);
    let data_graph = normalised(dataset::clustered(6_000, DIM, 40, 22, 23));
    let path_scan = dir.path().join("scan.vwi");
    let path_graph = dir.path().join("graph.vwi");
    let scan_opts = IndexOptions {
        graph: None,
        scan: Some(ScanOptions { dsub: 4, seed: 1, lists: 0 }),
        default_method: Method::Scan, ..Default::default()
    };
    vectorwise_index::build(&data_scan, &path_scan, &scan_opts, &|_| {}).unwrap();
    let graph_opts = IndexOptions {
        graph: Some(hnsw::BuildOptions { m: 12, ef_construction: 64, threads: Some(1), seed: 3 }),
        scan: Some(ScanOptions { dsub: 4, seed: 1, lists: 0 }),
        default_method: Method::Hnsw, ..Default::default()
    };
    vectorwise_index::build(&data_graph, &path_graph, &graph_opts, &|_| {}).unwrap();
    let opts = CalibrateOptions { sample: 300, ..Default::default() };
    for path in [&path_scan, &path_graph] {
        vectorwise_index::calibrate::calibrate_in_place(&Index::open(path).unwrap(), &opts).unwrap();
    }
    let scan = Arc::new(Index::open(&path_scan).unwrap());
    let graph = Arc::new(Index::open(&path_graph).unwrap());
    assert!(scan.calibration().is_some() && graph.calibration().is_some());
    Calibrated { _dir: dir, scan, graph, graph_path: path_graph }
});

fn serve(index: &Arc<Index>, config: ServerConfig) -> Server {
    Server::start(AppState::with_index(config, Arc::clone(index)))
}

/// Held-out queries: the data's own distribution, other seeds.
fn held_out(graph: bool, n: usize) -> Matrix {
    if graph {
        // Same clusters (seed 22), other points.
        normalised(dataset::clustered(n, DIM, 40, 22, 999))
    } else {
        dataset::sphere(n, DIM, 777)
    }
}

/// Rows scaled to unit length: the service searches normalised queries, so
/// data it serves is normalised too (as the demo's is).
fn normalised(m: Matrix) -> Matrix {
    let rows: Vec<f32> = m.rows().flat_map(unit).collect();
    Matrix::new(DIM, rows).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v["indices"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn recall(index: &Index, q: &[f32], got: &[u64], k: usize) -> f64 {
    let truth: HashSet<u64> = index.exact_search(q, k).unwrap().iter().map(|n| n.id).collect();
    got.iter().filter(|i| truth.contains(i)).count() as f64 / truth.len() as f64
}

fn unit(q: &[f32]) -> Vec<f32> {
    let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
    q.iter().map(|x| x / n).collect()
}

#[test]
fn each_profile_keeps_its_promise_on_held_out_queries() {
    for graph in [false, true] {
        let index = if graph { &FIXTURE.graph } else { &FIXTURE.scan };
        let server = serve(index, ServerConfig::default());
        let queries = held_out(graph, 300);
        for k in [10, 5] {
            for profile in Profile::ALL {
                let mut total = 0.0;
                for q in queries.rows() {
                    let r = server.post_json("/search", &json!({"query_vector": q, "k": k, "profile": profile.as_str()}));
                    assert_eq!(r.status, 200, "{}", r.body);
                    assert_eq!(r.header("x-vectorwise-profile"), Some(profile.as_str()));
                    // The server searched the normalised query.
                    total += recall(index, &unit(q), &ids(&r.json()), k);
                }
                let delivered = total / queries.len() as f64;
                assert!(
                    delivered >= profile.target() - 0.01,
                    "{} index, k={k}: {profile} promised {} and delivered {delivered:.4}",
                    if graph { "graph" } else { "scan" },
                    profile.target()
                );
            }
        }
    }
}

#[test]
fn the_headers_say_what_was_used() {
    let index = &FIXTURE.scan;
    let server = serve(index, ServerConfig::default());
    let q = held_out(false, 1).into_vec();
    let c = index.calibration().unwrap();

    // No option: the default profile, balanced.
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10}));
    assert_eq!(r.status, 200);
    let balanced = c.for_target(10, 0.95);
    assert_eq!(r.header("x-vectorwise-profile"), Some("balanced"));
    assert_eq!(r.header("x-vectorwise-method"), Some(balanced.params.method.as_str()));
    assert_eq!(r.header("x-vectorwise-setting"), Some(balanced.params.setting().as_str()));
    assert_eq!(r.header("x-vectorwise-recall-target"), Some("0.95"));
    let expected: f64 = r.header("x-vectorwise-expected-recall").unwrap().parse().unwrap();
    assert!((expected - balanced.expected_recall.unwrap()).abs() < 1e-4 && expected >= 0.95);
    assert_eq!(r.json().as_object().unwrap().len(), 2, "the body keeps the demo's two fields");

    // A fixed ef on a scan index: candidates spread over k.
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10, "ef_search": 400}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-vectorwise-profile"), Some("ef_search"));
    assert_eq!(r.header("x-vectorwise-setting"), Some("rerank=40"));
    assert_eq!(r.header("x-vectorwise-ef-search"), Some("400"));
    assert_eq!(r.header("x-vectorwise-recall-target"), None);

    // recall_target 1 is exact search, and answers as exact search does.
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10, "recall_target": 1.0}));
    assert_eq!((r.header("x-vectorwise-method"), r.header("x-vectorwise-expected-recall")), (Some("exact"), Some("1.0000")));
    let exact: Vec<u64> = index.exact_search(&unit(&q), 10).unwrap().iter().map(|n| n.id).collect();
    assert_eq!(ids(&r.json()), exact);

    // A target between profiles gets the cheapest setting that reaches it.
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10, "recall_target": 0.97}));
    let expected: f64 = r.header("x-vectorwise-expected-recall").unwrap().parse().unwrap();
    assert!(expected >= 0.97, "{expected}");
    assert_eq!(r.header("x-vectorwise-profile"), Some("recall_target"));

    // Batches take the same options and say the same.
    let r = server.post_json("/search/batch", &json!({"query_vectors": [q, q], "k": 10, "profile": "high_accuracy"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-vectorwise-profile"), Some("high_accuracy"));
    assert_eq!(r.header("x-vectorwise-setting"), Some(c.for_target(10, 0.99).params.setting().as_str()));

    // VECTORWISE_PROFILE: the server's default.
    let server = serve(index, ServerConfig { default_profile: Profile::LowLatency, ..ServerConfig::default() });
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10}));
    assert_eq!(r.header("x-vectorwise-profile"), Some("low_latency"));
}

#[test]
fn invalid_options_are_422_with_their_location() {
    let server = serve(&FIXTURE.scan, ServerConfig::default());
    let q = held_out(false, 1).into_vec();
    for (extra, loc, kind) in [
        (json!({"profile": "fastest"}), json!(["body", "profile"]), "enum"),
        (json!({"profile": 1}), json!(["body", "profile"]), "enum"),
        (json!({"recall_target": 0}), json!(["body", "recall_target"]), "greater_than"),
        (json!({"recall_target": 1.5}), json!(["body", "recall_target"]), "less_than_equal"),
        (json!({"recall_target": "high"}), json!(["body", "recall_target"]), "float_parsing"),
        (json!({"ef_search": 0}), json!(["body", "ef_search"]), "greater_than_equal"),
        (json!({"ef_search": 10_000_000}), json!(["body", "ef_search"]), "less_than_equal"),
        (json!({"ef_search": 64, "profile": "balanced"}), json!(["body"]), "value_error"),
    ] {
        for (path, mut body) in
            [("/search", json!({"query_vector": q, "k": 5})), ("/search/batch", json!({"query_vectors": [q], "k": 5}))]
        {
            for (key, value) in extra.as_object().unwrap() {
                body[key] = value.clone();
            }
            let r = server.post_json(path, &body);
            assert_eq!(r.status, 422, "{path} {extra}: {}", r.body);
            let detail = &r.json()["detail"];
            assert_eq!(detail.as_array().unwrap().len(), 1, "{detail}");
            assert_eq!((&detail[0]["loc"], detail[0]["type"].as_str().unwrap()), (&loc, kind), "{detail}");
            assert!(!detail[0]["msg"].as_str().unwrap().is_empty());
        }
    }
    // null is absent (pydantic's Optional): the default profile.
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 5, "profile": null, "ef_search": null}));
    assert_eq!((r.status, r.header("x-vectorwise-profile")), (200, Some("balanced")));
}

#[test]
fn stats_show_a_monotone_calibration_table() {
    for index in [&FIXTURE.scan, &FIXTURE.graph] {
        let server = serve(index, ServerConfig::default());
        let s = server.get("/stats").json();
        assert_eq!(s["default_profile"], "balanced");
        let cal = &s["calibration"];
        assert_eq!((cal["source"].as_str(), cal["queries"].as_u64()), (Some("leave_one_out"), Some(300)));
        let profiles = cal["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 9, "three profiles at k = 1, 10, 100");
        for k in [1, 10, 100] {
            let rows: Vec<&Value> = profiles.iter().filter(|p| p["k"] == k).collect();
            let names: Vec<&str> = rows.iter().map(|p| p["profile"].as_str().unwrap()).collect();
            assert_eq!(names, ["low_latency", "balanced", "high_accuracy"]);
            let mut last_recall = 0.0;
            let mut last_depth = 0;
            for p in &rows {
                let recall = p["expected_recall"].as_f64().unwrap();
                assert!(recall >= p["recall_target"].as_f64().unwrap(), "{p}");
                assert!(recall >= last_recall, "expected recall grows with the profile at k={k}: {rows:?}");
                last_recall = recall;
                let setting: vectorwise_index::SearchParams = p["setting"].as_str().unwrap().parse().unwrap();
                let depth = match setting.method {
                    Method::Hnsw => setting.ef_search,
                    Method::Scan => setting.rerank * k,
                    _ => usize::MAX,
                };
                assert!(depth >= last_depth, "the setting deepens with the profile at k={k}: {rows:?}");
                last_depth = depth;
                if setting.method != Method::Exact {
                    assert!(p["latency_p50_ms"].as_f64().unwrap() > 0.0, "{p}");
                }
            }
        }
        // hnsw_efSearch: the default profile's depth at k = 10.
        let balanced = profiles.iter().find(|p| p["k"] == 10 && p["profile"] == "balanced").unwrap();
        let setting: vectorwise_index::SearchParams = balanced["setting"].as_str().unwrap().parse().unwrap();
        // Exact has no depth (0). On this tiny fixture the calibration can
        // measure exact faster than the scan and pick it: timing decides.
        let depth = match setting.method {
            Method::Hnsw => setting.ef_search,
            Method::Scan => (setting.rerank * 10).max(vectorwise_index::scan_keep(10)),
            _ => 0,
        };
        assert_eq!(s["hnsw_efSearch"], depth, "balanced at k = 10: {balanced}");
        assert!(!cal["table"].as_array().unwrap().is_empty());
    }
}

#[test]
fn an_uncalibrated_index_answers_without_a_promise() {
    let server = Server::start(common::state_with(ServerConfig::default()));
    let q = common::query(3);
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10, "profile": "high_accuracy"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-vectorwise-profile"), Some("high_accuracy"));
    assert_eq!(r.header("x-vectorwise-expected-recall"), None, "no table, no expectation");
    let r = server.post_json("/search", &json!({"query_vector": q, "k": 10, "recall_target": 1}));
    assert_eq!(r.header("x-vectorwise-method"), Some("exact"));
    assert_eq!(server.get("/stats").json()["calibration"], Value::Null);
}

#[test]
fn the_monitor_reports_the_recall_the_responses_had() {
    let index = &FIXTURE.scan;
    let monitor = MonitorConfig { sample_rate: 1.0, cpu_share: 1.0, queue: 1024 };
    let server = serve(index, ServerConfig { monitor, ..ServerConfig::default() });
    let queries = held_out(false, 150);
    let mut recalls = Vec::new();
    for q in queries.rows() {
        // A shallow fixed depth, so that recall is well below 1.
        let r = server.post_json("/search", &json!({"query_vector": q, "k": 10, "ef_search": 30}));
        assert_eq!(r.status, 200);
        recalls.push(recall(index, &unit(q), &ids(&r.json()), 10));
    }
    let truth = recalls.iter().sum::<f64>() / recalls.len() as f64;
    assert!(truth < 0.95, "the test needs imperfect recall, got {truth}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let entry = loop {
        let s = server.get("/stats").json();
        let entries = s["recall_monitor"]["profiles"].as_array().unwrap().clone();
        if let Some(e) = entries.iter().find(|e| e["label"] == "ef_search" && e["samples"] == 150) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "the monitor did not catch up: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mean = entry["recall_mean"].as_f64().unwrap();
    assert!((mean - truth).abs() < 1e-9, "monitor {mean} vs delivered {truth}");
    let (lo, hi) = (entry["ci95_low"].as_f64().unwrap(), entry["ci95_high"].as_f64().unwrap());
    assert!(lo <= truth && truth <= hi && hi - lo < 0.1, "[{lo}, {hi}]");
}

#[test]
fn queries_unlike_the_data_are_counted_and_flagged_as_widened() {
    let server = serve(&FIXTURE.graph, ServerConfig::default());
    let widened = || server.get("/stats").json()["recall_monitor"]["widened"].as_u64().unwrap();
    // Process-wide (tests beside this one only add to it): count what these add.
    let before = widened();
    let random = dataset::sphere(100, DIM, 4242);
    let mut flagged = 0;
    for q in random.rows() {
        let r = server.post_json("/search", &json!({"query_vector": q, "k": 10}));
        assert_eq!(r.status, 200);
        flagged += usize::from(r.header("x-vectorwise-widened") == Some("true"));
    }
    let added = widened() - before;
    assert!(added >= 90, "random vectors against clustered data: {added} of 100 widened");
    assert!(flagged >= 90, "random vectors against clustered data: {flagged} of 100 answers say they were widened");
    // Queries like the data are rarely widened, and their answers say so.
    let like = held_out(true, 50);
    let flagged = like.rows().filter(|q| server.post_json("/search", &json!({"query_vector": q, "k": 10})).header("x-vectorwise-widened").is_some()).count();
    assert!(flagged <= 3, "{flagged} of 50 held-out queries like the data were widened");
    let metrics = server.get("/metrics").body;
    let line = metrics.lines().find(|l| l.starts_with("vectorwise_searches_widened_total ")).expect("the counter is exported");
    let exported: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(exported >= before + added, "{line}");
}

/// The queries a batch's `x-vectorwise-widened-queries` names (indices and
/// ranges `0-3,7`), checked against its `x-vectorwise-widened-count`.
fn widened_listed(r: &Reply) -> Vec<usize> {
    let listed: Vec<usize> = r
        .header("x-vectorwise-widened-queries")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .flat_map(|s| match s.split_once('-') {
            Some((a, b)) => a.parse::<usize>().unwrap()..=b.parse().unwrap(),
            None => s.parse().unwrap()..=s.parse().unwrap(),
        })
        .collect();
    assert_eq!(r.header("x-vectorwise-widened-count").map(|c| c.parse::<usize>().unwrap()), Some(listed.len()));
    listed
}

/// The demo's batch on the served index file names its widened queries as
/// the collections' batch does, and they are the ones single searches flag.
#[test]
fn the_demo_batch_says_which_queries_were_widened() {
    let server = serve(&FIXTURE.graph, ServerConfig::default());
    // Even positions: random vectors (unlike the clustered data); odd: held-out rows like it.
    let random = dataset::sphere(20, DIM, 4545);
    let like = held_out(true, 20);
    let queries: Vec<Vec<f32>> = random.rows().zip(like.rows()).flat_map(|(r, l)| [r.to_vec(), l.to_vec()]).collect();
    let r = server.post_json("/search/batch", &json!({"query_vectors": queries, "k": 10}));
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = widened_listed(&r);
    let random_flagged = listed.iter().filter(|&&i| i % 2 == 0).count();
    assert!(random_flagged >= 18, "{random_flagged} of 20 random queries named as widened: {listed:?}");
    assert!(listed.len() - random_flagged <= 2, "queries like the data named as widened: {listed:?}");
    let single: Vec<usize> = (0..queries.len())
        .filter(|&i| server.post_json("/search", &json!({"query_vector": queries[i], "k": 10})).header("x-vectorwise-widened") == Some("true"))
        .collect();
    assert_eq!(single, listed, "single searches and the batch name the same queries");
}

/// On a collection (the same index imported), single searches and batches
/// say which queries were widened: a batch names them by index.
#[test]
fn collection_searches_and_batches_say_which_queries_were_widened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(vectorwise_store::Store::open(dir.path(), vectorwise_store::SyncMode::Always).unwrap());
    store.import("g", &FIXTURE.graph_path, None).unwrap();
    let state = AppState::with_index(ServerConfig::default(), Arc::clone(&FIXTURE.graph));
    state.set_store(store);
    let server = Server::start(state);
    // Even positions: random vectors (unlike the clustered data); odd: held-out rows like it.
    let random = dataset::sphere(20, DIM, 4343);
    let like = held_out(true, 20);
    let queries: Vec<Vec<f32>> = random.rows().zip(like.rows()).flat_map(|(r, l)| [r.to_vec(), l.to_vec()]).collect();
    let r = server.post_json("/collections/g/search/batch", &json!({"vectors": queries, "k": 10}));
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = widened_listed(&r);
    let random_flagged = listed.iter().filter(|&&i| i % 2 == 0).count();
    let like_flagged = listed.len() - random_flagged;
    assert!(random_flagged >= 18, "{random_flagged} of 20 random queries named as widened: {listed:?}");
    assert!(like_flagged <= 2, "{like_flagged} of 20 queries like the data named as widened: {listed:?}");
    // The same queries one at a time agree with the batch.
    let single: Vec<usize> = (0..queries.len())
        .filter(|&i| server.post_json("/collections/g/search", &json!({"vector": queries[i], "k": 10})).header("x-vectorwise-widened") == Some("true"))
        .collect();
    assert_eq!(single, listed, "single searches and the batch name the same queries");
    // Runs of widened queries are ranges: twelve random queries in a row.
    let run: Vec<Vec<f32>> = random.rows().take(12).map(<[f32]>::to_vec).chain(like.rows().take(1).map(<[f32]>::to_vec)).collect();
    let r = server.post_json("/collections/g/search/batch", &json!({"vectors": run, "k": 10}));
    let value = r.header("x-vectorwise-widened-queries").unwrap_or("");
    assert!(value.starts_with("0-") && !value.contains("12"), "{value}");
    // A batch of queries none of which was widened: no header.
    let calm: Vec<&Vec<f32>> = (0..queries.len()).filter(|i| !listed.contains(i)).map(|i| &queries[i]).collect();
    let r = server.post_json("/collections/g/search/batch", &json!({"vectors": calm, "k": 10}));
    assert_eq!((r.status, r.header("x-vectorwise-widened-queries")), (200, None));
}

/// A server learning its table (`learn.rs`) every `every`, on a copy of the
/// clustered graph index (the learnt table is written beside the file):
/// (its folder, the copy's path, the index, the server).
fn learning(every: Duration) -> (tempfile::TempDir, std::path::PathBuf, Arc<Index>, Server) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.vwi");
    std::fs::copy(&FIXTURE.graph_path, &path).unwrap();
    let index = Arc::new(Index::open(&path).unwrap());
    let config = ServerConfig { cache_bytes: 0, learn_calibration: true, learn_every: every, ..ServerConfig::default() };
    let server = serve(&index, config);
    (dir, path, index, server)
}

/// Queries unlike the indexed data (random unit vectors against clustered
/// points) are widened one by one; after a window of them the server learns
/// the table again on them (`learn.rs`), serves it (`calibration.source`
/// `live`), keeps its promise on more such queries without widening most of
/// them, and keeps the table beside the index for the next start; a damaged
/// or foreign kept table is refused.
#[test]
fn a_workload_unlike_the_data_gets_its_table_learnt_served_and_kept() {
    let (dir, path, index, server) = learning(vectorwise_server::learn::DEFAULT_LEARN_EVERY);
    let random = dataset::sphere(700, DIM, 5151);
    let rows: Vec<Vec<f32>> = random.rows().map(unit).collect();
    let search = |q: &[f32]| {
        let r = server.post_json("/search", &json!({"query_vector": q, "k": 10}));
        assert_eq!(r.status, 200, "{}", r.body);
        let widened = r.header("x-vectorwise-widened") == Some("true");
        (ids(&r.json()), widened)
    };
    let widened_before = rows[..300].iter().filter(|q| search(q).1).count();
    assert!(widened_before >= 150, "{widened_before} of 300 random queries widened: the test needs them unlike the data");
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = loop {
        let s = server.get("/stats").json();
        // The count is read before the table: both, or wait for both.
        if s["calibration"]["source"] == "live" && s["live_calibration"]["learnt"].as_u64() >= Some(1) {
            break s;
        }
        assert!(s["live_calibration"]["last_error"].is_null(), "{}", s["live_calibration"]);
        assert!(Instant::now() < deadline, "nothing learnt: {}", s["live_calibration"]);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["calibration"]["queries"], 300);
    assert_eq!(stats["live_calibration"]["learnt"], 1);
    let exact = vectorwise_index::SearchParams::exact();
    let (mut recall, mut widened_after) = (0.0, 0);
    for q in &rows[300..] {
        let (got, widened) = search(q);
        widened_after += usize::from(widened);
        let truth: HashSet<u64> = index.search(q, 10, &exact).unwrap().iter().map(|n| n.id).collect();
        recall += got.iter().filter(|id| truth.contains(id)).count() as f64 / 10.0;
    }
    let recall = recall / 400.0;
    eprintln!("widened {widened_before}/300 before, {widened_after}/400 after; balanced recall@10 on the learnt table {recall:.3}");
    assert!(recall >= Profile::Balanced.target() - 0.01, "balanced on the learnt table: recall@10 {recall}");
    assert!(widened_after * 4 < widened_before, "widened: {widened_before} of 300 before, {widened_after} of 400 after");

    // Kept: the next start on this file serves it.
    let sidecar = vectorwise_server::learn::sidecar_path(&path);
    let kept = vectorwise_server::learn::with_learnt(Index::open(&path).unwrap());
    assert_eq!(kept.calibration().unwrap().source.as_str(), "live");
    // Damaged, or learnt on another file: refused, the file's own table is used.
    let text = std::fs::read_to_string(&sidecar).unwrap();
    let damaged = text.replacen("recall_mean", "recall_meam", 1);
    assert_ne!(damaged, text);
    std::fs::write(&sidecar, &damaged).unwrap();
    let refused = vectorwise_server::learn::load(&Index::open(&path).unwrap()).unwrap_err();
    assert!(refused.contains("checksum"), "{refused}");
    assert_eq!(vectorwise_server::learn::with_learnt(Index::open(&path).unwrap()).calibration().unwrap().source.as_str(), "leave_one_out");
    std::fs::write(&sidecar, &text).unwrap();
    let other = dir.path().join("other.vwi");
    std::fs::copy(&FIXTURE.graph_path, &other).unwrap();
    std::fs::copy(&sidecar, vectorwise_server::learn::sidecar_path(&other)).unwrap();
    // The same bytes are the same file; a scan index is another.
    let scan_copy = dir.path().join("scan.vwi");
    std::fs::copy(FIXTURE.scan.path(), &scan_copy).unwrap();
    std::fs::copy(&sidecar, vectorwise_server::learn::sidecar_path(&scan_copy)).unwrap();
    let foreign = vectorwise_server::learn::load(&Index::open(&scan_copy).unwrap()).unwrap_err();
    assert!(foreign.contains("another index file"), "{foreign}");
    // Not a regular file (a FIFO would block the start), or too large to be a table: refused unread.
    std::fs::remove_file(&sidecar).unwrap();
    let fifo = std::process::Command::new("mkfifo").arg(&sidecar).status().unwrap();
    assert!(fifo.success());
    let refused = vectorwise_server::learn::load(&Index::open(&path).unwrap()).unwrap_err();
    assert!(refused.contains("not a regular file"), "{refused}");
    std::fs::remove_file(&sidecar).unwrap();
    std::fs::File::create(&sidecar).unwrap().set_len(64 << 20).unwrap();
    let refused = vectorwise_server::learn::load(&Index::open(&path).unwrap()).unwrap_err();
    assert!(refused.contains("larger than"), "{refused}");
}

/// A window where only some queries are unlike the data is not learnt: a
/// table learnt on a mix promises its mean over the mix, and the minority
/// would lose its per-query widening.
#[test]
fn a_mixed_workload_keeps_the_build_table_and_its_widening() {
    let (_dir, _, _, server) = learning(vectorwise_server::learn::DEFAULT_LEARN_EVERY);
    let like = held_out(true, 450);
    let random = dataset::sphere(150, DIM, 7171);
    let mut widened = 0;
    for (i, q) in like.rows().map(|r| r.to_vec()).zip(random.rows().map(unit).chain(std::iter::repeat_n(Vec::new(), 300))).flat_map(|(a, b)| [a, b]).filter(|q| !q.is_empty()).enumerate() {
        let r = server.post_json("/search", &json!({"query_vector": q, "k": 10}));
        assert_eq!(r.status, 200, "query {i}");
        widened += usize::from(r.header("x-vectorwise-widened") == Some("true"));
    }
    assert!(widened >= 100, "{widened} of 600 widened: the test needs the random quarter unlike the data");
    std::thread::sleep(Duration::from_millis(500));
    let s = server.get("/stats").json();
    assert_eq!(s["live_calibration"]["learnt"], 0, "{}", s["live_calibration"]);
    assert_eq!(s["live_calibration"]["learning"], false);
    assert_eq!(s["calibration"]["source"], "leave_one_out");
}

/// The balanced profile's setting at k = 10 in `/stats`, and its calibrated p50.
fn balanced_setting(stats: &Value) -> (String, f64) {
    let p = stats["calibration"]["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == "balanced" && p["k"] == 10)
        .unwrap_or_else(|| panic!("no balanced k=10 in {}", stats["calibration"]));
    (p["setting"].as_str().unwrap().to_owned(), p["latency_p50_ms"].as_f64().unwrap_or(f64::NAN))
}

/// A learnt table is learnt again from the last queries at `learn_every`,
/// whatever they are: traffic that moves back to queries like the data gets
/// a cheaper table again (nothing would widen to start it otherwise).
#[test]
fn a_learnt_table_follows_the_workload_back() {
    let (_dir, _, index, server) = learning(Duration::from_secs(1));
    let send = |rows: &[Vec<f32>]| {
        for q in rows {
            assert_eq!(server.post_json("/search", &json!({"query_vector": q, "k": 10})).status, 200);
        }
    };
    let learnt = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = server.get("/stats").json();
            if s["live_calibration"]["learnt"] == n && s["calibration"]["source"] == "live" {
                return s;
            }
            assert!(s["live_calibration"]["last_error"].is_null(), "{}", s["live_calibration"]);
            assert!(Instant::now() < deadline, "not learnt {n} times: {}", s["live_calibration"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let random: Vec<Vec<f32>> = dataset::sphere(300, DIM, 6161).rows().map(unit).collect();
    send(&random);
    let (on_random, random_ms) = balanced_setting(&learnt(1));
    std::thread::sleep(Duration::from_millis(1100));
    let like: Vec<Vec<f32>> = held_out(true, 300).rows().map(|r| r.to_vec()).collect();
    send(&like);
    let (on_like, like_ms) = balanced_setting(&learnt(2));
    eprintln!("balanced k=10: {on_random} ({random_ms} ms) learnt on random queries, {on_like} ({like_ms} ms) on queries like the data");
    assert_ne!(on_like, on_random, "the table did not follow the workload back");
    assert!(like_ms < random_ms, "{on_random} ({random_ms} ms) on random queries, {on_like} ({like_ms} ms) on queries like the data");
    // And the promise holds on queries like the data with the table learnt on them.
    let exact = vectorwise_index::SearchParams::exact();
    let fresh = held_out(true, 200);
    let mut recall = 0.0;
    for q in fresh.rows() {
        let got = ids(&server.post_json("/search", &json!({"query_vector": q, "k": 10})).json());
        let truth: HashSet<u64> = index.search(q, 10, &exact).unwrap().iter().map(|n| n.id).collect();
        recall += got.iter().filter(|id| truth.contains(id)).count() as f64 / 10.0;
    }
    let recall = recall / 200.0;
    assert!(recall >= Profile::Balanced.target() - 0.01, "recall@10 {recall}");
}
