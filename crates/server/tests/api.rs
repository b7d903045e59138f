//! The HTTP contract, in process: `app(state)` driven with `oneshot`, no
//! socket. Covers the demo's 25 unit tests and every line of the contract.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;
use vectorwise_index::{Index, IndexOptions, Matrix, Metric, dataset, hnsw};
use vectorwise_server::{ApiError, AppState, ServerConfig, app};

const DIM: usize = 128;
const N: usize = 1000;
const SMALL_N: usize = 30;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    data: Matrix,
    index: Arc<Index>,
    small: Arc<Index>,
}

/// Built once per test binary: 1000 points like the demo's fixture, and a
/// 30-point index for k > N.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let build = |n: usize, seed: u64, name: &str| {
        let data = dataset::sphere(n, DIM, seed);
        let path = dir.path().join(name);
        // One thread: a deterministic graph, so exact-answer assertions below
        // hold on every run (the parallel build's insertion order varies).
        let opts = hnsw::BuildOptions { m: 16, ef_construction: 100, threads: Some(1), seed };
        // Cosine, as the demo's index: its queries are compared by direction.
        let opts = IndexOptions { metric: Metric::Cosine, graph: Some(opts), scan: None, default_method: vectorwise_index::Method::Hnsw };
        vectorwise_index::build(&data, &path, &opts, &|_| {}).unwrap();
        (data, path)
    };
    let (data, path) = build(N, 7, "main.vwi");
    let (_, small_path) = build(SMALL_N, 8, "small.vwi");
    let index = Arc::new(Index::open(&path).unwrap());
    let small = Arc::new(Index::open(&small_path).unwrap());
    Fixture { _dir: dir, path, data, index, small }
});

fn state() -> AppState {
    state_with(ServerConfig::default())
}

fn state_with(config: ServerConfig) -> AppState {
    AppState::with_index(config, Arc::clone(&FIXTURE.index))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply { status: parts.status, headers: parts.headers, bytes: body.collect().await.unwrap().to_bytes() }
}

async fn get(app: &Router, path: &str) -> Reply {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post_raw(app: &Router, path: &str, body: impl Into<Body>) -> Reply {
    let req = Request::post(path).header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap();
    send(app, req).await
}

async fn search(app: &Router, body: Value) -> Reply {
    post_raw(app, "/search", body.to_string()).await
}

fn row(i: usize) -> Vec<f32> {
    FIXTURE.data.row(i).to_vec()
}

/// A query near no stored point in particular.
fn query(seed: u64) -> Vec<f32> {
    dataset::sphere(1, DIM, 1000 + seed).into_vec()
}

fn ids(reply: &Value) -> Vec<u64> {
    reply["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

fn distances(reply: &Value) -> Vec<f64> {
    reply["distances"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// Asserts a 422 with exactly these `(loc, type)` pairs, in order.
fn assert_422(reply: &Reply, expected: &[(Value, &str)]) {
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());
    let body = reply.json();
    let got: Vec<(Value, String)> = body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is not a list: {body}"))
        .iter()
        .map(|e| {
            assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (e["loc"].clone(), e["type"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(Value, String)> = expected.iter().map(|(l, t)| (l.clone(), (*t).to_owned())).collect();
    assert_eq!(got, expected, "{body}");
}

// ---- demo: TestHealthCheck ----

#[tokio::test]
async fn health_reports_service_status_and_count() {
    let r = get(&app(state()), "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"service": "VectorWise", "status": "healthy", "vectors_indexed": N}));
}

// ---- demo: TestStats ----

#[tokio::test]
async fn stats_reports_the_index_and_settings() {
    let r = get(&app(state()), "/stats").await;
    assert_eq!(r.status, StatusCode::OK);
    let s = r.json();
    assert_eq!(s["total_vectors"], N);
    assert_eq!(s["dimension"], DIM);
    assert_eq!(s["index_type"], "HNSW");
    assert_eq!(s["hnsw_m"], 16);
    assert_eq!(s["hnsw_efSearch"], 64);
    assert_eq!(s["hnsw_efConstruction"], 100);
    assert_eq!(s["metric"], "cosine");
    assert_eq!(s["ids"], "row");
    assert_eq!(s["format_version"], FIXTURE.index.info().format_version);
    assert_eq!(s["file_size_bytes"], std::fs::metadata(&FIXTURE.path).unwrap().len());
    assert!(s["build_seconds"].as_f64().unwrap() >= 0.0);
    assert!(s["load_seconds"].as_f64().unwrap() >= 0.0);
    assert!(!s["simd"].as_str().unwrap().is_empty());
    assert_eq!(s["max_k"], 100);
    assert_eq!(Path::new(s["index_path"].as_str().unwrap()), FIXTURE.path);
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "build_seconds",
            "cache",
            "calibration",
            "default_profile",
            "dimension",
            "file_size_bytes",
            "format_version",
            "hnsw_efConstruction",
            "hnsw_efSearch",
            "hnsw_m",
            "ids",
            "index_path",
            "index_type",
            "live_calibration",
            "load_seconds",
            "max_k",
            "metric",
            "recall_monitor",
            "simd",
            "total_vectors",
        ]
    );
}

#[tokio::test]
async fn stats_reports_the_configured_ef_search_and_max_k() {
    let r =
        get(&app(state_with(ServerConfig { ef_search: Some(200), max_k: 500, ..ServerConfig::default() })), "/stats").await;
    assert_eq!((r.json()["hnsw_efSearch"].clone(), r.json()["max_k"].clone()), (json!(200), json!(500)));
}

// ---- demo: TestSearch ----

#[tokio::test]
async fn search_returns_k_sorted_non_negative_in_range() {
    let r = search(&app(state()), json!({"query_vector": query(1), "k": 10})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    let (ids, dists) = (ids(&body), distances(&body));
    assert_eq!((ids.len(), dists.len()), (10, 10));
    assert!(dists.iter().all(|&d| d >= 0.0), "{dists:?}");
    assert!(dists.windows(2).all(|w| w[0] <= w[1]), "{dists:?}");
    assert!(ids.iter().all(|&i| (i as usize) < N), "{ids:?}");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 10);
}

#[tokio::test]
async fn a_stored_vector_finds_itself_first() {
    let r = search(&app(state()), json!({"query_vector": row(123), "k": 5})).await;
    let body = r.json();
    assert_eq!(ids(&body)[0], 123);
    assert!(distances(&body)[0] < 1e-5, "{body}");
}

#[tokio::test]
async fn k_larger_than_the_index_returns_every_point() {
    let app = app(AppState::with_index(ServerConfig::default(), Arc::clone(&FIXTURE.small)));
    let r = search(&app, json!({"query_vector": query(2), "k": 100})).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut got = ids(&r.json());
    assert_eq!(got.len(), SMALL_N);
    got.sort_unstable();
    assert_eq!(got, (0..SMALL_N as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn scaling_the_query_changes_nothing() {
    let app = app(state());
    let q = query(3);
    let base = search(&app, json!({"query_vector": q, "k": 10})).await.json();
    for scale in [7.5f32, 1e-3, 1e-25, 1e25] {
        let scaled: Vec<f32> = q.iter().map(|x| x * scale).collect();
        let r = search(&app, json!({"query_vector": scaled, "k": 10})).await;
        assert_eq!(r.status, StatusCode::OK, "{scale}: {}", r.text());
        let body = r.json();
        assert_eq!(ids(&body), ids(&base), "scale {scale}");
        for (a, b) in distances(&body).iter().zip(distances(&base)) {
            assert!((a - b).abs() < 1e-5, "scale {scale}: {a} vs {b}");
        }
    }
}

/// Distances are squared L2 from the L2-normalised query, computed here in
/// f64 without the engine; at ef >= N the ids are the exact top k.
#[tokio::test]
async fn distances_are_squared_l2_to_the_normalised_query() {
    let app = app(state_with(ServerConfig { ef_search: Some(N), ..ServerConfig::default() }));
    for seed in 0..5 {
        let raw: Vec<f32> = query(10 + seed).iter().enumerate().map(|(i, x)| x * 3.0 + (i % 3) as f32 * 0.01).collect();
        let r = search(&app, json!({"query_vector": raw, "k": 20})).await;
        assert_eq!(r.status, StatusCode::OK);
        let body = r.json();

        let norm = raw.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        let unit: Vec<f64> = raw.iter().map(|&x| f64::from(x) / norm).collect();
        let l2 =
            |i: usize| FIXTURE.data.row(i).iter().zip(&unit).map(|(&p, q)| (f64::from(p) - q).powi(2)).sum::<f64>();
        let mut truth: Vec<(f64, u64)> = (0..N).map(|i| (l2(i), i as u64)).collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0));

        assert_eq!(ids(&body), truth[..20].iter().map(|t| t.1).collect::<Vec<_>>());
        for (got, (want, _)) in distances(&body).iter().zip(&truth) {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
        let unit32: Vec<f32> = unit.iter().map(|&x| x as f32).collect();
        let exact = FIXTURE.index.exact_search(&unit32, 20).unwrap();
        assert_eq!(ids(&body), exact.iter().map(|n| n.id).collect::<Vec<_>>());
    }
}

// ---- demo: TestSearchValidation, and the rest of the 4xx contract ----

#[tokio::test]
async fn wrong_dimension_is_400_naming_both() {
    let r = search(&app(state()), json!({"query_vector": [0.1, 0.2, 0.3], "k": 5})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), json!({"detail": "query_vector has 3 dimensions, expected 128"}));
    let r = search(&app(state()), json!({"query_vector": [], "k": 5})).await;
    assert_eq!(r.json(), json!({"detail": "query_vector has 0 dimensions, expected 128"}));
}

#[tokio::test]
async fn k_out_of_range_is_422() {
    let app = app(state());
    for (k, kind, msg) in [
        (json!(0), "greater_than", "Input should be greater than 0"),
        (json!(-3), "greater_than", "Input should be greater than 0"),
        (json!(101), "less_than_equal", "Input should be less than or equal to 100"),
        (json!(1e20), "less_than_equal", "Input should be less than or equal to 100"),
    ] {
        let r = search(&app, json!({"query_vector": query(4), "k": k})).await;
        assert_422(&r, &[(json!(["body", "k"]), kind)]);
        assert_eq!(r.json()["detail"][0]["msg"], msg);
    }
    let r = search(&app, json!({"query_vector": query(4), "k": 0})).await;
    assert_eq!(
        r.json(),
        json!({"detail": [{"loc": ["body", "k"], "msg": "Input should be greater than 0", "type": "greater_than", "input": 0, "ctx": {"gt": 0}}]})
    );
    // The bound follows the configuration; 100 is fine by default.
    let r = search(&app, json!({"query_vector": query(4), "k": 100})).await;
    assert_eq!(ids(&r.json()).len(), 100);
    let strict = vectorwise_server::app(state_with(ServerConfig { max_k: 5, ..ServerConfig::default() }));
    let r = search(&strict, json!({"query_vector": query(4), "k": 6})).await;
    assert_422(&r, &[(json!(["body", "k"]), "less_than_equal")]);
}

#[tokio::test]
async fn non_integer_k_is_422() {
    let app = app(state());
    for (k, kind) in [
        (json!(1.5), "int_from_float"),
        (json!("10"), "int_type"),
        (json!("ten"), "int_parsing"),
        (json!(true), "int_type"),
        (json!(null), "int_type"),
        (json!([10]), "int_type"),
    ] {
        let r = search(&app, json!({"query_vector": query(5), "k": k})).await;
        assert_422(&r, &[(json!(["body", "k"]), kind)]);
    }
    // An integral float is an integer, as in pydantic.
    let r = search(&app, json!({"query_vector": query(5), "k": 3.0})).await;
    assert_eq!(ids(&r.json()).len(), 3);
}

#[tokio::test]
async fn missing_fields_are_each_reported() {
    let app = app(state());
    let r = search(&app, json!({"k": 5})).await;
    assert_422(&r, &[(json!(["body", "query_vector"]), "missing")]);
    assert_eq!(r.json()["detail"][0]["msg"], "Field required");
    let r = search(&app, json!({"query_vector": query(6)})).await;
    assert_422(&r, &[(json!(["body", "k"]), "missing")]);
    let r = search(&app, json!({})).await;
    assert_422(&r, &[(json!(["body", "query_vector"]), "missing"), (json!(["body", "k"]), "missing")]);
    // Every problem at once, across fields.
    let r = search(&app, json!({"query_vector": [1, "x", 2], "k": 0})).await;
    assert_422(&r, &[(json!(["body", "query_vector", 1]), "float_parsing"), (json!(["body", "k"]), "greater_than")]);
}

#[tokio::test]
async fn bad_elements_are_422_at_their_index() {
    let app = app(state());
    let mut q: Vec<Value> = query(7).into_iter().map(|x| json!(x)).collect();
    q[3] = json!("abc");
    q[9] = json!(null);
    q[40] = json!(1e39); // finite in JSON, infinite as f32
    q[41] = json!([1.0]);
    let r = search(&app, json!({"query_vector": q, "k": 5})).await;
    assert_422(
        &r,
        &[
            (json!(["body", "query_vector", 3]), "float_parsing"),
            (json!(["body", "query_vector", 9]), "float_type"),
            (json!(["body", "query_vector", 40]), "finite_number"),
            (json!(["body", "query_vector", 41]), "float_type"),
        ],
    );
    assert_eq!(r.json()["detail"][0]["input"], "abc");
    let r = search(&app, json!({"query_vector": "not a list", "k": 5})).await;
    assert_422(&r, &[(json!(["body", "query_vector"]), "list_type")]);
}

#[tokio::test]
async fn non_finite_numbers_are_invalid_json() {
    let app = app(state());
    let zeros = vec!["0.5"; DIM - 1].join(",");
    // Positions: `{"query_vector":[` is 17 characters; an overflow is seen at
    // the number's end, an unknown literal at its start.
    for (bad, at, reason) in [
        ("1e999", 21, "number out of range"),
        ("-1e999", 22, "number out of range"),
        ("NaN", 17, "expected value"),
        ("Infinity", 17, "expected value"),
    ] {
        let r = post_raw(&app, "/search", format!(r#"{{"query_vector":[{bad},{zeros}],"k":5}}"#)).await;
        assert_422(&r, &[(json!(["body", at]), "json_invalid")]);
        assert_eq!(r.json()["detail"][0]["ctx"]["error"], reason, "{bad}");
        assert_eq!(r.json()["detail"][0]["msg"], "JSON decode error");
    }
}

#[tokio::test]
async fn malformed_json_is_422_at_its_position() {
    let app = app(state());
    let r = post_raw(&app, "/search", r#"{"query_vector": [1, 2,"#).await;
    assert_422(&r, &[(json!(["body", 23]), "json_invalid")]);
    let r = post_raw(&app, "/search", r#"{"k": 1,}"#).await;
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", 8]));
    assert_eq!(r.json()["detail"][0]["ctx"], json!({"error": "trailing comma"}));
}

#[tokio::test]
async fn a_zero_vector_is_422() {
    let r = search(&app(state()), json!({"query_vector": vec![0.0; DIM], "k": 5})).await;
    assert_422(&r, &[(json!(["body", "query_vector"]), "value_error")]);
    assert_eq!(
        r.json()["detail"][0]["msg"],
        "Value error, query_vector must not be the zero vector: it has no direction under the cosine metric"
    );
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_422() {
    let app = app(state());
    for body in ["[1, 2, 3]", "5", r#""text""#, "true"] {
        let r = post_raw(&app, "/search", body).await;
        assert_422(&r, &[(json!(["body"]), "model_attributes_type")]);
    }
    // No body at all, or JSON null: the body is missing.
    for body in ["", "null"] {
        let r = post_raw(&app, "/search", body).await;
        assert_422(&r, &[(json!(["body"]), "missing")]);
    }
    // Not declared as JSON: FastAPI does not parse it.
    let body = json!({"query_vector": query(8), "k": 5}).to_string();
    let req =
        Request::post("/search").header(header::CONTENT_TYPE, "text/plain").body(Body::from(body.clone())).unwrap();
    assert_422(&send(&app, req).await, &[(json!(["body"]), "model_attributes_type")]);
    // No Content-Type at all, or a +json one: parsed.
    let req = Request::post("/search").body(Body::from(body.clone())).unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::OK);
    let req =
        Request::post("/search").header(header::CONTENT_TYPE, "application/vnd.x+json").body(Body::from(body)).unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_fields_are_422_naming_each() {
    let app = app(state());
    for path in ["/search", "/search/batch"] {
        let mut body = if path == "/search" {
            json!({"query_vector": query(9), "k": 3})
        } else {
            json!({"query_vectors": [query(9), query(10)], "k": 3})
        };
        body["filter"] = json!({"category": "books"});
        let r = post_raw(&app, path, body.to_string()).await;
        assert_422(&r, &[(json!(["body", "filter"]), "extra_forbidden")]);
        // An object is not echoed in `input`.
        assert_eq!(
            r.json(),
            json!({"detail": [{"loc": ["body", "filter"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]}),
            "{path}"
        );
        body.as_object_mut().unwrap().remove("filter");
        body["metric"] = json!("cosine");
        let r = post_raw(&app, path, body.to_string()).await;
        assert_eq!(
            r.json(),
            json!({"detail": [{"loc": ["body", "metric"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden", "input": "cosine"}]}),
            "{path}"
        );
        // Without it, the same body is answered.
        body.as_object_mut().unwrap().remove("metric");
        assert_eq!(post_raw(&app, path, body.to_string()).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn validation_comes_before_the_dimension_check() {
    let r = search(&app(state()), json!({"query_vector": [1.0, 2.0], "k": 0})).await;
    assert_422(&r, &[(json!(["body", "k"]), "greater_than")]);
}

// ---- body limit ----

/// A client that sends half a body and then stalls is answered 400 once the
/// body timeout passes, instead of holding its connection forever.
#[tokio::test]
async fn stalled_uploads_time_out_with_400() {
    let app = app(state_with(ServerConfig { body_timeout: std::time::Duration::from_millis(200), ..ServerConfig::default() }));
    let first: Result<Bytes, std::io::Error> = Ok(Bytes::from_static(b"{\"query_vector\": [0.1, "));
    let stalled = futures_util::stream::iter([first]).chain(futures_util::stream::pending());
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), post_raw(&app, "/search", Body::from_stream(stalled)))
        .await
        .expect("the server answered instead of waiting for the body forever");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), json!({"detail": "Could not read the request body"}));
}

/// A client that sends its body a byte at a time, each byte within the
/// timeout, is cut off once the whole body has taken longer than it.
#[tokio::test]
async fn trickled_uploads_time_out_with_400() {
    let app = app(state_with(ServerConfig { body_timeout: std::time::Duration::from_millis(300), ..ServerConfig::default() }));
    let body = json!({"query_vector": query(9), "k": 3}).to_string().into_bytes();
    let trickle = futures_util::stream::iter(body).then(|b| async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok::<_, std::io::Error>(Bytes::from(vec![b]))
    });
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), post_raw(&app, "/search", Body::from_stream(trickle)))
        .await
        .expect("the server answered");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["detail"].as_str().unwrap().contains("took longer than"), "{}", r.json());
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "cut off at the timeout, not at the body's end");
}

#[tokio::test]
async fn oversized_bodies_are_413_and_the_server_stays_healthy() {
    let app = app(state());
    let limit = ServerConfig::default().body_limit_bytes;
    // A valid body padded to exactly the limit is accepted.
    let body = json!({"query_vector": query(9), "k": 3}).to_string();
    let padded = format!("{body}{}", " ".repeat(limit - body.len()));
    assert_eq!(padded.len(), limit);
    assert_eq!(post_raw(&app, "/search", padded.clone()).await.status, StatusCode::OK);
    // One byte more is not.
    let r = post_raw(&app, "/search", format!("{padded} ")).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json(), json!({"detail": "Request body too large: the limit is 4194304 bytes"}));
    // 64 MiB.
    let huge = "0,".repeat(32 << 20);
    let r = post_raw(&app, "/search", format!(r#"{{"query_vector":[{huge}0],"k":1}}"#)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    assert_eq!(search(&app, json!({"query_vector": query(9), "k": 3})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let app = app(state_with(ServerConfig { body_limit_bytes: 100, ..ServerConfig::default() }));
    let r = search(&app, json!({"query_vector": query(9), "k": 3})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["detail"], "Request body too large: the limit is 100 bytes");
}

// ---- index lifecycle ----

#[tokio::test]
async fn everything_is_503_until_the_index_is_set() {
    let state = AppState::new(ServerConfig::default());
    let app = app(state.clone());
    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json(), json!({"service": "VectorWise", "status": "loading", "vectors_indexed": 0}));
    let r = get(&app, "/stats").await;
    assert_eq!((r.status, r.json()), (StatusCode::SERVICE_UNAVAILABLE, json!({"detail": "Index not loaded yet"})));
    let r = search(&app, json!({"query_vector": query(11), "k": 3})).await;
    assert_eq!((r.status, r.json()), (StatusCode::SERVICE_UNAVAILABLE, json!({"detail": "Index not loaded yet"})));
    // The body is still validated first, as in the demo.
    assert_422(&search(&app, json!({"k": 3})).await, &[(json!(["body", "query_vector"]), "missing")]);
    // Docs do not need the index.
    assert_eq!(get(&app, "/openapi.json").await.status, StatusCode::OK);

    state.set_index(Arc::clone(&FIXTURE.index));
    assert_eq!(get(&app, "/").await.json()["status"], "healthy");
    assert_eq!(get(&app, "/stats").await.status, StatusCode::OK);
    assert_eq!(search(&app, json!({"query_vector": query(11), "k": 3})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_load_is_unavailable_and_says_nothing_internal() {
    let state = AppState::new(ServerConfig::default());
    let app = app(state.clone());
    state.set_failed("/secret/path/index.vwi: permission denied".to_owned());
    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json(), json!({"service": "VectorWise", "status": "unavailable", "vectors_indexed": 0}));
    for r in [get(&app, "/stats").await, search(&app, json!({"query_vector": query(12), "k": 3})).await] {
        assert_eq!((r.status, r.json()), (StatusCode::SERVICE_UNAVAILABLE, json!({"detail": "Index not available"})));
    }
    // A later successful load recovers.
    state.set_index(Arc::clone(&FIXTURE.index));
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    // A failed reload does not take a served index down.
    state.set_failed("reload failed".to_owned());
    assert_eq!(get(&app, "/").await.json()["status"], "healthy");
}

#[tokio::test]
async fn set_index_swaps_the_served_index() {
    let state = state();
    let app = app(state.clone());
    assert_eq!(get(&app, "/").await.json()["vectors_indexed"], N);
    state.set_index(Arc::clone(&FIXTURE.small));
    assert_eq!(get(&app, "/").await.json()["vectors_indexed"], SMALL_N);
    assert_eq!(get(&app, "/stats").await.json()["total_vectors"], SMALL_N);
}

// ---- overload ----

#[tokio::test]
async fn searches_past_the_bound_are_503_at_once() {
    let app = app(state_with(ServerConfig { max_pending_searches: 0, ..ServerConfig::default() }));
    let r = search(&app, json!({"query_vector": query(13), "k": 3})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json(), json!({"detail": "Too many pending searches, retry later"}));
    assert_eq!(r.header("retry-after"), Some("1"));
    // Cheap endpoints are not bounded, and bad bodies are still 4xx.
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    assert_eq!(search(&app, json!({"query_vector": [1.0], "k": 3})).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_searches_all_succeed_within_the_bound() {
    let app = app(state());
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { search(&app, json!({"query_vector": row(i * 7), "k": 1})).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(ids(&r.json()), vec![(i * 7) as u64]);
    }
}

// ---- docs ----

/// Every `src="..."` and `href="..."` in `html`.
fn asset_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (pos, _) in html.match_indices(attr) {
            let rest = &html[pos + attr.len()..];
            urls.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    urls
}

/// The page is HTML, names no other host, and every asset it names is served here.
async fn assert_self_contained(app: &Router, page: &str, expected_scripts: usize) -> String {
    let r = get(app, page).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "{page}");
    let html = r.text();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"), "{page}: {html}");
    assert_eq!(html.matches("<script src=\"/").count(), expected_scripts, "{page}: {html}");
    for url in asset_urls(&html) {
        assert!(url.starts_with('/') && !url.starts_with("//"), "{page}: {url}");
        let asset = get(app, &url).await;
        assert_eq!(asset.status, StatusCode::OK, "{page}: {url}");
        assert!(asset.bytes.len() > 100, "{page}: {url}");
    }
    html
}

#[tokio::test]
async fn openapi_document_is_generated() {
    let r = get(&app(state()), "/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "VectorWise");
    assert!(doc["paths"]["/"]["get"].is_object());
    assert!(doc["paths"]["/stats"]["get"].is_object());
    let search = &doc["paths"]["/search"]["post"];
    for status in ["200", "400", "413", "422", "500", "503"] {
        assert!(search["responses"][status].is_object(), "{status}");
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "HealthResponse",
        "StatsResponse",
        "SearchRequest",
        "SearchResponse",
        "ErrorResponse",
        "HTTPValidationError",
        "ValidationError",
    ] {
        assert!(schemas[name].is_object(), "{name}");
    }
    assert_eq!(schemas["SearchRequest"]["required"], json!(["query_vector", "k"]));
    assert_eq!(schemas["SearchRequest"]["properties"]["k"]["maximum"], 100);
    // As the server: unknown fields are a 422.
    assert_eq!(schemas["SearchRequest"]["additionalProperties"], false);
    assert_eq!(schemas["SearchBatchRequest"]["additionalProperties"], false);
    assert!(schemas["StatsResponse"]["properties"]["hnsw_efSearch"].is_object());
    // The served index's dimension is the vectors' length; it is a cosine
    // index, so a vector needs a non-zero value.
    let dim = FIXTURE.index.dim() as u64;
    let single = &schemas["SearchRequest"]["properties"]["query_vector"];
    let of_batch = &schemas["SearchBatchRequest"]["properties"]["query_vectors"]["items"];
    for vector in [single, of_batch] {
        assert_eq!((vector["minItems"].as_u64(), vector["maxItems"].as_u64()), (Some(dim), Some(dim)), "{vector}");
        assert!(vector["contains"].is_object(), "{vector}");
    }
    // At most one of profile, recall_target and ef_search.
    assert_eq!(schemas["SearchRequest"]["anyOf"].as_array().map(Vec::len), Some(3));
    assert_eq!(search["responses"]["503"]["headers"]["retry-after"]["schema"]["type"], "integer");
    // Operation ids are unique (OpenAPI requires it; generated clients name methods by them).
    let mut ids: Vec<&str> = doc["paths"].as_object().unwrap().values().flat_map(|p| p.as_object().unwrap().values()).filter_map(|op| op["operationId"].as_str()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operationId among {ids:?}");
    assert!(n > 20, "{n} operations");
}

/// The document's bounds on a vector's values are the server's, at both
/// edges: the largest magnitudes that stay finite as f32 are searched and
/// the first that do not are a 422; under cosine, values that are all 0 as
/// f32 are the zero vector (422) and the smallest that is not is searched.
#[tokio::test]
async fn the_documented_value_bounds_are_the_servers() {
    let app = app(state());
    let doc = get(&app, "/openapi.json").await.json();
    let vector = &doc["components"]["schemas"]["SearchRequest"]["properties"]["query_vector"];
    let dim = vector["minItems"].as_u64().unwrap() as usize;
    let top = vector["items"]["exclusiveMaximum"].as_f64().unwrap();
    assert_eq!(vector["items"]["exclusiveMinimum"].as_f64(), Some(-top));
    let zero = vector["contains"]["anyOf"][0]["exclusiveMinimum"].as_f64().unwrap();
    assert_eq!(vector["contains"]["anyOf"][1]["exclusiveMaximum"].as_f64(), Some(-zero));
    let post = |values: Vec<f64>| {
        let app = app.clone();
        async move { search(&app, json!({ "query_vector": values, "k": 1 })).await }
    };
    let mut edge = vec![0.0; dim];
    edge[0] = top.next_down();
    edge[1] = -top.next_down();
    assert_eq!(post(edge.clone()).await.status, StatusCode::OK);
    edge[1] = -top;
    assert_422(&post(edge).await, &[(json!(["body", "query_vector", 1]), "finite_number")]);
    let mut tiny = vec![zero; dim];
    tiny[1] = -zero;
    assert_422(&post(tiny.clone()).await, &[(json!(["body", "query_vector"]), "value_error")]);
    tiny[2] = -zero.next_up();
    assert_eq!(post(tiny).await.status, StatusCode::OK);
}

/// Each POST operation's request-body example, as Swagger UI's "Try it out"
/// sends it, is answered 200 by the index served; after a swap to an index
/// of another dimension, the examples follow it.
#[tokio::test]
async fn the_documented_examples_run_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d24.vwi");
    let opts = hnsw::BuildOptions { m: 8, ef_construction: 32, threads: Some(1), seed: 3 };
    vectorwise_index::build_index(&dataset::sphere(50, 24, 3), &path, &opts, &|_| {}).unwrap();
    let state = state();
    let app = app(state.clone());
    for dim in [DIM, 24] {
        if dim == 24 {
            state.set_index(Arc::new(Index::open(&path).unwrap()));
        }
        let doc = get(&app, "/openapi.json").await.json();
        let mut posts = 0;
        for (route, item) in doc["paths"].as_object().unwrap() {
            let Some(op) = item.get("post") else { continue };
            // The collection routes need a store and a collection by name:
            // tests/collections.rs covers them.
            if route.starts_with("/collections") {
                continue;
            }
            let example = &op["requestBody"]["content"]["application/json"]["example"];
            assert!(example.is_object(), "{route} has no request example");
            let r = post_raw(&app, route, example.to_string()).await;
            assert_eq!(r.status, StatusCode::OK, "{route} at dimension {dim}: {example} -> {}", r.text());
            posts += 1;
        }
        assert_eq!(posts, 2);
    }
}

#[tokio::test]
async fn swagger_ui_is_served_locally() {
    let app = app(state());
    assert_self_contained(&app, "/docs", 3).await;
    assert_self_contained(&app, "/docs/", 3).await;
    let init = get(&app, "/docs/swagger-initializer.js").await.text();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    assert!(!init.contains("petstore"), "{init}");
    assert_eq!(get(&app, "/docs/no-such-file.js").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn redoc_is_served_locally() {
    let app = app(state());
    let html = assert_self_contained(&app, "/redoc", 1).await;
    assert!(html.contains(r#"<redoc spec-url="/openapi.json">"#), "{html}");
    let js = get(&app, "/redoc/redoc.standalone.js").await;
    // Not ASCII: without the charset a browser reads it as Latin-1 and fails.
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(js.bytes.len() > 1_000_000);
    assert!(js.bytes.starts_with(b"/*! For license information please see redoc.standalone.js.LICENSE.txt */"));
    assert!(!js.text().contains("cdn.redoc.ly"));
}

// ---- CORS ----

#[tokio::test]
async fn cors_allows_any_origin_by_default() {
    let app = app(state());
    let req = Request::get("/").header(header::ORIGIN, "http://example.com").body(Body::empty()).unwrap();
    assert_eq!(send(&app, req).await.header("access-control-allow-origin"), Some("*"));
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/search")
        .header(header::ORIGIN, "http://example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let r = send(&app, preflight).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-methods").is_some());
}

#[tokio::test]
async fn cors_honours_an_origin_list() {
    let config =
        ServerConfig { cors_origins: "https://a.example, https://b.example".to_owned(), ..ServerConfig::default() };
    let app = app(state_with(config));
    for (origin, allowed) in [("https://a.example", true), ("https://b.example", true), ("https://c.example", false)] {
        let req = Request::get("/").header(header::ORIGIN, origin).body(Body::empty()).unwrap();
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("access-control-allow-origin"), allowed.then_some(origin), "{origin}");
    }
}

// ---- 404, 405, 500 ----

#[tokio::test]
async fn unknown_routes_and_methods_have_fastapi_bodies() {
    let app = app(state());
    for path in ["/nope", "/search/extra", "/docs-x"] {
        let r = get(&app, path).await;
        assert_eq!((r.status, r.json()), (StatusCode::NOT_FOUND, json!({"detail": "Not Found"})), "{path}");
    }
    let r = get(&app, "/search").await;
    assert_eq!((r.status, r.json()), (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method Not Allowed"})));
    assert!(r.header("allow").unwrap().contains("POST"));
    for path in ["/", "/stats", "/openapi.json", "/redoc"] {
        let r = post_raw(&app, path, "{}").await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method Not Allowed"})),
            "{path}"
        );
    }
}

async fn body_of(error: ApiError) -> (StatusCode, String) {
    let response = axum::response::IntoResponse::into_response(error);
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn internal_errors_are_500_and_say_nothing_internal() {
    use vectorwise_index::Error;
    let internal = r#"{"detail":"Internal server error"}"#.to_owned();
    let io = Error::Io { path: "/secret/index.vwi".into(), source: std::io::Error::other("disk on fire") };
    assert_eq!(body_of(ApiError::Engine(io)).await, (StatusCode::INTERNAL_SERVER_ERROR, internal.clone()));
    let corrupt = Error::CorruptFile { path: "/secret/index.vwi".into(), reason: "bad checksum".into() };
    assert_eq!(body_of(ApiError::Engine(corrupt)).await, (StatusCode::INTERNAL_SERVER_ERROR, internal.clone()));
    let panicked = tokio::spawn(async { panic!("boom in a search") }).await.unwrap_err();
    assert_eq!(body_of(ApiError::Task(panicked)).await, (StatusCode::INTERNAL_SERVER_ERROR, internal));
    // Engine user errors stay 4xx with their message.
    let dim = Error::DimensionMismatch { expected: 128, actual: 3 };
    assert_eq!(body_of(ApiError::Engine(dim)).await.0, StatusCode::BAD_REQUEST);
}
