//! What the real-socket tests share: a 1000-point index built once per test
//! binary, `app(state)` served by `axum::serve` on a free loopback port in
//! its own runtime, a blocking HTTP client, and a Prometheus text parser.

#![allow(dead_code)] // each test binary uses a different part

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use vectorwise_index::{Index, IndexOptions, Matrix, Metric, dataset, hnsw};
use vectorwise_server::{AppState, ServerConfig, app};

pub const DIM: usize = 128;
pub const N: usize = 1000;
pub const SMALL_N: usize = 30;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub data: Matrix,
    pub index: Arc<Index>,
    pub small: Arc<Index>,
}

/// As in `api.rs`: one thread, so the graph (and every answer) is the same
/// on every run.
pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let build = |n: usize, seed: u64, name: &str| {
        let data = dataset::sphere(n, DIM, seed);
        let path = dir.path().join(name);
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

pub fn state_with(config: ServerConfig) -> AppState {
    AppState::with_index(config, Arc::clone(&FIXTURE.index))
}

pub fn row(i: usize) -> Vec<f32> {
    FIXTURE.data.row(i).to_vec()
}

/// A query near no stored point in particular.
pub fn query(seed: u64) -> Vec<f32> {
    dataset::sphere(1, DIM, 1000 + seed).into_vec()
}

/// A served app: `axum::serve` on 127.0.0.1:0 in a runtime of its own
/// thread, stopped gracefully on drop.
pub struct Server {
    pub url: String,
    pub state: AppState,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
    /// Every response header, names lowercase.
    pub headers: BTreeMap<String, String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Server {
    pub fn start(state: AppState) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = app(state.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
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
        Server { url, state, agent, stop: Some(stop), thread: Some(thread) }
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = response.unwrap();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (content_type, retry_after) = (header("content-type"), header("retry-after"));
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
        Reply { status, content_type, retry_after, body, headers }
    }

    pub fn get(&self, path: &str) -> Reply {
        Self::reply(self.agent.get(format!("{}{path}", self.url)).call())
    }

    pub fn post(&self, path: &str, body: impl Into<String>) -> Reply {
        let request = self.agent.post(format!("{}{path}", self.url)).header("content-type", "application/json");
        Self::reply(request.send(body.into()))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, body.to_string())
    }

    /// `GET /metrics`, parsed.
    pub fn scrape(&self) -> Scrape {
        let reply = self.get("/metrics");
        assert_eq!(reply.status, 200, "{}", reply.body);
        Scrape::parse(&reply.body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Samples of a Prometheus text exposition: (name, labels, value).
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}').unwrap())),
            };
            samples.push((name, labels, value));
        }
        Scrape { text: text.to_owned(), samples }
    }

    /// The value of the series with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut found = self.samples.iter().filter(|(n, l, _)| n == name && *l == want);
        let first = found.next().map(|s| s.2);
        assert!(found.next().is_none(), "{name} {labels:?} appears twice");
        first
    }

    /// [`Scrape::value`], or 0 for a series not (yet) exported.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// Every label set `name` is exported with.
    pub fn label_sets(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.samples.iter().filter(|(n, ..)| n == name).map(|(_, l, _)| l).collect()
    }
}

/// `a="x",b="y\"z"` into a map (values may hold commas, braces, escapes).
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels {rest:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// Collects what a `tracing` fmt subscriber writes (the tests that read
/// their server's log install it as the global subscriber).
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One request to `app` in process (`oneshot`), with a JSON body or none:
/// its status and its JSON answer (`null` when the answer is not JSON).
pub async fn call(app: &axum::Router, method: axum::http::Method, path: &str, body: Option<String>) -> (axum::http::StatusCode, Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder().method(method).uri(path).header(axum::http::header::CONTENT_TYPE, "application/json");
    let req = req.body(body.map_or(axum::body::Body::empty(), axum::body::Body::from)).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
