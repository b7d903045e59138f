//! The snapshots API: over a real socket, a snapshot taken while clients
//! upsert and delete, downloaded (streamed) and restored, holds for every
//! client exactly the state after some prefix of its requests (every one
//! acknowledged before the snapshot, none begun after it), with exact
//! searches answering as a brute-force search of that state; in process,
//! every refusal (names, path traversal, unknown fields, conflicts).

mod common;

use axum::http::{Method, StatusCode};
use rand::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vectorwise_index::Metric;
use vectorwise_index::plan::SearchRequest;
use vectorwise_server::{AppState, ConnectionLimits, ServerConfig, app};
use vectorwise_store::{CollectionConfig, FieldSpec, FieldType, SearchOptions, Store, SyncMode};

const DIM: usize = 4;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

/// A server on 127.0.0.1 with the store in `dir` until dropped.
struct Live {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn start(store: Arc<Store>) -> Live {
        let state = AppState::new(ServerConfig::default());
        state.set_store(store);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = app(state);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let limits = ConnectionLimits { shutdown_timeout: Duration::from_secs(5), ..ConnectionLimits::default() };
                vectorwise_server::serve(listener, router, limits, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Live { url, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let request = ureq::http::Request::builder().method(method).uri(url);
    let mut response = match body {
        Some(b) => agent.run(request.header("content-type", "application/json").body(b.to_string()).unwrap()),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

type State = HashMap<u64, (Vec<f32>, String)>;

/// One client's request: upsert (id, vector, payload text) or delete ids.
#[derive(Clone, Debug)]
enum Op {
    Upsert(Vec<(u64, Vec<f32>, String)>),
    Delete(Vec<u64>),
}

fn apply(state: &mut State, op: &Op) {
    match op {
        Op::Upsert(points) => points.iter().for_each(|(id, v, p)| {
            state.insert(*id, (v.clone(), p.clone()));
        }),
        Op::Delete(ids) => ids.iter().for_each(|id| {
            state.remove(id);
        }),
    }
}

fn random_op(rng: &mut StdRng, client: u64, seq: usize, ids: std::ops::Range<u64>) -> Op {
    if rng.random_bool(0.25) {
        return Op::Delete((0..rng.random_range(1..6)).map(|_| rng.random_range(ids.clone())).collect());
    }
    let mut points: Vec<(u64, Vec<f32>, String)> = Vec::new();
    for _ in 0..rng.random_range(1..30) {
        let id = rng.random_range(ids.clone());
        // Values exact in f32 and in JSON, so the comparison is exact.
        let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-512..512) as f32 / 256.0).collect();
        let payload = json!({"c": client, "seq": seq, "tag": format!("t{}", id % 3)}).to_string();
        points.retain(|p| p.0 != id);
        points.push((id, v, payload));
    }
    Op::Upsert(points)
}

fn body_of(op: &Op) -> (&'static str, Value) {
    match op {
        Op::Upsert(points) => {
            let points: Vec<Value> = points
                .iter()
                .map(|(id, v, p)| json!({"id": id, "vector": v, "payload": serde_json::from_str::<Value>(p).unwrap()}))
                .collect();
            ("PUT", json!({ "points": points }))
        }
        Op::Delete(ids) => ("POST", json!({ "ids": ids })),
    }
}

#[test]
fn a_snapshot_over_http_under_concurrent_writes_downloads_and_restores_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    let (src, _) = store.create("src", CollectionConfig { seal_points: 120, ..CollectionConfig::new(DIM, Metric::L2) }).unwrap();
    src.create_payload_index(FieldSpec { field: "tag".into(), field_type: FieldType::Keyword }).unwrap();
    let live = Live::start(Arc::clone(&store));
    const CLIENTS: u64 = 3;
    const RANGE: u64 = 300;
    let logs: Vec<Arc<Mutex<Vec<Op>>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let done: Vec<Arc<AtomicUsize>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (log, done, stop, url) = (Arc::clone(&logs[c as usize]), Arc::clone(&done[c as usize]), Arc::clone(&stop), live.url.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut rng = StdRng::seed_from_u64(c);
                let mut seq = 0;
                while !stop.load(Ordering::Acquire) {
                    let op = random_op(&mut rng, c, seq, c * RANGE..(c + 1) * RANGE);
                    log.lock().unwrap().push(op.clone());
                    let (method, body) = body_of(&op);
                    let path = if method == "PUT" { "points" } else { "points/delete" };
                    let (status, reply) = send(&agent, method, &format!("{url}/collections/src/{path}"), Some(&body));
                    assert_eq!(status, 200, "{reply}");
                    seq += 1;
                    done.store(seq, Ordering::Release);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let agent = agent();
    let acknowledged: Vec<usize> = done.iter().map(|d| d.load(Ordering::Acquire)).collect();
    let (status, made) = send(&agent, "POST", &format!("{}/collections/src/snapshots", live.url), Some(&json!({"name": "under-load"})));
    let begun: Vec<usize> = logs.iter().map(|l| l.lock().unwrap().len()).collect();
    assert_eq!(status, 201, "{made}");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().unwrap();
    }
    assert!(src.stats().optimiser.seals > 0, "seals ran meanwhile");

    let (status, listed) = send(&agent, "GET", &format!("{}/collections/src/snapshots", live.url), None);
    assert_eq!(status, 200);
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(listed["snapshots"][0], made, "listed as it was made");
    for field in ["name", "size", "created", "points", "position"] {
        assert!(!made[field].is_null(), "{field}: {made}");
    }
    // Downloaded, streamed: what arrives is the file.
    let mut response = agent.get(format!("{}/collections/src/snapshots/under-load", live.url)).call().unwrap();
    assert_eq!(response.headers().get("content-type").unwrap(), "application/x-tar");
    assert_eq!(response.headers().get("content-length").unwrap().to_str().unwrap(), made["size"].to_string());
    let mut downloaded = Vec::new();
    response.body_mut().as_reader().read_to_end(&mut downloaded).unwrap();
    let path = store.snapshot_path("src", "under-load").unwrap();
    assert_eq!(downloaded, std::fs::read(&path).unwrap());

    // Restored from the download into another data directory.
    let other = tempfile::tempdir().unwrap();
    let restored_store = Store::open(other.path(), SyncMode::Always).unwrap();
    let (copy, info) = restored_store.restore("copy", downloaded.as_slice(), false).unwrap();
    assert_eq!((info.points as u64, info.position), (made["points"].as_u64().unwrap(), made["position"].as_u64().unwrap()));
    assert_eq!(copy.stats().payload_indexes, src.stats().payload_indexes, "payload indexes come back");
    let mut whole = State::new();
    for c in 0..CLIENTS {
        let ids: Vec<u64> = (c * RANGE..(c + 1) * RANGE).collect();
        let restored: State = copy
            .get(&ids, true, true)
            .unwrap()
            .into_iter()
            .map(|p| (p.id.as_num().unwrap(), (p.vector.unwrap(), p.payload.map(|t| t.to_string()).unwrap_or_default())))
            .collect();
        let ops = logs[c as usize].lock().unwrap().clone();
        let (ack, begun) = (acknowledged[c as usize], begun[c as usize]);
        let mut state = State::new();
        let mut matched = None;
        for k in 0..=ops.len() {
            if k > 0 {
                apply(&mut state, &ops[k - 1]);
            }
            if (ack..=begun).contains(&k) && state == restored {
                matched = Some(state.clone());
                break;
            }
        }
        whole.extend(matched.unwrap_or_else(|| panic!("client {c}: not its state after any of its first {ack}..={begun} requests")));
    }
    assert_eq!(copy.len(), whole.len());
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-2.0..2.0f32)).collect();
        let opts = SearchOptions { k: 10, request: SearchRequest::RecallTarget(1.0), with_payload: false, with_vector: false, payload_budget: usize::MAX, filter: None };
        let got: Vec<u64> = copy.search(&q, &opts).unwrap().hits.iter().map(|h| h.id.as_num().unwrap()).collect();
        let mut all: Vec<(f32, u64)> = whole.iter().map(|(&id, (v, _))| (v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum(), id)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u64> = all.iter().take(10).map(|x| x.1).collect();
        assert_eq!(got, want);
    }
    let (status, _) = send(&agent, "DELETE", &format!("{}/collections/src/snapshots/under-load", live.url), None);
    assert_eq!(status, 200);
    assert!(!path.exists());
}

async fn call(app: &axum::Router, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
    common::call(app, method, path, body.map(str::to_owned)).await
}

fn loc(body: &Value) -> (Value, String) {
    let e = &body["detail"][0];
    (e["loc"].clone(), e["type"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn snapshot_routes_refuse_bad_names_traversal_and_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    store.create("src", CollectionConfig::new(2, Metric::L2)).unwrap();
    let state = AppState::new(ServerConfig::default());
    state.set_store(Arc::clone(&store));
    let app = app(state);
    let post = |body: Option<&'static str>| {
        let app = app.clone();
        async move { call(&app, Method::POST, "/collections/src/snapshots", body).await }
    };
    // No body, `{}` and a name.
    let (s, first) = post(None).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert!(vectorwise_store::valid_name(first["name"].as_str().unwrap()), "{first}");
    assert_eq!(post(Some("null")).await.0, StatusCode::CREATED, "null is no body");
    assert_eq!(post(Some("{}")).await.0, StatusCode::CREATED);
    assert_eq!(post(Some(r#"{"name": "a"}"#)).await.0, StatusCode::CREATED);
    let (s, body) = post(Some(r#"{"name": "a"}"#)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    for (body, want, kind) in [
        (r#"{"name": "../x"}"#, json!(["body", "name"]), "string_pattern_mismatch"),
        (r#"{"name": "a/b"}"#, json!(["body", "name"]), "string_pattern_mismatch"),
        (r#"{"name": ""}"#, json!(["body", "name"]), "string_pattern_mismatch"),
        (r#"{"name": 5}"#, json!(["body", "name"]), "string_type"),
        (r#"{"nme": "x"}"#, json!(["body", "nme"]), "extra_forbidden"),
        (r#"[]"#, json!(["body"]), "model_attributes_type"),
    ] {
        let (s, reply) = post(Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(loc(&reply), (want, kind.to_string()), "{body}: {reply}");
    }
    // Names in the path: traversal and anything but the name rule is a 422
    // naming the path parameter; nothing outside the snapshots folder is read.
    for path in ["..%2F..%2Fmanifest", "..", "a.tar", "%2Fetc%2Fpasswd", "a%00b"] {
        for method in [Method::GET, Method::DELETE] {
            let (s, reply) = call(&app, method.clone(), &format!("/collections/src/snapshots/{path}"), None).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path}: {reply}");
            assert_eq!(loc(&reply).0, json!(["path", "snapshot"]), "{path}");
        }
    }
    let (s, reply) = call(&app, Method::GET, "/collections/..%2Fsrc/snapshots", None).await;
    assert_eq!((s, loc(&reply).0), (StatusCode::UNPROCESSABLE_ENTITY, json!(["path", "name"])));
    assert_eq!(call(&app, Method::GET, "/collections/src/snapshots/nope", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, Method::DELETE, "/collections/src/snapshots/nope", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, Method::GET, "/collections/missing/snapshots", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(post(None).await.0, StatusCode::CREATED);
    assert_eq!(call(&app, Method::POST, "/collections/missing/snapshots", None).await.0, StatusCode::NOT_FOUND);
    let (s, listed) = call(&app, Method::GET, "/collections/src/snapshots", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 5, "{listed}");
    assert_eq!(call(&app, Method::DELETE, "/collections/src/snapshots/a", None).await.0, StatusCode::OK);
    assert_eq!(call(&app, Method::GET, "/collections/src/snapshots/a", None).await.0, StatusCode::NOT_FOUND);
}
