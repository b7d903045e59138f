//! Binary search bodies over a real socket (`application/octet-stream`,
//! `application/x-npy`, the other fields in the query string): the same
//! answers as the JSON bodies on every search route, single and batch; every
//! refusal with its status and location; API keys and rate limits applied.

mod common;

use common::{DIM, FIXTURE, query, row};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use vectorwise_index::Metric;
use vectorwise_server::{ApiKey, AppState, ConnectionLimits, Keys, RateLimits, Role, ServerConfig, app, hash_key};
use vectorwise_store::{CollectionConfig, NewPoint, Store, SyncMode};

const OCTET: &str = "application/octet-stream";
const NPY: &str = "application/x-npy";
const JSON: &str = "application/json";
/// The collection's dimension.
const CDIM: usize = 8;

/// The server's accept loop serving `app(state)` with the fixture index and
/// a collection `c` (8-d, l2, 200 points with a `group` payload).
struct Live {
    url: String,
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

impl Reply {
    /// The `x-vectorwise-*` headers but the cache's verdict (and tier).
    fn used(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-vectorwise-") && !k.as_str().starts_with("x-vectorwise-cache"))
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    /// `(loc, type)` of each problem of a 422.
    fn problems(&self) -> Vec<(Value, String)> {
        assert_eq!(self.status, 422, "{}", self.body);
        self.body["detail"].as_array().unwrap().iter().map(|e| (e["loc"].clone(), e["type"].as_str().unwrap().to_owned())).collect()
    }
}

fn cvector(i: usize) -> Vec<f32> {
    (0..CDIM).map(|j| ((i * 31 + j * 7) % 17) as f32 - 8.0 + 0.01 * i as f32).collect()
}

impl Live {
    fn start(config: ServerConfig, keys: Option<Keys>) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
        let (c, _) = store.create("c", CollectionConfig::new(CDIM, Metric::L2)).unwrap();
        let points = (0..200).map(|i| NewPoint { id: (i as u64).into(), vector: cvector(i), payload: Some(json!({"group": i % 3})) }).collect();
        c.upsert(points).unwrap();
        let state = AppState::with_index(config, Arc::clone(&FIXTURE.index));
        state.set_store(store);
        if let Some(keys) = keys {
            state.set_keys(keys);
        }
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
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into();
        Live { url, agent, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    fn send(&self, path: &str, content_type: &str, body: Vec<u8>, key: Option<&str>) -> Reply {
        let mut request = ureq::http::Request::builder().method("POST").uri(format!("{}{path}", self.url)).header("content-type", content_type);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let mut response = self.agent.run(request.body(body).unwrap()).unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        Reply { status, headers, body }
    }

    fn json(&self, path: &str, body: &Value) -> Reply {
        self.send(path, JSON, body.to_string().into_bytes(), None)
    }

    fn raw(&self, path: &str, values: &[f32]) -> Reply {
        self.send(path, OCTET, le(values), None)
    }

    fn npy(&self, path: &str, shape: &[usize], values: &[f32]) -> Reply {
        self.send(path, NPY, npy("<f4", "False", shape, &le(values)), None)
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

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A `.npy` file as `np.save` writes it (format 1.0, header padded to 64).
fn npy(descr: &str, fortran: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}").into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// The cache off, so that every answer compared is searched.
fn uncached() -> ServerConfig {
    ServerConfig { cache_bytes: 0, ..ServerConfig::default() }
}

#[test]
fn binary_bodies_answer_exactly_as_json_on_every_search_route() {
    let live = Live::start(uncached(), None);
    let queries: Vec<Vec<f32>> = (0..4).map(|i| row(i * 101)).chain((0..4).map(query)).collect();
    let flat: Vec<f32> = queries.concat();
    let options: [(&str, Value); 4] = [
        ("", json!({})),
        ("&profile=high_accuracy", json!({"profile": "high_accuracy"})),
        ("&recall_target=0.97", json!({"recall_target": 0.97})),
        ("&ef_search=64", json!({"ef_search": 64})),
    ];
    for k in [1, 10, 100] {
        for (query_string, fields) in &options {
            let with = |mut body: Value| {
                body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
                body
            };
            for q in &queries {
                let expected = live.json("/search", &with(json!({"query_vector": q, "k": k})));
                assert_eq!(expected.status, 200, "{}", expected.body);
                let path = format!("/search?k={k}{query_string}");
                for got in [live.raw(&path, q), live.npy(&path, &[DIM], q), live.npy(&path, &[1, DIM], q)] {
                    assert_eq!((got.status, &got.body), (200, &expected.body), "{path}");
                    assert_eq!(got.used(), expected.used(), "{path}");
                }
            }
            let expected = live.json("/search/batch", &with(json!({"query_vectors": queries, "k": k})));
            assert_eq!(expected.status, 200, "{}", expected.body);
            let path = format!("/search/batch?k={k}{query_string}");
            for got in [live.raw(&path, &flat), live.npy(&path, &[queries.len(), DIM], &flat)] {
                assert_eq!((got.status, &got.body), (200, &expected.body), "{path}");
                assert_eq!(got.used(), expected.used(), "{path}");
            }
            // A 1-D array on the batch route is a batch of one.
            let one = live.npy(&path, &[DIM], &queries[0]);
            assert_eq!(one.body["results"][0], expected.body["results"][0]);
        }
    }

    // Collections: payloads, vectors and a filter (URL-encoded JSON) from the query string.
    let filter = json!({"must": [{"key": "group", "match": {"value": 1}}]});
    let encoded: String = filter.to_string().bytes().map(|b| format!("%{b:02X}")).collect();
    let cq: Vec<Vec<f32>> = (0..5).map(|i| cvector(i * 13).iter().map(|x| x + 0.3).collect()).collect();
    for (query_string, fields) in [
        ("k=5", json!({"k": 5})),
        ("k=7&with_payload=true&with_vector=1", json!({"k": 7, "with_payload": true, "with_vector": true})),
        (&*format!("k=4&with_payload=true&filter={encoded}"), json!({"k": 4, "with_payload": true, "filter": filter})),
        ("k=3&ef_search=16&with_payload=false", json!({"k": 3, "ef_search": 16, "with_payload": false})),
    ] {
        for q in &cq {
            let mut body = fields.clone();
            body["vector"] = json!(q);
            let expected = live.json("/collections/c/search", &body);
            assert_eq!(expected.status, 200, "{}", expected.body);
            let path = format!("/collections/c/search?{query_string}");
            for got in [live.raw(&path, q), live.npy(&path, &[CDIM], q)] {
                assert_eq!((got.status, &got.body), (200, &expected.body), "{path}");
                assert_eq!(got.used(), expected.used(), "{path}");
            }
        }
        let mut body = fields.clone();
        body["vectors"] = json!(cq);
        let expected = live.json("/collections/c/search/batch", &body);
        assert_eq!(expected.status, 200, "{}", expected.body);
        let path = format!("/collections/c/search/batch?{query_string}");
        for got in [live.raw(&path, &cq.concat()), live.npy(&path, &[cq.len(), CDIM], &cq.concat())] {
            assert_eq!((got.status, &got.body), (200, &expected.body), "{path}");
        }
    }
    // A media type's parameters are ignored, as JSON's are.
    let got = live.send("/search?k=3", "Application/Octet-Stream; foo=bar", le(&queries[0]), None);
    assert_eq!(got.body, live.json("/search", &json!({"query_vector": queries[0], "k": 3})).body);
}

#[test]
fn binary_refusals_are_located_like_json_ones() {
    let live = Live::start(ServerConfig { max_batch: 4, ..uncached() }, None);
    let q = row(3);

    // The body does not fit the dimension searched: 400 naming the body.
    for (path, values, detail) in [
        ("/search?k=3", &q[..DIM - 1], format!("body has {} bytes: one query of {DIM} float32 values is {} bytes", 4 * (DIM - 1), 4 * DIM)),
        ("/search?k=3", &[q.clone(), q.clone()].concat()[..], format!("body has {} bytes: one query of {DIM}", 8 * DIM)),
        ("/search/batch?k=3", &[q.clone(), q.clone()].concat()[..DIM + 1], format!("body has {} bytes: not a whole number of queries of {DIM} float32 values ({} bytes each)", 4 * (DIM + 1), 4 * DIM)),
        ("/collections/c/search/batch?k=3", &q[..CDIM * 2 + 3], format!("body has {} bytes: not a whole number of queries of {CDIM}", 4 * (2 * CDIM + 3))),
    ] {
        let reply = live.raw(path, values);
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        let got = reply.body["detail"].as_str().unwrap();
        assert!(got.starts_with(&detail), "{got} !~ {detail}");
    }
    // Not a whole number of floats at all.
    let mut odd = le(&q);
    odd.push(0);
    let reply = live.send("/search/batch?k=3", OCTET, odd, None);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().starts_with(&format!("body has {} bytes", 4 * DIM + 1)));
    let reply = live.npy("/search/batch?k=3", &[2, DIM / 2], &q);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["detail"], format!("body is a .npy array of shape (2, {}): its rows must have {DIM} values (the dimension searched)", DIM / 2));

    // An invalid .npy: 422 at ["body"], the detail saying what to send.
    let data = le(&q);
    let f8: Vec<u8> = q.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
    for (body, says) in [
        (npy("<f8", "False", &[DIM], &f8), "dtype is '<f8': send float32, little-endian ('<f4')"),
        (npy(">f4", "False", &[DIM], &data), "dtype is '>f4'"),
        (npy("<i4", "False", &[DIM], &data), "dtype is '<i4'"),
        (npy("<f4", "True", &[2, DIM / 2], &data), "Fortran (column-major) order"),
        (npy("<f4", "False", &[1, 1, DIM], &data), "send a 1-D array (one query) or a 2-D array"),
        (npy("<f4", "False", &[2, DIM], &data), &*format!("the .npy data is {} bytes, but shape (2, {DIM})", 4 * DIM)),
        (data.clone(), "not a .npy array"),
        (npy("<f4", "False", &[DIM], &data)[..40].to_vec(), "header is cut off"),
    ] {
        let reply = live.send("/search/batch?k=3", NPY, body, None);
        assert_eq!(reply.problems(), [(json!(["body"]), "value_error".to_owned())], "{says}");
        let msg = reply.body["detail"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(says), "{msg} !~ {says}");
    }
    let reply = live.npy("/search?k=3", &[2, DIM], &[q.clone(), q.clone()].concat());
    assert_eq!(reply.problems(), [(json!(["body"]), "value_error".to_owned())]);
    assert!(reply.body["detail"][0]["msg"].as_str().unwrap().contains("a search takes one query"));

    // Fields from the query string: refused as the JSON fields are, at ["query", name].
    let json_missing = live.json("/search", &json!({"query_vector": q}));
    let binary_missing = live.raw("/search", &q);
    assert_eq!(binary_missing.problems(), [(json!(["query", "k"]), "missing".to_owned())], "missing k: as JSON, no default");
    assert_eq!(json_missing.body["detail"][0]["msg"], binary_missing.body["detail"][0]["msg"]);
    assert_eq!(json_missing.body["detail"][0]["type"], binary_missing.body["detail"][0]["type"]);
    for (path, expected) in [
        ("/search?k=3&nprobe=8", vec![(json!(["query", "nprobe"]), "extra_forbidden")]),
        ("/search?k=3&query_vector=1&metric=l2", vec![(json!(["query", "metric"]), "extra_forbidden"), (json!(["query", "query_vector"]), "extra_forbidden")]),
        ("/search?k=3&filter=%7B%7D", vec![(json!(["query", "filter"]), "extra_forbidden")]),
        ("/search?k=0", vec![(json!(["query", "k"]), "greater_than")]),
        ("/search?k=101", vec![(json!(["query", "k"]), "less_than_equal")]),
        ("/search?k=ten", vec![(json!(["query", "k"]), "int_parsing")]),
        ("/search?k=2.5", vec![(json!(["query", "k"]), "int_from_float")]),
        ("/search?k=3&k=4", vec![(json!(["query", "k"]), "value_error")]),
        ("/search?k=3&profile=fast", vec![(json!(["query", "profile"]), "enum")]),
        ("/search?k=3&recall_target=1.5", vec![(json!(["query", "recall_target"]), "less_than_equal")]),
        ("/search?k=3&ef_search=0", vec![(json!(["query", "ef_search"]), "greater_than_equal")]),
        ("/search?k=3&profile=balanced&ef_search=64", vec![(json!(["query"]), "value_error")]),
        ("/search/batch?k=3&vectors=1", vec![(json!(["query", "vectors"]), "extra_forbidden")]),
    ] {
        let reply = live.raw(path, &q);
        let expected: Vec<(Value, String)> = expected.into_iter().map(|(l, t)| (l, t.to_owned())).collect();
        assert_eq!(reply.problems(), expected, "{path}");
    }
    // With the body's own problems, all at once: the body's first.
    let mut bad = q.clone();
    bad[2] = f32::NAN;
    bad[9] = f32::INFINITY;
    let reply = live.raw("/search?nprobe=1", &bad);
    assert_eq!(
        reply.problems(),
        [
            (json!(["body", 2]), "finite_number".to_owned()),
            (json!(["body", 9]), "finite_number".to_owned()),
            (json!(["query", "k"]), "missing".to_owned()),
            (json!(["query", "nprobe"]), "extra_forbidden".to_owned()),
        ]
    );
    let reply = live.raw("/search/batch?k=1", &[q.clone(), bad].concat());
    assert_eq!(reply.problems()[0], (json!(["body", 1, 2]), "finite_number".to_owned()));
    // 422 before 400, as with JSON: a bad field and a body of the wrong length.
    assert_eq!(live.raw("/search?k=0", &q[..5]).problems(), [(json!(["query", "k"]), "greater_than".to_owned())]);
    // Empty, too many, none.
    assert_eq!(live.raw("/search?k=3", &[]).problems(), [(json!(["body"]), "missing".to_owned())]);
    assert_eq!(live.raw("/search/batch?k=3", &vec![q.clone(); 5].concat()).problems(), [(json!(["body"]), "too_long".to_owned())]);
    assert_eq!(live.npy("/search/batch?k=3", &[0, DIM], &[]).problems(), [(json!(["body"]), "too_short".to_owned())]);
    // Zero under cosine: the metric's 422, as for JSON.
    assert_eq!(live.raw("/search?k=3", &vec![0.0; DIM]).status, 422);

    // Collections: their own fields, the filter as URL-encoded JSON.
    let cq = cvector(1);
    for (path, expected) in [
        ("/collections/c/search?k=3&with_payload=maybe", vec![(json!(["query", "with_payload"]), "bool_type")]),
        ("/collections/c/search?k=3&filter=%7Bmust", vec![(json!(["query", "filter"]), "json_invalid")]),
        ("/collections/c/search?k=3&filter=%7B%22should%22%3A1%7D", vec![(json!(["query", "filter", "should"]), "list_type")]),
        ("/collections/c/search?k=3&query_vector=1", vec![(json!(["query", "query_vector"]), "extra_forbidden")]),
        ("/collections/c/search/batch", vec![(json!(["query", "k"]), "missing")]),
    ] {
        let reply = live.raw(path, &cq);
        let expected: Vec<(Value, String)> = expected.into_iter().map(|(l, t)| (l, t.to_owned())).collect();
        assert_eq!(reply.problems(), expected, "{path}");
    }
    let reply = live.raw("/collections/nope/search?k=3", &cq);
    assert_eq!(reply.status, 404, "{}", reply.body);
    // Another content type is still refused as a body that is not JSON.
    let reply = live.send("/search?k=3", "text/plain", le(&q), None);
    assert_eq!(reply.problems(), [(json!(["body"]), "model_attributes_type".to_owned())]);
}

fn key(name: &str, role: Role, secret: &str) -> ApiKey {
    ApiKey { name: name.into(), role, sha256: hash_key(secret.as_bytes()), collections: None }
}

#[test]
fn keys_and_rate_limits_apply_to_binary_bodies() {
    const READ: &str = "read-key-0123456789";
    const OTHER: &str = "other-key-0123456789";
    let keys = Keys::required(vec![key("reader", Role::Read, READ), key("other", Role::Read, OTHER)]).unwrap();
    let config = ServerConfig { rate_limits: RateLimits { search: Some(2.0), write: None, batch: Some(1.0) }, max_batch: 4, ..uncached() };
    let live = Live::start(config, Some(keys));
    let q = le(&row(1));
    // No key, an unknown one: 401 before the body is looked at.
    for key in [None, Some("nope-0123456789")] {
        let reply = live.send("/search?k=2", OCTET, q.clone(), key);
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    // The search budget (2 a second) spent by binary searches.
    let statuses: Vec<u16> = (0..4).map(|_| live.send("/search?k=2", OCTET, q.clone(), Some(READ)).status).collect();
    assert_eq!(&statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // A batch spends its rows of the batch budget (a burst of max_batch = 4).
    let four = npy("<f4", "False", &[4, DIM], &[q.clone(), q.clone(), q.clone(), q.clone()].concat());
    assert_eq!(live.send("/search/batch?k=1", NPY, four, Some(OTHER)).status, 200);
    let over = live.send("/search/batch?k=1", OCTET, q.clone(), Some(OTHER));
    assert_eq!(over.status, 429, "{}", over.body);
    assert!(over.body["detail"].as_str().unwrap().contains("batch queries"), "{}", over.body);
    assert!(over.headers.get("retry-after").is_some());
}
