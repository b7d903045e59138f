//! The shared cache tier (Redis) over real sockets, against a real
//! `redis-server` each test starts on a free port (no persistence, a temporary
//! directory, killed on drop): a second instance answers from Redis with the
//! first one's very bytes; a collection's answers are shared only between
//! instances whose contents are the same (copies of one data directory that
//! took the same writes), never between copies that took different writes at
//! the same log position; Redis killed mid-run costs nothing but misses
//! (counted), and its answers come back when it does; a garbled value or
//! another key's value planted under a key is a miss, not an error.
//!
//! Without `redis-server` on PATH each test prints "skipped: redis-server not
//! installed" and passes, unless `VECTORWISE_REQUIRE_REDIS=1` (CI), where it
//! fails.

mod common;

use common::{FIXTURE, Reply, Server, query};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vectorwise_index::Index;
use vectorwise_server::{AppState, ServerConfig};
use vectorwise_store::{CollectionConfig, NewPoint, Store, SyncMode};

const CACHE: &str = "x-vectorwise-cache";
const TIER: &str = "x-vectorwise-cache-tier";

/// A `redis-server` of this test: no persistence, loopback only.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// A running server, or `None` (the test is skipped) when `redis-server`
    /// is not installed and `VECTORWISE_REQUIRE_REDIS` is not `1`.
    fn start() -> Option<Redis> {
        let installed = Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !installed {
            if std::env::var("VECTORWISE_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("redis-server is not installed and VECTORWISE_REQUIRE_REDIS=1");
            }
            eprintln!("skipped: redis-server not installed (set VECTORWISE_REQUIRE_REDIS=1 to make this a failure)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Redis { port, dir: tempfile::tempdir().unwrap(), child: None };
        redis.run();
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on its port and waits until it answers PING.
    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.client().get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    fn connection(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// Every key of the shared tier.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("vw:*").query(&mut self.connection()).unwrap();
        keys.sort();
        keys
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(redis: &Redis) -> ServerConfig {
    // A generous timeout: these tests run beside builds on two cores.
    ServerConfig {
        cache_url: Some(redis.url()),
        cache_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    }
}

/// A server of the fixture's index file, opened on its own (as another
/// replica would).
fn index_server(config: ServerConfig) -> Server {
    let index = Arc::new(Index::open(&FIXTURE.path).unwrap());
    Server::start(AppState::with_index(config, index))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_stats(server: &Server) -> Value {
    server.get("/stats").json()["cache"]["redis"].clone()
}

/// Searches (a miss that starts the connection) until connected.
fn connect(server: &Server) {
    wait_until("a connection to Redis", || {
        server.post_json("/search", &json!({"query_vector": query(999), "k": 1}));
        redis_stats(server)["connected"] == true
    });
}

fn writes(server: &Server) -> u64 {
    redis_stats(server)["writes"].as_u64().unwrap()
}

/// Every header but the date and the cache's verdict and tier.
fn headers_but_cache(r: &Reply) -> Vec<(String, String)> {
    r.headers.iter().filter(|(k, _)| *k != CACHE && *k != TIER && *k != "date").map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `path` searched on `server`, and the search's write to Redis waited for
/// when it was a miss.
fn search_and_share(server: &Server, path: &str, body: &Value) -> Reply {
    let before = writes(server);
    let r = server.post_json(path, body);
    assert_eq!(r.status, 200, "{}", r.body);
    if r.header(CACHE) == Some("miss") {
        wait_until("the answer's write to Redis", || writes(server) > before);
    }
    r
}

#[test]
fn a_second_instance_answers_from_redis_with_the_same_bytes() {
    let Some(redis) = Redis::start() else { return };
    let a = index_server(config(&redis));
    let b = index_server(config(&redis));
    connect(&a);
    connect(&b);
    let body = json!({"query_vector": query(1), "k": 7, "profile": "high_accuracy"});
    let first = search_and_share(&a, "/search", &body);
    assert_eq!((first.header(CACHE), first.header(TIER)), (Some("miss"), None));
    let from_redis = b.post_json("/search", &body);
    assert_eq!((from_redis.status, from_redis.header(CACHE), from_redis.header(TIER)), (200, Some("hit"), Some("redis")));
    assert_eq!(from_redis.body, first.body);
    assert_eq!(headers_but_cache(&from_redis), headers_but_cache(&first));
    // The Redis hit filled B's memory.
    let again = b.post_json("/search", &body);
    assert_eq!((again.header(CACHE), again.header(TIER)), (Some("hit"), Some("memory")));
    assert_eq!(again.body, first.body);
    // Another k is another key, in Redis too.
    let other = b.post_json("/search", &json!({"query_vector": query(1), "k": 6, "profile": "high_accuracy"}));
    assert_eq!(other.header(CACHE), Some("miss"));
    // Counted: /stats and /metrics.
    let stats = redis_stats(&b);
    assert_eq!((stats["configured"].as_bool(), stats["hits"].as_u64()), (Some(true), Some(1)), "{stats}");
    assert!(stats["misses"].as_u64().unwrap() >= 1, "{stats}");
    let scrape = b.scrape();
    assert_eq!(scrape.value("vectorwise_cache_redis_hits_total", &[]), Some(1.0));
    assert_eq!(scrape.value("vectorwise_cache_redis_connected", &[]), Some(1.0));
    assert_eq!(scrape.value("vectorwise_cache_redis_errors_total", &[]), Some(0.0));
    // Every value in Redis has a TTL.
    let mut c = redis.connection();
    for key in redis.keys() {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).unwrap();
        assert!(ttl > 0 && ttl <= 600_000, "{key}: {ttl}");
    }
    // Without a URL there is no tier, and /stats says so.
    let plain = index_server(ServerConfig::default());
    assert_eq!(redis_stats(&plain)["configured"], false);
}

/// Copies a directory tree (a replica's data directory made from another's).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn store_server(redis: &Redis, dir: &Path) -> (Server, Arc<Store>) {
    let store = Arc::new(Store::open(dir, SyncMode::Always).unwrap());
    let state = common::state_with(config(redis));
    state.set_store(Arc::clone(&store));
    (Server::start(state), store)
}

fn upsert(server: &Server, id: u64, vector: &[f32]) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = json!({"points": [{"id": id, "vector": vector, "payload": {"id": id}}]});
    let mut r = agent
        .put(format!("{}/collections/c/points", server.url))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.body_mut().read_to_string().unwrap());
}

fn top_id(r: &Reply) -> u64 {
    r.json()["hits"][0]["id"].as_u64().unwrap()
}

/// Two replicas made from one data directory share answers while their
/// contents are the same, and never once they differ: after A and B each
/// take one different write, both are at the same log position of the same
/// collection (same name, same uuid, same write version in their process),
/// so a key of the name, of (uuid, position) or of a process counter would
/// hand B A's answer — the test fails then. The key's digest of the applied
/// writes tells them apart; the same write on both makes them equal again.
#[test]
fn a_collection_is_shared_only_between_replicas_with_the_same_contents() {
    let Some(redis) = Redis::start() else { return };
    const DIM: usize = 4;
    let origin = tempfile::tempdir().unwrap();
    {
        let store = Store::open(origin.path(), SyncMode::Always).unwrap();
        let (c, _) = store.create("c", CollectionConfig::new(DIM, vectorwise_index::Metric::L2)).unwrap();
        let points = (0..50u64).map(|i| NewPoint { id: i.into(), vector: vec![i as f32; DIM], payload: None }).collect();
        c.upsert(points).unwrap();
        drop(c);
        store.close_and_wait();
    }
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_dir(origin.path(), dir_a.path());
    copy_dir(origin.path(), dir_b.path());
    let (a, store_a) = store_server(&redis, dir_a.path());
    let (b, store_b) = store_server(&redis, dir_b.path());
    connect(&a);
    connect(&b);
    let q = |x: f32| json!({"vector": vec![x; DIM], "k": 3, "with_payload": true});
    let path = "/collections/c/search";

    // The same contents: B answers from A's answer in Redis.
    let first = search_and_share(&a, path, &q(10.2));
    let shared = b.post_json(path, &q(10.2));
    assert_eq!((shared.header(CACHE), shared.header(TIER)), (Some("hit"), Some("redis")), "{}", shared.body);
    assert_eq!(shared.body, first.body);

    // One different write each, at the same position.
    upsert(&a, 1000, &[10.2; DIM]);
    upsert(&b, 2000, &[10.2; DIM]);
    let (sa, sb) = (store_a.get("c").unwrap().state_id(), store_b.get("c").unwrap().state_id());
    assert_eq!((sa.uuid, sa.position, sa.version), (sb.uuid, sb.position, sb.version), "the test needs the same position");
    assert_ne!(sa.digest, sb.digest);
    let on_a = search_and_share(&a, path, &q(10.2));
    assert_eq!((on_a.header(CACHE), top_id(&on_a)), (Some("miss"), 1000), "{}", on_a.body);
    let on_b = search_and_share(&b, path, &q(10.2));
    assert_eq!(on_b.header(CACHE), Some("miss"), "B was answered from A's state: {}", on_b.body);
    assert_eq!(top_id(&on_b), 2000, "{}", on_b.body);
    // And the other way round: a query B asks first is A's miss too.
    let b_first = search_and_share(&b, path, &q(30.0));
    let a_after = a.post_json(path, &q(30.0));
    assert_eq!(a_after.header(CACHE), Some("miss"), "A was answered from B's state: {}", a_after.body);
    assert_eq!(top_id(&b_first), 30);
    // The pre-write answer is never served on either (a new state's key).
    assert_ne!(a.post_json(path, &q(10.2)).body, first.body);
    assert_ne!(b.post_json(path, &q(10.2)).body, first.body);

    // Both take the same two writes (the other's point): the same contents
    // again (the digest chains the same records), so shared again.
    upsert(&a, 2000, &[10.2; DIM]);
    upsert(&b, 1000, &[10.2; DIM]);
    // The records differ in order (A: 1000 then 2000; B: 2000 then 1000):
    // still different states.
    assert_ne!(store_a.get("c").unwrap().state_id().digest, store_b.get("c").unwrap().state_id().digest);
    let late = search_and_share(&a, path, &q(5.0));
    assert_eq!(b.post_json(path, &q(5.0)).header(CACHE), Some("miss"), "histories differ: no sharing");
    assert_eq!(top_id(&late), 5);
    drop((a, b));
    store_a.close();
    store_b.close();
}

/// A replica restarted on the same directory keeps its identity: its answers
/// in Redis are hits after the restart (the manifest and the replayed log
/// give the same digest).
#[test]
fn a_restarted_replica_finds_its_answers_in_redis() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, store) = store_server(&redis, dir.path());
    connect(&a);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let create = agent.put(format!("{}/collections/c", a.url)).header("content-type", "application/json");
    assert_eq!(create.send(json!({"dimension": 2, "metric": "l2"}).to_string()).unwrap().status().as_u16(), 201);
    upsert_2d(&a, 1, [1.0, 1.0]);
    upsert_2d(&a, 2, [2.0, 2.0]);
    let body = json!({"vector": [1.9, 1.9], "k": 2});
    let first = search_and_share(&a, "/collections/c/search", &body);
    drop(a);
    store.close_and_wait();
    drop(store);
    let (again, store) = store_server(&redis, dir.path());
    connect(&again);
    let r = again.post_json("/collections/c/search", &body);
    assert_eq!((r.header(CACHE), r.header(TIER)), (Some("hit"), Some("redis")), "{}", r.body);
    assert_eq!(r.body, first.body);
    drop(again);
    store.close_and_wait();
}

fn upsert_2d(server: &Server, id: u64, v: [f32; 2]) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = json!({"points": [{"id": id, "vector": v}]});
    let r = agent.put(format!("{}/collections/c/points", server.url)).header("content-type", "application/json").send(body.to_string());
    assert_eq!(r.unwrap().status().as_u16(), 200);
}

#[test]
fn redis_killed_mid_run_costs_only_misses_and_its_answers_come_back() {
    let Some(mut redis) = Redis::start() else { return };
    let a = index_server(config(&redis));
    let reference = index_server(ServerConfig { cache_bytes: 0, ..ServerConfig::default() });
    connect(&a);
    search_and_share(&a, "/search", &json!({"query_vector": query(1), "k": 5}));
    redis.kill();
    // Searches the memory tier has not seen: 200, the right answers.
    for i in 0..20 {
        let body = json!({"query_vector": query(100 + i), "k": 5});
        let r = a.post_json("/search", &body);
        assert_eq!((r.status, r.header(CACHE)), (200, Some("miss")), "{}", r.body);
        assert_eq!(r.json(), reference.post_json("/search", &body).json());
    }
    let errors = a.scrape().count("vectorwise_cache_redis_errors_total", &[]);
    assert!(errors >= 1.0, "no error counted");
    assert_eq!(redis_stats(&a)["connected"], false);
    // Back on the same port (empty): A reconnects; its answers reach Redis
    // and another instance is answered from there.
    redis.run();
    let b = index_server(config(&redis));
    connect(&b);
    let mut i = 0;
    wait_until("answers shared again after Redis came back", || {
        i += 1;
        let body = json!({"query_vector": query(1000 + i), "k": 5});
        let r = a.post_json("/search", &body);
        assert_eq!(r.status, 200);
        // Give a write that was spawned a moment to land.
        std::thread::sleep(Duration::from_millis(50));
        b.post_json("/search", &body).header(TIER) == Some("redis")
    });
    assert_eq!(redis_stats(&a)["connected"], true);
}

#[test]
fn a_garbled_or_foreign_value_under_a_key_is_a_miss() {
    let Some(redis) = Redis::start() else { return };
    let a = index_server(config(&redis));
    connect(&a);
    let body1 = json!({"query_vector": query(1), "k": 5});
    let body2 = json!({"query_vector": query(2), "k": 5});
    let new_key = |search: &dyn Fn() -> Reply| {
        let before = redis.keys();
        let r = search();
        let after: Vec<String> = redis.keys().into_iter().filter(|k| !before.contains(k)).collect();
        assert_eq!(after.len(), 1, "{after:?}");
        (r, after[0].clone())
    };
    let (first, key1) = new_key(&|| search_and_share(&a, "/search", &body1));
    let (second, key2) = new_key(&|| search_and_share(&a, "/search", &body2));
    let mut c = redis.connection();
    let good: Vec<u8> = redis::cmd("GET").arg(&key1).query(&mut c).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"not a value".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte flipped", flipped),
        ("extended", [good.as_slice(), b"x"].concat()),
    ];
    for (what, value) in variants {
        let _: () = redis::cmd("SET").arg(&key1).arg(value).query(&mut c).unwrap();
        // A fresh instance: nothing in memory.
        let b = index_server(config(&redis));
        connect(&b);
        // Waits for B's own answer to reach Redis (before the next variant).
        let r = search_and_share(&b, "/search", &body1);
        assert_eq!((r.status, r.header(CACHE)), (200, Some("miss")), "{what}: {}", r.body);
        assert_eq!(r.body, first.body, "{what}");
        assert_eq!(redis_stats(&b)["rejected"], 1, "{what}");
    }
    // A whole, intact value of another key under this key (a Redis key
    // collision): a miss, answered right.
    let _: () = redis::cmd("SET").arg(&key2).arg(&good).query(&mut c).unwrap();
    let b = index_server(config(&redis));
    connect(&b);
    let r = b.post_json("/search", &body2);
    assert_eq!((r.status, r.header(CACHE)), (200, Some("miss")), "{}", r.body);
    assert_eq!(r.body, second.body);
    assert_ne!(r.body, first.body);
    assert_eq!(b.scrape().value("vectorwise_cache_redis_rejected_total", &[]), Some(1.0));
}

/// A key over the shared bound (a search with a long filter) is kept in
/// memory only: one client cannot fill Redis with it, and no lookup ever
/// has to read a value too large for its timeout. Counted as skipped.
#[test]
fn answers_over_the_shared_bounds_stay_in_memory() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, store) = store_server(&redis, dir.path());
    store.create("c", vectorwise_store::CollectionConfig::new(2, vectorwise_index::Metric::L2)).unwrap();
    connect(&server);
    upsert(&server, 1, &[1.0, 0.0]);
    // ~100 KB of filter: over the 64 KiB key bound.
    let many: Vec<String> = (0..1000).map(|i| format!("{i:05}-{}", "t".repeat(90))).collect();
    let body = json!({"vector": [1.0, 0.0], "k": 1, "filter": {"must": [{"key": "t", "match": {"any": many}}]}});
    let keys = redis.keys().len();
    let first = server.post_json("/collections/c/search", &body);
    assert_eq!((first.status, first.header(CACHE)), (200, Some("miss")), "{}", first.body);
    wait_until("the skip counted", || redis_stats(&server)["skipped"] == 1);
    assert_eq!(redis.keys().len(), keys, "nothing of it reached Redis");
    let again = server.post_json("/collections/c/search", &body);
    assert_eq!((again.header(CACHE), again.header(TIER)), (Some("hit"), Some("memory")));
    assert_eq!(again.body, first.body);
    // A small search of the same collection is shared as before.
    let before = writes(&server);
    let small = server.post_json("/collections/c/search", &json!({"vector": [1.0, 0.0], "k": 1}));
    assert_eq!(small.header(CACHE), Some("miss"));
    wait_until("the small answer's write", || writes(&server) > before);
}
