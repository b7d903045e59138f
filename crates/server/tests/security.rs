//! API keys, roles and rate limits over a real socket: the server's own
//! accept loop (`vectorwise_server::serve`, which records each client's
//! address) on 127.0.0.1, a blocking HTTP client with keep-alive.
//!
//! Every route of the OpenAPI document × every kind of caller (none, an
//! unknown key, read, write, admin) gets the status the table in `auth.rs`
//! promises; a key limited to one collection sees and touches only it; a
//! metrics key of its own; keys swapped while a connection stays open;
//! 429 with `Retry-After` past a budget, and recovery after waiting.

mod common;

use common::{FIXTURE, row};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use vectorwise_index::Metric;
use vectorwise_server::{ApiKey, AppState, ConnectionLimits, Keys, RateLimits, Role, ServerConfig, app, hash_key};
use vectorwise_store::{CollectionConfig, NewPoint, Store, SyncMode};

const READ: &str = "read-key-0123456789";
const WRITE: &str = "write-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";
const DOCS: &str = "docs-only-key-0123456789";
const METRICS: &str = "metrics-key-0123456789";
const UNKNOWN: &str = "not-a-key-0123456789";

fn key(name: &str, role: Role, secret: &str, collections: Option<&[&str]>) -> ApiKey {
    ApiKey {
        name: name.into(),
        role,
        sha256: hash_key(secret.as_bytes()),
        collections: collections.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
    }
}

fn keys() -> Keys {
    Keys::required(vec![
        key("reader", Role::Read, READ, None),
        key("writer", Role::Write, WRITE, None),
        key("ops", Role::Admin, ADMIN, None),
        key("docs-writer", Role::Write, DOCS, Some(&["docs"])),
    ])
    .unwrap()
}

/// The server's accept loop serving `app(state)` with collections `docs` and
/// `other` (2-d, l2, point 1 in each) in a temporary data directory.
struct Live {
    url: String,
    state: AppState,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Value,
}

impl Live {
    fn start(config: ServerConfig, keys: Keys) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
        for name in ["docs", "other"] {
            let (c, _) = store.create(name, CollectionConfig::new(2, Metric::L2)).unwrap();
            c.upsert(vec![NewPoint { id: 1.into(), vector: vec![1.0, 0.0], payload: None }]).unwrap();
        }
        store.snapshot("docs", Some("kept")).unwrap();
        let state = AppState::with_index(config, Arc::clone(&FIXTURE.index));
        state.set_store(store);
        state.set_keys(keys);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = app(state.clone());
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Live { url, state, agent, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    /// `method path` with `body` (JSON) and the key in `header` (`authorization`
    /// as a bearer token, or `api-key`).
    fn call(&self, method: &str, path: &str, body: Option<&Value>, key: Option<(&str, &str)>) -> Reply {
        let url = format!("{}{path}", self.url);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some((header, secret)) = key {
            let value = if header == "authorization" { format!("Bearer {secret}") } else { secret.to_owned() };
            request = request.header(header, value);
        }
        let response = match body {
            Some(b) => {
                let request = request.header("content-type", "application/json").body(b.to_string()).unwrap();
                self.agent.run(request)
            }
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // Lossy: a snapshot's download is binary.
        let bytes = response.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    fn with_key(&self, method: &str, path: &str, body: Option<&Value>, secret: &str) -> Reply {
        self.call(method, path, body, Some(("authorization", secret)))
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

/// One route of the matrix: a request that succeeds for a caller allowed it.
struct Case {
    method: &'static str,
    /// The route's template, as the document names it.
    template: &'static str,
    /// The request's path (`{who}` is replaced by the caller's name, so that
    /// each caller creates and deletes its own collection).
    path: &'static str,
    body: Option<Value>,
    /// The least role allowed (`None`: open to everyone).
    role: Option<Role>,
}

fn cases() -> Vec<Case> {
    let q = row(0);
    let case = |method, template, path, body, role| Case { method, template, path, body, role };
    vec![
        case("GET", "/", "/", None, None),
        case("GET", "/stats", "/stats", None, Some(Role::Read)),
        case("POST", "/search", "/search", Some(json!({"query_vector": q, "k": 3})), Some(Role::Read)),
        case("POST", "/search/batch", "/search/batch", Some(json!({"query_vectors": [q, q], "k": 3})), Some(Role::Read)),
        case("GET", "/metrics", "/metrics", None, Some(Role::Read)),
        case("GET", "/collections", "/collections", None, Some(Role::Read)),
        case("GET", "/collections/{name}", "/collections/docs", None, Some(Role::Read)),
        case("PUT", "/collections/{name}", "/collections/tmp-{who}", Some(json!({"dimension": 2})), Some(Role::Admin)),
        case("DELETE", "/collections/{name}", "/collections/tmp-{who}", None, Some(Role::Admin)),
        case(
            "PUT",
            "/collections/{name}/points",
            "/collections/docs/points",
            Some(json!({"points": [{"id": 2, "vector": [0.0, 1.0]}]})),
            Some(Role::Write),
        ),
        case("POST", "/collections/{name}/points/delete", "/collections/docs/points/delete", Some(json!({"ids": [99]})), Some(Role::Write)),
        case("POST", "/collections/{name}/points/get", "/collections/docs/points/get", Some(json!({"ids": [1]})), Some(Role::Read)),
        case("GET", "/collections/{name}/points/{id}", "/collections/docs/points/1", None, Some(Role::Read)),
        case("POST", "/collections/{name}/search", "/collections/docs/search", Some(json!({"vector": [1.0, 0.0], "k": 1})), Some(Role::Read)),
        case(
            "POST",
            "/collections/{name}/search/batch",
            "/collections/docs/search/batch",
            Some(json!({"vectors": [[1.0, 0.0]], "k": 1})),
            Some(Role::Read),
        ),
        // Declared and dropped again by each admin caller.
        case("PUT", "/collections/{name}/index", "/collections/docs/index", Some(json!({"field": "tag", "type": "keyword"})), Some(Role::Admin)),
        case("DELETE", "/collections/{name}/index/{field}", "/collections/docs/index/tag", None, Some(Role::Admin)),
        // Each admin caller takes its own snapshot and deletes it again.
        case("POST", "/collections/{name}/snapshots", "/collections/docs/snapshots", Some(json!({"name": "s-{who}"})), Some(Role::Admin)),
        case("GET", "/collections/{name}/snapshots", "/collections/docs/snapshots", None, Some(Role::Admin)),
        case("GET", "/collections/{name}/snapshots/{snapshot}", "/collections/docs/snapshots/kept", None, Some(Role::Admin)),
        case("DELETE", "/collections/{name}/snapshots/{snapshot}", "/collections/docs/snapshots/s-{who}", None, Some(Role::Admin)),
        // Each caller submits a job; the others' routes name a job nobody has,
        // so an admitted caller gets the 404 of the handler (not 401/403).
        case("POST", "/collections/{name}/jobs", "/collections/docs/jobs", Some(json!({"vectors": [[1.0, 0.0]], "k": 1})), Some(Role::Read)),
        case("GET", "/collections/{name}/jobs", "/collections/docs/jobs", None, Some(Role::Read)),
        case("GET", "/collections/{name}/jobs/{id}", "/collections/docs/jobs/0000000000000000", None, Some(Role::Read)),
        case("DELETE", "/collections/{name}/jobs/{id}", "/collections/docs/jobs/0000000000000000", None, Some(Role::Read)),
        case("GET", "/collections/{name}/jobs/{id}/{file}", "/collections/docs/jobs/0000000000000000/ids.npy", None, Some(Role::Read)),
        // The docs stay open (not operations of the document).
        case("GET", "/openapi.json", "/openapi.json", None, None),
        case("GET", "/docs", "/docs", None, None),
        case("GET", "/docs/{*file}", "/docs/swagger-ui.css", None, None),
        case("GET", "/redoc", "/redoc", None, None),
    ]
}

/// Every operation of the document is a case of the matrix (a new route
/// needs a row here too), and every case × caller answers as the table says.
#[test]
fn every_route_answers_each_role_as_the_table_says() {
    let live = Live::start(ServerConfig::default(), keys());
    let doc = live.call("GET", "/openapi.json", None, None).body;
    let cases = cases();
    let covered: BTreeSet<(String, String)> = cases.iter().map(|c| (c.method.to_lowercase(), c.template.to_owned())).collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(covered.contains(&(method.clone(), path.clone())), "{method} {path} has no row in cases()");
        }
    }
    let callers: [(&str, Option<(&str, &str)>, Option<Role>); 6] = [
        ("nobody", None, None),
        ("unknown", Some(("authorization", UNKNOWN)), None),
        ("reader", Some(("authorization", READ)), Some(Role::Read)),
        ("writer", Some(("api-key", WRITE)), Some(Role::Write)),
        ("ops", Some(("authorization", ADMIN)), Some(Role::Admin)),
        ("ops2", Some(("api-key", ADMIN)), Some(Role::Admin)),
    ];
    let mut checked = 0;
    for (who, key, role) in callers {
        for case in &cases {
            let path = case.path.replace("{who}", who);
            let body = case.body.as_ref().map(|b| serde_json::from_str::<Value>(&b.to_string().replace("{who}", who)).unwrap());
            let reply = live.call(case.method, &path, body.as_ref(), key);
            let expected = match (case.role, role) {
                (None, _) => 200,
                (Some(_), None) => 401,
                (Some(need), Some(have)) if have < need => 403,
                _ => 200,
            };
            // Created (201) and accepted (202) are the success of their
            // routes; a job route naming no job answers the handler's 404.
            let no_job = case.template.starts_with("/collections/{name}/jobs/{id}");
            let got = match reply.status {
                201 | 202 => 200,
                404 if no_job => 200,
                other => other,
            };
            assert_eq!(got, expected, "{who}: {} {path}: {}", case.method, reply.body);
            // A refused request's body is not read, so its connection closes;
            // a refused GET keeps its connection.
            let closes = reply.headers.get("connection").is_some_and(|v| v == "close");
            assert_eq!(closes, expected >= 400 && case.body.is_some(), "{who}: {} {path}", case.method);
            match expected {
                401 => {
                    assert_eq!(reply.headers.get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
                    let detail = reply.body["detail"].as_str().unwrap();
                    let want = if key.is_none() { "Not authenticated" } else { "Invalid API key" };
                    assert!(detail.starts_with(want), "{who}: {detail}");
                }
                403 => assert_eq!(reply.body["detail"], "This API key's role does not allow this request"),
                _ => {}
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * cases.len());
    // HEAD is GET's; a method the route does not have needs an admin key
    // (then it is the 405 it always was), so an unlisted route is closed.
    assert_eq!(live.call("HEAD", "/stats", None, None).status, 401);
    assert_eq!(live.with_key("HEAD", "/stats", None, READ).status, 200);
    assert_eq!(live.call("PATCH", "/search", None, None).status, 401);
    assert_eq!(live.with_key("PATCH", "/search", None, WRITE).status, 403);
    assert_eq!(live.with_key("PATCH", "/search", None, ADMIN).status, 405);
    assert_eq!(live.call("GET", "/no-such-route", None, None).status, 404, "unmatched paths protect nothing");
    // Each admin created and deleted its own collection; nobody else left one.
    let left = live.with_key("GET", "/collections", None, READ).body;
    assert_eq!(left, json!({"collections": [{"name": "docs", "points": 2}, {"name": "other", "points": 1}]}));
}

/// A key limited to `docs` sees only `docs`, writes only there, and is
/// refused (403, whether the other collection exists or not) elsewhere,
/// including the demo's routes (they act on `default`) and `/metrics`.
#[test]
fn a_key_limited_to_a_collection_sees_and_touches_only_it() {
    let live = Live::start(ServerConfig::default(), keys());
    let listed = live.with_key("GET", "/collections", None, DOCS);
    assert_eq!((listed.status, listed.body), (200, json!({"collections": [{"name": "docs", "points": 1}]})));
    let all = live.with_key("GET", "/collections", None, READ);
    assert_eq!(all.body["collections"].as_array().unwrap().len(), 2);
    let point = json!({"points": [{"id": 5, "vector": [0.5, 0.5]}]});
    assert_eq!(live.with_key("PUT", "/collections/docs/points", Some(&point), DOCS).status, 200);
    // Percent-encoded, the name is still `docs` (as the handler reads it).
    assert_eq!(live.with_key("GET", "/collections/d%6Fcs/points/5", None, DOCS).status, 200);
    let forbidden = "This API key may not use this collection";
    for (method, path, body) in [
        ("PUT", "/collections/other/points", Some(&point)),
        ("GET", "/collections/other", None),
        ("GET", "/collections/other/points/1", None),
        ("GET", "/collections/missing", None),
        ("GET", "/stats", None),
        ("POST", "/search", Some(&json!({"query_vector": row(0), "k": 1}))),
    ] {
        let reply = live.with_key(method, path, body, DOCS);
        assert_eq!((reply.status, reply.body["detail"].as_str()), (403, Some(forbidden)), "{method} {path}");
    }
    let metrics = live.with_key("GET", "/metrics", None, DOCS);
    assert_eq!(metrics.status, 403, "/metrics shows every collection");
    // Its role still applies within `docs`.
    assert_eq!(live.with_key("DELETE", "/collections/docs", None, DOCS).status, 403);
    // Nothing was written to `other`.
    let other = live.with_key("POST", "/collections/other/points/get", Some(&json!({"ids": [5]})), READ);
    assert_eq!(other.body, json!({"points": []}));
}

/// With a metrics key, `/metrics` answers to it alone; it opens nothing else.
/// With only a metrics key (no API keys), the rest stays open.
#[test]
fn metrics_can_have_a_key_of_its_own() {
    let live = Live::start(ServerConfig::default(), keys().with_metrics_key(METRICS));
    assert_eq!(live.with_key("GET", "/metrics", None, METRICS).status, 200);
    assert_eq!(live.call("GET", "/metrics", None, Some(("api-key", METRICS))).status, 200);
    assert_eq!(live.with_key("GET", "/metrics", None, ADMIN).status, 403);
    assert_eq!(live.call("GET", "/metrics", None, None).status, 401);
    assert_eq!(live.with_key("GET", "/metrics", None, UNKNOWN).status, 401);
    assert_eq!(live.with_key("GET", "/stats", None, METRICS).status, 403);

    let open = Live::start(ServerConfig::default(), Keys::open().with_metrics_key(METRICS));
    assert_eq!(open.call("GET", "/metrics", None, None).status, 401);
    assert_eq!(open.with_key("GET", "/metrics", None, METRICS).status, 200);
    assert_eq!(open.call("GET", "/stats", None, None).status, 200);
    assert_eq!(open.call("PUT", "/collections/new", Some(&json!({"dimension": 2})), None).status, 201);
}

/// An open server (no keys) answers everything without a key, and ignores
/// one sent (even an unknown one).
#[test]
fn an_open_server_needs_no_key() {
    let live = Live::start(ServerConfig::default(), Keys::open());
    for (who, key) in [("anyone", None), ("someone", Some(("authorization", UNKNOWN)))] {
        for case in cases() {
            let path = case.path.replace("{who}", who);
            let body = case.body.as_ref().map(|b| serde_json::from_str::<Value>(&b.to_string().replace("{who}", who)).unwrap());
            let reply = live.call(case.method, &path, body.as_ref(), key);
            // A job route naming no job: the handler's 404, past authorization.
            let no_job = case.template.starts_with("/collections/{name}/jobs/{id}") && reply.status == 404;
            assert!(matches!(reply.status, 200 | 201 | 202) || no_job, "{} {path}: {} {}", case.method, reply.status, reply.body);
        }
    }
}

/// New keys take effect at once, on a connection already open: the old key
/// is refused and the new one admitted without reconnecting.
#[test]
fn swapped_keys_apply_to_open_connections() {
    let live = Live::start(ServerConfig::default(), keys());
    assert_eq!(live.with_key("GET", "/stats", None, READ).status, 200);
    let fresh = "fresh-key-0123456789";
    live.state.set_keys(Keys::required(vec![key("fresh", Role::Read, fresh, None)]).unwrap());
    assert_eq!(live.with_key("GET", "/stats", None, READ).status, 401);
    assert_eq!(live.with_key("GET", "/stats", None, fresh).status, 200);
}

/// CORS preflights carry no key and are answered; `Authorization` is an
/// allowed request header (a `*` would not cover it); a 401 carries the
/// CORS headers so a browser can read it.
#[test]
fn browsers_may_send_keys() {
    let live = Live::start(ServerConfig::default(), keys());
    let request = ureq::http::Request::builder()
        .method("OPTIONS")
        .uri(format!("{}/search", live.url))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .body(())
        .unwrap();
    let response = live.agent.run(request).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let allowed = response.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/stats", live.url))
        .header("origin", "https://app.example")
        .body(())
        .unwrap();
    let response = live.agent.run(request).unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers().get("access-control-allow-origin").unwrap(), "*");
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap()
}

/// Past its budget a key gets 429 with `Retry-After` and a JSON detail;
/// another key, and another budget, are unaffected; after waiting what
/// `Retry-After` said, the key is served again. A batch spends its queries.
#[test]
fn budgets_give_429_with_retry_after_and_recover() {
    let config = ServerConfig {
        // Slow refills (writes one per 5 s, batch queries one a second), so
        // that only a stall of seconds could let a request the test expects
        // refused pass.
        rate_limits: RateLimits { search: Some(2.0), write: Some(0.2), batch: Some(1.0) },
        max_batch: 4,
        ..ServerConfig::default()
    };
    let live = Live::start(config, keys());
    let search = json!({"query_vector": row(1), "k": 2});
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..4 {
        let reply = live.with_key("POST", "/search", Some(&search), READ);
        statuses.push(reply.status);
        if reply.status == 429 {
            refused = Some(reply);
        }
    }
    // A burst of 2 a second: the first two pass (a third may, if a cell came back meanwhile).
    assert_eq!(&statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let refused = refused.unwrap();
    assert_eq!(retry_after(&refused), 1);
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.starts_with("Rate limit exceeded: too many searches"), "{detail}");
    // Another key has its own budget; writes are another budget.
    assert_eq!(live.with_key("POST", "/search", Some(&search), ADMIN).status, 200);
    let point = json!({"points": [{"id": 7, "vector": [0.0, 1.0]}]});
    assert_eq!(live.with_key("PUT", "/collections/docs/points", Some(&point), WRITE).status, 200);
    assert_eq!(live.with_key("PUT", "/collections/docs/points", Some(&point), WRITE).status, 429);
    // Collection searches and point reads spend one search budget (a key's
    // own: DOCS has not searched yet).
    let collection_search = json!({"vector": [1.0, 0.0], "k": 1});
    let reads: Vec<u16> = (0..4)
        .map(|i| match i % 2 {
            0 => live.with_key("POST", "/collections/docs/search", Some(&collection_search), DOCS).status,
            _ => live.with_key("GET", "/collections/docs/points/1", None, DOCS).status,
        })
        .collect();
    assert_eq!(&reads[..2], [200, 200], "{reads:?}");
    assert!(reads.contains(&429), "{reads:?}");

    std::thread::sleep(Duration::from_secs(retry_after(&refused)) + Duration::from_millis(100));
    assert_eq!(live.with_key("POST", "/search", Some(&search), READ).status, 200, "recovered after Retry-After");

    // A batch of 4 spends the whole burst of 4 (max_batch): the next query waits ~1 s.
    let q = row(2);
    let batch = |n: usize| json!({"query_vectors": vec![q.clone(); n], "k": 1});
    assert_eq!(live.with_key("POST", "/search/batch", Some(&batch(4)), ADMIN).status, 200);
    let over = live.with_key("POST", "/search/batch", Some(&batch(1)), ADMIN);
    assert_eq!(over.status, 429, "{}", over.body);
    assert!(over.body["detail"].as_str().unwrap().contains("batch queries"), "{}", over.body);
    assert!((1..=2).contains(&retry_after(&over)));
    let collection_batch = json!({"vectors": [[1.0, 0.0]], "k": 1});
    assert_eq!(live.with_key("POST", "/collections/docs/search/batch", Some(&collection_batch), ADMIN).status, 429);
    // Open routes spend nothing.
    for _ in 0..10 {
        assert_eq!(live.call("GET", "/", None, None).status, 200);
    }
    let metrics = live.with_key("GET", "/metrics", None, ADMIN).body;
    let count = |budget: &str| {
        let text = metrics.as_str().unwrap();
        let line = text.lines().find(|l| l.starts_with(&format!("vectorwise_rate_limited_total{{budget=\"{budget}\"}}"))).unwrap();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    assert!(count("search") >= 2.0 && count("write") == 1.0 && count("batch") == 2.0, "{metrics}");
}

/// `POST /search` from the local address `from` (any of 127/8 on Linux):
/// its status.
fn search_from(url: &str, from: &str, body: &Value) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let from: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    let body = body.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(from).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        let head = format!(
            "POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        std::str::from_utf8(&reply[9..12]).unwrap().parse().unwrap()
    })
}

/// Anonymous callers of an open server spend their address's budget: one
/// address over its budget, another is still served.
#[test]
fn anonymous_callers_are_limited_by_address() {
    // One search every 2 s (a burst of 1).
    let config = ServerConfig { rate_limits: RateLimits { search: Some(0.5), ..RateLimits::default() }, ..ServerConfig::default() };
    let live = Live::start(config, Keys::open());
    let search = json!({"query_vector": row(1), "k": 2});
    let first = live.call("POST", "/search", Some(&search), None);
    assert_eq!(first.status, 200);
    let second = live.call("POST", "/search", Some(&search), Some(("authorization", UNKNOWN)));
    assert_eq!(second.status, 429, "a key an open server ignores does not buy another budget");
    assert!((1..=2).contains(&retry_after(&second)));
    assert_eq!(search_from(&live.url, "127.0.0.1", &search), 429);
    assert_eq!(search_from(&live.url, "127.0.0.2", &search), 200, "another address, another budget");
    assert_eq!(search_from(&live.url, "127.0.0.2", &search), 429);
}
