//! Batch jobs over a real socket: a job's answers, in each of its formats
//! (`ids.npy`, `distances.npy`, `results.jsonl`), are exactly what
//! `/collections/{name}/search/batch` answers for the same queries and
//! options, whether it was sent as JSON, `.npy` or raw float32; bad uploads
//! are refused naming the place; the bound on unfinished jobs answers 503
//! and a delete cancels; with API keys a job is seen only by its key and
//! admin keys. (A job resumed after a SIGKILL: `crates/cli/tests/e2e.rs`.)

mod common;

use rand::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vectorwise_index::Metric;
use vectorwise_server::{ApiKey, AppState, JobLimits, Keys, Role, ServerConfig, hash_key};
use vectorwise_store::{CollectionConfig, NewPoint, Store, SyncMode};

const DIM: usize = 16;
/// Sealed points (one indexed segment) and points in the mutable segment.
const SEALED: usize = 3000;
const MUTABLE: usize = 300;

fn vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A server with the collection `docs` (cosine): `SEALED` points in a
/// sealed, calibrated segment and `MUTABLE` more in the mutable one, each
/// with a payload `{"tag": id % 4}`.
struct Live {
    server: common::Server,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
}

impl Live {
    fn start(config: ServerConfig, keys: Option<Keys>) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
        let mut rng = StdRng::seed_from_u64(5);
        let point = |id: u64, rng: &mut StdRng| NewPoint { id: id.into(), vector: vector(rng), payload: Some(json!({"tag": id % 4})) };
        let sealed: Vec<NewPoint> = (0..SEALED as u64).map(|id| point(id, &mut rng)).collect();
        store.import_points("docs", CollectionConfig::new(DIM, Metric::Cosine), sealed).unwrap();
        let c = store.get("docs").unwrap();
        c.upsert((SEALED as u64..(SEALED + MUTABLE) as u64).map(|id| point(id, &mut rng)).collect()).unwrap();
        let state = AppState::new(config);
        state.set_store(store);
        if let Some(keys) = keys {
            state.set_keys(keys);
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Live { server: common::Server::start(state), agent, _dir: dir }
    }

    /// `method path` with a body of `content_type`, and a bearer key.
    fn send(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>, key: Option<&str>) -> (u16, Vec<u8>, ureq::http::HeaderMap) {
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.server.url));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = match body {
            Some((content_type, bytes)) => self.agent.run(request.header("content-type", content_type).body(bytes).unwrap()),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.body_mut().with_config().limit(256 << 20).read_to_vec().unwrap();
        (status, bytes, headers)
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>, key: Option<&str>) -> (u16, Value) {
        let (status, bytes, _) = self.send(method, path, body.map(|b| ("application/json", b.to_string().into_bytes())), key);
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// Waits for job `id` to finish; its last state.
    fn wait(&self, id: &str, key: Option<&str>) -> Value {
        let start = Instant::now();
        loop {
            let (status, job) = self.json("GET", &format!("/collections/docs/jobs/{id}"), None, key);
            assert_eq!(status, 200, "{job}");
            if job["state"] == "done" || job["state"] == "failed" {
                return job;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "job {id} did not finish: {job}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/search/batch`'s answers to `queries` with `options`, as (ids, distances) rows.
    fn batch(&self, queries: &[Vec<f32>], options: &Value) -> Vec<Vec<(i64, f32)>> {
        let mut rows = Vec::new();
        for chunk in queries.chunks(500) {
            let mut body = options.clone();
            body["vectors"] = json!(chunk);
            let (status, answer) = self.json("POST", "/collections/docs/search/batch", Some(&body), None);
            assert_eq!(status, 200, "{answer}");
            for r in answer["results"].as_array().unwrap() {
                rows.push(hits(&r["hits"]));
            }
        }
        rows
    }

    /// A finished job's three downloads, each checked against the others:
    /// the (ids, distances) rows of its answers, the padding left out.
    fn results(&self, job: &Value) -> Vec<Vec<(i64, f32)>> {
        let (n, k) = (job["queries"].as_u64().unwrap() as usize, job["k"].as_u64().unwrap() as usize);
        let get = |which: &str| {
            let (status, bytes, headers) = self.send("GET", job["results"][which].as_str().unwrap(), None, None);
            assert_eq!(status, 200, "{which}: {}", String::from_utf8_lossy(&bytes));
            (bytes, headers)
        };
        let (ids, h) = get("ids");
        assert_eq!(h["content-type"], "application/x-npy");
        let ids: Vec<i64> = npy(&ids, "<i8", n, k).chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
        let (distances, _) = get("distances");
        let distances: Vec<f32> = npy(&distances, "<f4", n, k).chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let rows: Vec<Vec<(i64, f32)>> = (0..n)
            .map(|r| {
                let row: Vec<(i64, f32)> = (0..k).map(|j| (ids[r * k + j], distances[r * k + j])).collect();
                let found = row.iter().take_while(|(id, _)| *id >= 0).count();
                assert!(row[found..].iter().all(|&(id, d)| id == -1 && d == f32::INFINITY), "padding is -1 / inf: {row:?}");
                row[..found].to_vec()
            })
            .collect();
        let (lines, _) = get("jsonl");
        let lines: Vec<Vec<(i64, f32)>> = std::str::from_utf8(&lines)
            .unwrap()
            .lines()
            .map(|line| hits(&serde_json::from_str::<Value>(line).unwrap()["hits"]))
            .collect();
        assert_eq!(lines, rows, "results.jsonl and the .npy files agree");
        rows
    }
}

fn hits(v: &Value) -> Vec<(i64, f32)> {
    v.as_array().unwrap().iter().map(|h| (h["id"].as_i64().unwrap(), h["distance"].as_f64().unwrap() as f32)).collect()
}

/// The data of a `.npy` file of `descr` and shape (n, k), its header checked.
fn npy<'a>(bytes: &'a [u8], descr: &str, n: usize, k: usize) -> &'a [u8] {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains(&format!("'descr': '{descr}'")) && header.contains(&format!("'shape': ({n}, {k})")), "{header}");
    assert_eq!((10 + len) % 64, 0);
    let data = &bytes[10 + len..];
    assert_eq!(data.len(), n * k * if descr == "<i8" { 8 } else { 4 });
    data
}

/// A `.npy` (version 1) of float32 rows.
fn to_npy(rows: &[Vec<f32>]) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows.len(), rows[0].len());
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend(rows.iter().flatten().flat_map(|x| x.to_le_bytes()));
    out
}

fn queries(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| vector(&mut rng)).collect()
}

fn submitted(status: u16, body: &[u8], headers: &ureq::http::HeaderMap) -> Value {
    let job: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(status, 202, "{job}");
    assert_eq!(headers["location"].to_str().unwrap(), format!("/collections/docs/jobs/{}", job["id"].as_str().unwrap()));
    job
}

/// The same answers as `/search/batch`, bit for bit, for a JSON job, a
/// `.npy` job with a filter and a recall target in the query string, and a
/// raw float32 job with a fixed `ef_search`; every format agrees.
#[test]
fn a_job_answers_exactly_as_search_batch_in_every_format() {
    let live = Live::start(ServerConfig { cache_bytes: 0, ..ServerConfig::default() }, None);
    let qs = queries(1200, 11);

    let (status, body, headers) =
        live.send("POST", "/collections/docs/jobs", Some(("application/json", json!({"vectors": qs, "k": 10}).to_string().into_bytes())), None);
    let job = submitted(status, &body, &headers);
    assert_eq!((job["queries"].as_u64(), job["k"].as_u64()), (Some(1200), Some(10)));
    assert_eq!(job["search"], json!({"profile": "balanced"}), "the server's default, resolved at submission");
    let done = live.wait(job["id"].as_str().unwrap(), None);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["done"], 1200);
    let got = live.results(&done);
    assert_eq!(got, live.batch(&qs, &json!({"k": 10})));
    assert!(got.iter().all(|r| r.len() == 10));

    let filter = json!({"must": [{"key": "tag", "match": {"value": 2}}]});
    let query = format!("k=7&recall_target=0.99&filter={}", urlencode(&filter.to_string()));
    let (status, body, headers) = live.send("POST", &format!("/collections/docs/jobs?{query}"), Some(("application/x-npy", to_npy(&qs[..400]))), None);
    let job = submitted(status, &body, &headers);
    assert_eq!((job["search"].clone(), job["filter"].clone()), (json!({"recall_target": 0.99}), filter.clone()));
    let done = live.wait(job["id"].as_str().unwrap(), None);
    let got = live.results(&done);
    assert_eq!(got, live.batch(&qs[..400], &json!({"k": 7, "recall_target": 0.99, "filter": filter})));
    assert!(got.iter().flatten().all(|&(id, _)| id % 4 == 2), "only points the filter lets through");

    let raw: Vec<u8> = qs[..64].iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    let (status, body, headers) = live.send("POST", "/collections/docs/jobs?k=3&ef_search=40", Some(("application/octet-stream", raw)), None);
    let job = submitted(status, &body, &headers);
    let done = live.wait(job["id"].as_str().unwrap(), None);
    assert_eq!(live.results(&done), live.batch(&qs[..64], &json!({"k": 3, "ef_search": 40})));

    // Listed oldest first; a deleted job is gone with its files.
    let (_, list) = live.json("GET", "/collections/docs/jobs", None, None);
    let ids: Vec<&str> = list["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], job["id"].as_str().unwrap());
    let (status, deleted) = live.json("DELETE", &format!("/collections/docs/jobs/{}", ids[0]), None, None);
    assert_eq!((status, deleted), (200, json!({"deleted": true, "state": "done"})));
    assert_eq!(live.json("GET", &format!("/collections/docs/jobs/{}", ids[0]), None, None).0, 404);
    assert_eq!(live.send("GET", &format!("/collections/docs/jobs/{}/ids.npy", ids[0]), None, None).0, 404);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Every refusal names what was wrong, and leaves no job behind.
#[test]
fn bad_jobs_are_refused_naming_the_place() {
    let live = Live::start(ServerConfig::default(), None);
    let qs = queries(3, 1);
    let loc = |v: &Value| v["detail"][0]["loc"].clone();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        let (status, bytes, _) = live.send("POST", path, Some((content_type, body)), None);
        (status, serde_json::from_slice::<Value>(&bytes).unwrap())
    };
    // The collection's dimension.
    let (status, e) = post("/collections/docs/jobs?k=1", "application/x-npy", to_npy(&[vec![0.5; DIM + 1]]));
    assert_eq!(status, 400, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("(1, 17)"), "{e}");
    let (status, e) = post("/collections/docs/jobs", "application/json", json!({"vectors": [vec![0.5; 3]], "k": 1}).to_string().into_bytes());
    assert_eq!((status, e["detail"].as_str().unwrap().contains("vectors[0]")), (400, true), "{e}");
    // Values, fields, the query string.
    let mut bad = qs.clone();
    bad[2][5] = f32::NAN;
    let (status, e) = post("/collections/docs/jobs?k=1", "application/x-npy", to_npy(&bad));
    assert_eq!((status, loc(&e)), (422, json!(["body", 2, 5])), "{e}");
    let (status, e) = post("/collections/docs/jobs?k=0", "application/x-npy", to_npy(&qs));
    assert_eq!((status, loc(&e)), (422, json!(["query", "k"])), "{e}");
    let (status, e) = post("/collections/docs/jobs?k=1&with_payload=true", "application/x-npy", to_npy(&qs));
    assert_eq!((status, loc(&e), e["detail"][0]["type"].clone()), (422, json!(["query", "with_payload"]), json!("extra_forbidden")), "{e}");
    let (status, e) = post("/collections/docs/jobs", "application/json", json!({"vectors": qs, "k": 1, "with_vector": true}).to_string().into_bytes());
    assert_eq!((status, loc(&e)), (422, json!(["body", "with_vector"])), "{e}");
    let (status, e) = post("/collections/docs/jobs?k=1", "application/octet-stream", vec![0u8; DIM * 4 + 2]);
    assert_eq!(status, 400, "{e}");
    let (status, e) = post("/collections/docs/jobs?k=1", "application/octet-stream", Vec::new());
    assert_eq!((status, loc(&e)), (422, json!(["body"])), "{e}");
    let mut f8 = to_npy(&qs);
    let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
    f8[at + 2] = b'8';
    let (status, e) = post("/collections/docs/jobs?k=1", "application/x-npy", f8);
    assert_eq!(status, 422, "{e}");
    assert!(e["detail"][0]["msg"].as_str().unwrap().contains("float32"), "{e}");
    let (status, e) = post("/collections/docs/jobs?k=1&filter=%7B%22must%22%3A5%7D", "application/x-npy", to_npy(&qs));
    assert_eq!((status, loc(&e)), (422, json!(["query", "filter", "must"])), "{e}");
    // A query the metric refuses (the zero vector under cosine) is refused
    // with the job, not met by the worker half-way through it.
    let mut zero = qs.clone();
    zero[1] = vec![0.0; DIM];
    let (status, e) = post("/collections/docs/jobs?k=1", "application/x-npy", to_npy(&zero));
    assert_eq!((status, loc(&e)), (422, json!(["body", 1])), "{e}");
    let (status, e) = post("/collections/docs/jobs", "application/json", json!({"vectors": zero, "k": 1}).to_string().into_bytes());
    assert_eq!((status, loc(&e)), (422, json!(["body", "vectors", 1])), "{e}");
    // A JSON job's fields are all in its body.
    let (status, e) = post("/collections/docs/jobs?k=5", "application/json", json!({"vectors": qs, "k": 1}).to_string().into_bytes());
    assert_eq!((status, loc(&e), e["detail"][0]["type"].clone()), (422, json!(["query", "k"]), json!("extra_forbidden")), "{e}");
    // A second 'descr', hidden in another value, does not decide the dtype.
    let mut two = to_npy(&qs);
    let hidden = b"'descr': '<f4', 'x': \"'descr': '>f4'\",";
    let at = two.windows(15).position(|w| w == &b"'descr': '<f4',"[..]).unwrap();
    two.splice(at..at + 15, hidden.iter().copied());
    let len = u16::from_le_bytes([two[8], two[9]]) as usize + hidden.len() - 15;
    two[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    let (status, e) = post("/collections/docs/jobs?k=1", "application/x-npy", two);
    assert_eq!(status, 422, "{e}");
    assert!(e["detail"][0]["msg"].as_str().unwrap().contains("more than once"), "{e}");
    // No such collection, job or file.
    assert_eq!(post("/collections/nope/jobs?k=1", "application/x-npy", to_npy(&qs)).0, 404);
    assert_eq!(live.json("GET", "/collections/docs/jobs/0123456789abcdef", None, None).0, 404);
    assert_eq!(live.json("GET", "/collections/docs/jobs/..%2F..%2Fmanifest.json", None, None).0, 404);
    let (status, body, headers) = live.send("POST", "/collections/docs/jobs?k=2", Some(("application/x-npy", to_npy(&qs))), None);
    let job = submitted(status, &body, &headers);
    let id = job["id"].as_str().unwrap();
    live.wait(id, None);
    assert_eq!(live.json("GET", &format!("/collections/docs/jobs/{id}/manifest.json"), None, None).0, 404);
    assert_eq!(live.json("GET", &format!("/collections/other/jobs/{id}"), None, None).0, 404, "a job belongs to its collection");
    // Nothing refused was kept: the one accepted job is the only one.
    let (_, list) = live.json("GET", "/collections/docs/jobs", None, None);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
    let left: Vec<String> = std::fs::read_dir(live._dir.path().join(".jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![id.to_owned()], "no folder of a refused upload is left");
}

/// With the bound on unfinished jobs reached, a new one gets 503 with
/// Retry-After; a running job's results are a 409 until it is done; a
/// delete cancels it (the worker goes on with the next) and frees its place.
#[test]
fn the_job_bound_answers_503_and_a_delete_cancels() {
    let config = ServerConfig { jobs: JobLimits { max_unfinished: 1, ..JobLimits::default() }, ..ServerConfig::default() };
    let live = Live::start(config, None);
    // Long enough to still run while the test looks at it: 200k queries.
    let big = queries(200_000, 3);
    let (status, body, headers) = live.send("POST", "/collections/docs/jobs?k=10", Some(("application/x-npy", to_npy(&big))), None);
    let job = submitted(status, &body, &headers);
    let id = job["id"].as_str().unwrap();
    let (status, bytes, headers) = live.send("POST", "/collections/docs/jobs?k=1", Some(("application/x-npy", to_npy(&big[..2]))), None);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(headers["retry-after"], "1");
    let (status, e) = live.json("GET", &format!("/collections/docs/jobs/{id}/results.jsonl"), None, None);
    assert_eq!(status, 409, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("of 200000 queries"), "{e}");
    let (status, deleted) = live.json("DELETE", &format!("/collections/docs/jobs/{id}"), None, None);
    assert_eq!(status, 200);
    assert!(deleted["state"] == "running" || deleted["state"] == "queued", "{deleted}");
    assert_eq!(live.json("GET", &format!("/collections/docs/jobs/{id}"), None, None).0, 404);
    // Its place is free, and the worker runs the next job at once.
    let (status, body, headers) = live.send("POST", "/collections/docs/jobs?k=1", Some(("application/x-npy", to_npy(&big[..2]))), None);
    let next = submitted(status, &body, &headers);
    let done = live.wait(next["id"].as_str().unwrap(), None);
    assert_eq!(done["state"], "done");
    assert!(!live._dir.path().join(".jobs").join(id).exists(), "the cancelled job's files are gone");
    assert!(!live._dir.path().join(".jobs").join(next["id"].as_str().unwrap()).join("queries").exists(), "a done job keeps only its answers");

}

/// With API keys a job is seen, downloaded and deleted only by the key that
/// submitted it and by admin keys: any other key gets the 404 of a job that
/// does not exist, and does not see it listed.
#[test]
fn a_job_is_seen_by_its_key_and_admin_keys_only() {
    let key = |name: &str, role, secret: &str| ApiKey { name: name.into(), role, sha256: hash_key(secret.as_bytes()), collections: None };
    let (alice, bob, admin) = ("alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789");
    let keys = Keys::required(vec![key("alice", Role::Read, alice), key("bob", Role::Write, bob), key("ops", Role::Admin, admin)]).unwrap();
    let live = Live::start(ServerConfig::default(), Some(keys));
    let qs = queries(5, 2);
    let (status, body, headers) = live.send("POST", "/collections/docs/jobs?k=2", Some(("application/x-npy", to_npy(&qs))), Some(alice));
    let job = submitted(status, &body, &headers);
    let id = job["id"].as_str().unwrap();
    live.wait(id, Some(alice));
    let path = format!("/collections/docs/jobs/{id}");
    for (who, secret, sees) in [("alice", alice, true), ("bob", bob, false), ("ops", admin, true)] {
        assert_eq!(live.json("GET", &path, None, Some(secret)).0, if sees { 200 } else { 404 }, "{who}");
        assert_eq!(live.send("GET", &format!("{path}/ids.npy"), None, Some(secret)).0, if sees { 200 } else { 404 }, "{who}");
        let (_, list) = live.json("GET", "/collections/docs/jobs", None, Some(secret));
        assert_eq!(list["jobs"].as_array().unwrap().len(), usize::from(sees), "{who}: {list}");
    }
    assert_eq!(live.json("DELETE", &path, None, Some(bob)).0, 404);
    assert_eq!(live.json("GET", &path, None, None).0, 401);
    assert_eq!(live.json("DELETE", &path, None, Some(admin)).0, 200);
    assert_eq!(live.json("GET", &path, None, Some(alice)).0, 404);
}

/// A collection's jobs go with it: deleted and created again, the name has
/// none of the old jobs.
#[test]
fn a_deleted_collections_jobs_go_with_it() {
    let live = Live::start(ServerConfig::default(), None);
    assert_eq!(live.json("PUT", "/collections/tmp", Some(&json!({"dimension": DIM})), None).0, 201);
    let points: Vec<Value> = queries(20, 4).into_iter().enumerate().map(|(i, v)| json!({"id": i, "vector": v})).collect();
    assert_eq!(live.json("PUT", "/collections/tmp/points", Some(&json!({"points": points})), None).0, 200);
    let (status, body, _) = live.send("POST", "/collections/tmp/jobs?k=3", Some(("application/x-npy", to_npy(&queries(5, 5)))), None);
    assert_eq!(status, 202);
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(live.json("DELETE", "/collections/tmp", None, None).0, 200);
    assert_eq!(live.json("PUT", "/collections/tmp", Some(&json!({"dimension": 3})), None).0, 201);
    assert_eq!(live.json("GET", &format!("/collections/tmp/jobs/{id}"), None, None).0, 404);
    assert_eq!(live.json("GET", "/collections/tmp/jobs", None, None).1, json!({"jobs": []}));
    assert!(!live._dir.path().join(".jobs").join(&id).exists());
}
