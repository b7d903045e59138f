//! End to end: the real `vectorwise` binary on real files and a real socket.
//! generate → build → serve → HTTP → search/bench/health CLIs → SIGTERM.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vectorwise");

/// The binary with no `VECTORWISE_*` variable inherited from the test's environment.
fn command() -> Command {
    without_settings(Command::new(BIN))
}

/// `cmd` with no `VECTORWISE_*` variable inherited from the test's environment.
fn without_settings(mut cmd: Command) -> Command {
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("VECTORWISE_")) {
        cmd.env_remove(key);
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A running `vectorwise serve`, killed on drop if the test did not stop it.
struct Server {
    child: Child,
    url: String,
    logs: mpsc::Receiver<String>,
    /// The collections' directory, when the test gave none.
    _data: Option<tempfile::TempDir>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(command(), args, env)
    }

    /// The server under `ulimit -n nofile` (through `sh`).
    fn start_with_fd_limit(args: &[&str], env: &[(&str, &str)], nofile: u32) -> Server {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""), BIN]);
        Server::spawn(without_settings(sh), args, env)
    }

    fn spawn(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Server {
        // Collections go to a temporary directory unless the test names one.
        let data = (!args.contains(&"--data-dir")).then(|| tempfile::tempdir().unwrap());
        if let Some(d) = &data {
            command.arg("serve").arg("--data-dir").arg(d.path());
        } else {
            command.arg("serve");
        }
        let mut child = command
            .envs(env.iter().copied())
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, logs) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = logs.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("server printed its address");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["fields"]["message"] == "listening" {
                    let addr = v["fields"]["address"].as_str().unwrap().to_string();
                    return Server { child, url: format!("http://{addr}"), logs, _data: data };
                }
            }
        }
    }

    fn wait_healthy(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = get(&format!("{}/", self.url));
            if status == 200 {
                return body;
            }
            assert_eq!(status, 503, "while starting, / answers 503: {body}");
            assert!(Instant::now() < deadline, "not healthy in time: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the logs.
    fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit status after SIGTERM: {status}");
        self.logs.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for line in self.logs.try_iter() {
                eprintln!("server: {line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into()
}

fn get(url: &str) -> (u16, Value) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
}

fn post(url: &str, body: Value) -> (u16, Value) {
    let mut r = agent().post(url).send_json(body).unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
}

fn generate_and_build(dir: &Path) -> (String, String) {
    let vectors = dir.join("v.npy").display().to_string();
    let index = dir.join("i.vwi").display().to_string();
    let out = run_ok(&["generate", "--n", "3000", "--dim", "32", "--seed", "5", "--out", &vectors]);
    assert!(out.contains("Generating 3000 vectors of dimension 32"), "{out}");
    let out = run_ok(&["build", "--vectors", &vectors, "--out", &index, "--m", "8", "--ef-construction", "64"]);
    assert!(out.contains("Total vectors: 3000") && out.contains("Dimension: 32"), "{out}");
    (vectors, index)
}

#[test]
fn generate_build_serve_query_bench_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (vectors, index) = generate_and_build(dir.path());

    // Settings by environment variable, as the demo's users set them.
    let server = Server::start_with_env(
        &[],
        &[("VECTORWISE_INDEX_PATH", &index), ("VECTORWISE_EF_SEARCH", "128"), ("VECTORWISE_CACHE_BYTES", "1000000")],
    );
    let health = server.wait_healthy(Duration::from_secs(20));
    assert_eq!(health, json!({"service": "VectorWise", "status": "healthy", "vectors_indexed": 3000}));

    let (status, stats) = get(&format!("{}/stats", server.url));
    assert_eq!(status, 200);
    assert_eq!((stats["total_vectors"].as_u64(), stats["dimension"].as_u64()), (Some(3000), Some(32)));
    assert_eq!((stats["hnsw_m"].as_u64(), stats["hnsw_efSearch"].as_u64(), stats["hnsw_efConstruction"].as_u64()), (Some(8), Some(128), Some(64)));
    assert_eq!(stats["cache"]["max_bytes"], 1_000_000);

    let query: Vec<f32> = (0..32).map(|i| (i as f32).sin()).collect();
    let (status, body) = post(&format!("{}/search", server.url), json!({"query_vector": query, "k": 10}));
    assert_eq!(status, 200, "{body}");
    let d: Vec<f64> = body["distances"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!((body["indices"].as_array().unwrap().len(), d.len()), (10, 10));
    assert!(d.windows(2).all(|w| w[0] <= w[1]));

    let (status, body) = post(&format!("{}/search", server.url), json!({"query_vector": [1.0, 2.0], "k": 10}));
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("32"), "{body}");
    let (status, body) = post(&format!("{}/search", server.url), json!({"query_vector": query, "k": 0}));
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "k"]));

    // The CLI's own search agrees with the server (same ef, same normalisation).
    let qfile = dir.path().join("q.npy");
    vectorwise_index::Matrix::new(32, query.clone()).unwrap().save_npy(&qfile).unwrap();
    let cli = run_ok(&["search", "--index", &index, "--query-file", qfile.to_str().unwrap(), "--k", "10", "--ef-search", "128"]);
    let cli: Value = serde_json::from_str(cli.trim()).unwrap();
    let (_, http) = post(&format!("{}/search", server.url), json!({"query_vector": query, "k": 10}));
    assert_eq!(cli["indices"], http["indices"]);

    let results = dir.path().join("bench.json");
    let bench = run(&[
        "bench", "--url", &server.url, "--vectors", &vectors, "--queries", "50", "--batch", "16", "--out", results.to_str().unwrap(),
    ]);
    let (out, err) = (String::from_utf8_lossy(&bench.stdout).into_owned(), String::from_utf8_lossy(&bench.stderr).into_owned());
    assert!(bench.status.success(), "{err}");
    assert!(!err.contains("hot-query cache"), "the first bench timed searches, not the cache: {err}");
    assert!(out.contains("demo") && out.contains("random") && out.contains("demo b16"), "{out}");
    let results: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    let rows = results["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // The same queries in batches of 16 (the last of 2) find the same neighbours.
    for (single, batch) in [(&rows[0], &rows[2]), (&rows[1], &rows[3])] {
        assert_eq!((single["method"].as_str(), batch["method"].as_str()), (Some("http"), Some("http-batch")));
        assert_eq!(batch["query_set"], format!("{} b16", single["query_set"].as_str().unwrap()));
        assert_eq!(single["recall_mean"], batch["recall_mean"]);
    }
    for r in rows {
        assert_eq!(r["queries"], 50);
        let recall = r["recall_mean"].as_f64().unwrap();
        assert!(recall > 0.8 && recall <= 1.0, "recall through HTTP at ef 128 on 3000 points: {r}");
        assert!(r["latency_ms_p99"].as_f64().unwrap() >= r["latency_ms_median"].as_f64().unwrap());
    }

    // The same bench again: its queries are answered from the cache, and it says so.
    let again = run(&["bench", "--url", &server.url, "--vectors", &vectors, "--queries", "50"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && err.contains("50 of 50 answers came from the server's hot-query cache"), "{err}");
    let (_, stats) = get(&format!("{}/stats", server.url));
    assert!(stats["cache"]["hits"].as_u64().unwrap() >= 101, "{}", stats["cache"]);

    let out = run_ok(&["health", "--url", &server.url]);
    assert!(out.contains("healthy"));

    let logs = server.terminate();
    let request_lines = logs.iter().filter(|l| l.contains("\"path\":\"/search\"")).count();
    assert!(request_lines >= 100, "one log line per request: found {request_lines}");
    assert!(logs.iter().any(|l| l.contains("shut down")), "clean shutdown logged");
}

#[test]
fn in_process_bench_sweeps_ef_and_recall_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let results = dir.path().join("sweep.json");
    run_ok(&["bench", "--index", &index, "--queries", "100", "--ef", "10,200", "--out", results.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "two ef values and one exact row per query set");
    for set in ["demo", "random"] {
        let exact = rows.iter().find(|r| r["query_set"] == set && r["method"] == "exact").unwrap();
        assert_eq!(exact["recall_mean"], 1.0);
        let r: Vec<f64> = rows
            .iter()
            .filter(|r| r["query_set"] == set && r["method"] == "hnsw")
            .map(|r| r["recall_mean"].as_f64().unwrap())
            .collect();
        assert!(r[1] > 0.95 && r[1] >= r[0], "{set}: recall at ef 10 {} vs ef 200 {}", r[0], r[1]);
    }
}

#[test]
fn first_run_builds_in_the_background_and_answers_503_until_ready() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("auto.npy");
    let index = dir.path().join("auto.vwi");
    let server = Server::start(&[
        "--index", index.to_str().unwrap(),
        "--vectors", vectors.to_str().unwrap(),
        "--auto-build", "--dataset-n", "20000", "--dataset-dim", "64", "--m", "8", "--ef-construction", "100",
    ]);
    let (status, body) = get(&format!("{}/", server.url));
    if status == 503 {
        assert_eq!(body["status"], "loading");
        assert_eq!(body["vectors_indexed"], 0);
        let (status, _) = post(&format!("{}/search", server.url), json!({"query_vector": vec![0.1; 64], "k": 1}));
        assert_eq!(status, 503);
    }
    let health = server.wait_healthy(Duration::from_secs(120));
    assert_eq!(health["vectors_indexed"], 20000);
    assert!(vectors.exists() && index.exists());
    server.terminate();
}

#[test]
fn sigterm_during_a_first_run_build_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("big.npy");
    let index = dir.path().join("big.vwi");
    // 200k x 128 at efConstruction 200 takes minutes to build on 2 cores.
    let server = Server::start(&[
        "--index", index.to_str().unwrap(),
        "--vectors", vectors.to_str().unwrap(),
        "--auto-build", "--dataset-n", "200000",
    ]);
    let (status, body) = get(&format!("{}/", server.url));
    assert_eq!((status, &body["status"], &body["vectors_indexed"]), (503, &json!("loading"), &json!(0)));
    let (status, body) = post(&format!("{}/search", server.url), json!({"query_vector": vec![0.1; 128], "k": 1}));
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].is_string());
    assert_eq!(get(&format!("{}/stats", server.url)).0, 503);
    let stopped = Instant::now();
    server.terminate();
    assert!(stopped.elapsed() < Duration::from_secs(5), "stop took {:?}", stopped.elapsed());
    assert!(!index.exists(), "no half-built index left behind");
}

#[test]
fn bad_index_files_stop_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.vwi");
    let out = run(&["serve", "--index", missing.to_str().unwrap(), "--port", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));

    let corrupt = dir.path().join("corrupt.vwi");
    std::fs::write(&corrupt, b"VWINDEX\0 but not really an index").unwrap();
    let out = run(&["serve", "--index", corrupt.to_str().unwrap(), "--port", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt.vwi") && err.contains("truncated"), "{err}");

    let out = run(&["build", "--vectors", corrupt.to_str().unwrap(), "--out", dir.path().join("x.vwi").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a NumPy"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A partitioned scan built from the CLI and served: `/stats` names it, and
/// the answers are input rows (the build reorders points by list) with the
/// exact distances of those rows, exactly the brute-force ones at recall_target 1.
#[test]
fn a_partitioned_index_serves_input_rows() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("c.npy").display().to_string();
    let index = dir.path().join("c.vwi").display().to_string();
    run_ok(&["generate", "--kind", "clustered", "--clusters", "40", "--n", "4000", "--dim", "32", "--seed", "9", "--out", &vectors]);
    let out = run_ok(&["build", "--vectors", &vectors, "--out", &index, "--method", "scan", "--scan-lists", "24"]);
    assert!(out.contains("24 lists"), "{out}");
    let base = vectorwise_index::Matrix::load(Path::new(&vectors)).unwrap();
    let server = Server::start_with_env(&[], &[("VECTORWISE_INDEX_PATH", &index)]);
    server.wait_healthy(Duration::from_secs(20));
    let (_, stats) = get(&format!("{}/stats", server.url));
    assert_eq!((stats["index_type"].as_str(), stats["format_version"].as_u64()), (Some("IVFQuantizedScan"), Some(5)), "{stats}");
    assert_eq!(stats["metric"], "l2", "{stats}");
    let dist = |q: &[f32], row: usize| base.row(row).iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
    for i in (0..4000).step_by(211) {
        let q: Vec<f32> = base.row(i).iter().enumerate().map(|(j, x)| x + 0.05 * ((i + j) as f32).sin()).collect();
        let (status, exact) = post(&format!("{}/search", server.url), json!({"query_vector": q, "k": 5, "recall_target": 1.0}));
        assert_eq!(status, 200, "{exact}");
        let (status, approx) = post(&format!("{}/search", server.url), json!({"query_vector": q, "k": 5}));
        assert_eq!(status, 200, "{approx}");
        let mut truth: Vec<(f32, usize)> = (0..base.len()).map(|r| (dist(&q, r), r)).collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0));
        let want: Vec<u64> = truth[..5].iter().map(|t| t.1 as u64).collect();
        let got: Vec<u64> = exact["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(got, want, "query {i}");
        for (id, d) in approx["indices"].as_array().unwrap().iter().zip(approx["distances"].as_array().unwrap()) {
            let (id, d) = (id.as_u64().unwrap() as usize, d.as_f64().unwrap() as f32);
            assert!((dist(&q, id) - d).abs() <= 1e-4, "query {i}: row {id} at {d}, exactly {}", dist(&q, id));
        }
    }
}

/// `--scan-dsub auto` (the default) gives 256-dimensional vectors 6
/// dimensions per sub-quantiser and narrower ones 4; a number is taken as
/// given; 0, numbers above 64 and words are refused before any work, naming
/// the flag and the range.
#[test]
fn scan_dsub_defaults_by_width_and_refuses_nonsense() {
    let dir = tempfile::tempdir().unwrap();
    for (dim, want) in [(256, 6), (64, 4)] {
        let vectors = dir.path().join(format!("v{dim}.npy")).display().to_string();
        let index = dir.path().join(format!("v{dim}.vwi")).display().to_string();
        run_ok(&["generate", "--n", "600", "--dim", &dim.to_string(), "--seed", "3", "--out", &vectors]);
        let out = run_ok(&["build", "--vectors", &vectors, "--out", &index, "--method", "scan", "--no-calibrate"]);
        assert!(out.contains(&format!("dsub={want}")), "{dim}-d: {out}");
        let out = run_ok(&["build", "--vectors", &vectors, "--out", &index, "--method", "scan", "--scan-dsub", "2", "--no-calibrate"]);
        assert!(out.contains("dsub=2"), "{dim}-d, --scan-dsub 2: {out}");
    }
    for bad in ["0", "65", "six"] {
        let out = run(&["build", "--vectors", "unused.npy", "--out", "unused.vwi", "--scan-dsub", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--scan-dsub") && err.contains("from 1 to 64"), "{bad}: {err}");
    }
}

/// `ids` as a NumPy `<u8` (uint64) 1-D file, as `np.save` writes it.
fn write_ids_npy(path: &Path, ids: &[u64]) {
    let dict = format!("{{'descr': '<u8', 'fortran_order': False, 'shape': ({},), }}", ids.len());
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let padded = (10 + dict.len() + 1).next_multiple_of(64) - 10;
    bytes.extend_from_slice(&(padded as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(10 + padded - 1, b' ');
    bytes.push(b'\n');
    bytes.extend(ids.iter().flat_map(|id| id.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// `build --metric ip --ids ids.npy` from the CLI, served: `/stats` names the
/// metric and the user's ids, a search answers those ids with the negated
/// inner products of their rows (checked here in f64), nearest first; a
/// duplicate id is refused naming it; unit-length data built as `l2` gets a
/// warning that cosine would do.
#[test]
fn user_ids_and_inner_product_round_trip_through_build_search_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("v.npy");
    let ids_path = dir.path().join("ids.npy");
    let index = dir.path().join("v.vwi").display().to_string();
    // Clustered rows scaled by 0.5..2.5: not unit length.
    let raw = vectorwise_index::dataset::clustered(3000, 16, 20, 5, 6);
    let scaled: Vec<f32> = raw.rows().enumerate().flat_map(|(i, r)| r.iter().map(move |x| x * (0.5 + (i % 5) as f32 * 0.5))).collect();
    let base = vectorwise_index::Matrix::new(16, scaled).unwrap();
    base.save_npy(&vectors).unwrap();
    let ids: Vec<u64> = (0..3000u64).map(|r| 10_000_000_000 + r * 3).collect();
    write_ids_npy(&ids_path, &ids);
    let v = vectors.display().to_string();
    let i = ids_path.display().to_string();
    let out = run_ok(&["build", "--vectors", &v, "--ids", &i, "--out", &index, "--metric", "ip"]);
    assert!(out.contains("metric ip"), "{out}");

    let server = Server::start_with_env(&[], &[("VECTORWISE_INDEX_PATH", &index)]);
    server.wait_healthy(Duration::from_secs(20));
    let (_, stats) = get(&format!("{}/stats", server.url));
    assert_eq!((stats["metric"].as_str(), stats["ids"].as_str(), stats["format_version"].as_u64()), (Some("ip"), Some("user"), Some(5)), "{stats}");
    let ip = |q: &[f32], row: usize| -base.row(row).iter().zip(q).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
    for probe in [7usize, 1234, 2999] {
        let q: Vec<f32> = base.row(probe).iter().map(|x| x * 1.5).collect();
        let (status, reply) = post(&format!("{}/search", server.url), json!({"query_vector": q, "k": 5, "recall_target": 1.0}));
        assert_eq!(status, 200, "{reply}");
        let mut truth: Vec<(f64, usize)> = (0..base.len()).map(|r| (ip(&q, r), r)).collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0));
        let want: Vec<u64> = truth[..5].iter().map(|t| ids[t.1]).collect();
        let got: Vec<u64> = reply["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(got, want, "query {probe}");
        for (d, t) in reply["distances"].as_array().unwrap().iter().zip(&truth) {
            assert!((d.as_f64().unwrap() - t.0).abs() <= 1e-4 * t.0.abs().max(1.0), "{d} vs {}", t.0);
        }
    }
    // A zero query is a valid inner-product query; one whose distances
    // would overflow f32 is refused, located.
    let (status, reply) = post(&format!("{}/search", server.url), json!({"query_vector": vec![0.0; 16], "k": 3}));
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post(&format!("{}/search", server.url), json!({"query_vector": vec![1e20; 16], "k": 3}));
    assert_eq!((status, &reply["detail"][0]["loc"]), (422, &json!(["body", "query_vector"])), "{reply}");
    // The file's metric is the one served: --metric only applies to a build.
    let out = run(&["serve", "--index", &index, "--metric", "cosine", "--port", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is ip; --metric cosine applies only"), "{err}");

    let mut dup = ids.clone();
    dup[2000] = dup[10];
    write_ids_npy(&ids_path, &dup);
    let out = run(&["build", "--vectors", &v, "--ids", &i, "--out", &index]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("duplicate id {}", ids[10])) && err.contains("rows 10 and 2000"), "{err}");

    let unit = dir.path().join("u.npy").display().to_string();
    run_ok(&["generate", "--n", "500", "--dim", "8", "--out", &unit]);
    let out = run_ok(&["build", "--vectors", &unit, "--out", &index, "--no-calibrate"]);
    assert!(out.contains("warning: every vector has norm 1"), "{out}");
}

/// A raw HTTP/1.1 request on a fresh connection: the response's status, or
/// `None` when the server closed the connection without one.
fn raw_request(url: &str, request: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn search_request(dim: usize, queries: usize) -> String {
    let body = json!({"query_vectors": vec![vec![0.1f32; dim]; queries], "k": 10}).to_string();
    format!("POST /search/batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

/// Under a 128-descriptor limit (so at most 64 connections), 300 sockets
/// that connect and send nothing or half a request head, opened again as
/// the server closes them, do not keep a normal client out: each of its
/// requests, on a new connection, is answered (p99 under 100 ms), because
/// a new connection evicts the longest-idle one. The log does not fill with
/// accept errors.
#[test]
fn slow_and_idle_connections_do_not_deny_service() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let server = Server::start_with_fd_limit(&["--index", &index], &[], 128);
    server.wait_healthy(Duration::from_secs(20));
    let addr = server.url.trim_start_matches("http://").to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..2)
        .map(|t| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    held.retain(|s: &std::net::TcpStream| s.peek(&mut [0u8; 1]).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock));
                    while held.len() < 150 {
                        let Ok(mut s) = std::net::TcpStream::connect(&addr) else { break };
                        s.set_nonblocking(true).unwrap();
                        if t == 1 {
                            let _ = s.write_all(b"POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n");
                        }
                        held.push(s);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut ms = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        assert_eq!(raw_request(&server.url, &search_request(32, 1)), Some(200));
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attackers.into_iter().for_each(|t| t.join().unwrap());
    ms.sort_by(f64::total_cmp);
    let p99 = ms[98];
    eprintln!("normal client under a slow/idle flood: p50 {:.2} ms, p99 {p99:.2} ms", ms[49]);
    assert!(p99 < 100.0, "p99 {p99:.1} ms");
    let logs = server.terminate();
    let accept_errors = logs.iter().filter(|l| l.contains("accept failed")).count();
    assert!(accept_errors <= 10, "{accept_errors} accept-error lines");
}

/// SIGTERM with 64 requests sent and a client stuck mid-headers: every sent
/// request is answered, and the process exits by --shutdown-timeout although
/// the stuck client never finishes (its header timeout is longer).
#[test]
fn sigterm_answers_every_request_sent_and_exits_by_the_deadline() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let server = Server::start(&["--index", &index, "--shutdown-timeout", "3", "--header-timeout", "60", "--max-pending", "100000"]);
    server.wait_healthy(Duration::from_secs(20));
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    stuck.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").unwrap();
    let sent = std::sync::Arc::new(std::sync::Barrier::new(65));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (addr, sent) = (addr.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(search_request(32, 64).as_bytes()).unwrap();
                sent.wait();
                let mut head = [0u8; 12];
                s.read_exact(&mut head).map(|()| String::from_utf8_lossy(&head[9..12]).into_owned())
            })
        })
        .collect();
    sent.wait();
    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap().expect("a response")).collect();
    assert!(answers.iter().all(|a| a == "200"), "{answers:?}");
    let mut server = server;
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(signalled.elapsed() < Duration::from_secs(8), "still running 8 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let waited = signalled.elapsed();
    assert!(waited >= Duration::from_secs(2), "the stuck client was given its deadline: {waited:?}");
    drop(stuck);
}

/// A connection that sends nothing is closed after --header-timeout; a
/// declared body over the limit is a 413 at once; a client that half-closes
/// after its request still gets the response.
#[test]
fn silent_connections_time_out_and_half_closed_clients_are_answered() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let server = Server::start(&["--index", &index, "--header-timeout", "1"]);
    server.wait_healthy(Duration::from_secs(20));
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut silent = std::net::TcpStream::connect(&addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let n = silent.read(&mut [0u8; 64]).unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    assert!(start.elapsed() < Duration::from_secs(3), "closed after {:?}", start.elapsed());
    // A declared 20 GB body is refused at once, before any of it is waited for.
    let start = Instant::now();
    let huge = "POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20000000000\r\n\r\n{\"q";
    assert_eq!(raw_request(&server.url, huge), Some(413));
    assert!(start.elapsed() < Duration::from_secs(1), "413 after {:?}", start.elapsed());
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(search_request(32, 1).as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
}

/// The temporaries a killed writer leaves (`.NAME.tmp-PID`) are removed by
/// the next build of that file and by `serve` at start, once their process is
/// gone; one whose process still runs, and other files, are left alone.
#[test]
fn a_killed_writers_temporaries_are_removed_by_the_next_build_or_start() {
    let dir = tempfile::tempdir().unwrap();
    let (vectors, index) = generate_and_build(dir.path());
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let dead = dir.path().join(format!(".i.vwi.tmp-{dead_pid}"));
    let live = dir.path().join(format!(".i.vwi.tmp-{}", std::process::id()));
    let other = dir.path().join(format!(".other.vwi.tmp-{dead_pid}"));
    for f in [&dead, &live, &other] {
        std::fs::write(f, vec![0u8; 4096]).unwrap();
    }
    run_ok(&["build", "--vectors", &vectors, "--out", &index, "--no-calibrate", "--method", "scan"]);
    assert!(!dead.exists(), "a dead writer's temporary is removed by the next build");
    assert!(live.exists() && other.exists(), "a live writer's, and another file's, are kept");
    std::fs::write(&dead, b"again").unwrap();
    let server = Server::start(&["--index", &index]);
    server.wait_healthy(Duration::from_secs(20));
    assert!(!dead.exists(), "and by serve at start");
    assert!(live.exists());
}

/// Closed-loop clients for `seconds`: each posts `body` to `path` and waits
/// for the answer; returns (answers by status, requests per second).
fn closed_loop(url: &str, path: &str, body: &Value, clients: usize, seconds: f64) -> (std::collections::BTreeMap<u16, usize>, f64) {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (url, body) = (format!("{url}{path}"), body.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut statuses = Vec::new();
                while Instant::now() < end {
                    statuses.push(agent.post(&url).send_json(&body).unwrap().status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for s in threads.into_iter().flat_map(|t| t.join().unwrap()) {
        *counts.entry(s).or_insert(0) += 1;
    }
    let total: usize = counts.values().sum();
    (counts, total as f64 / seconds)
}

/// Default settings: 8 clients sending batches of 100 are all admitted (no
/// 503) and get at least the query throughput of 8 clients sending single
/// searches; with the bound exhausted, a search is refused with 503 in
/// under a millisecond of server time (the access log's latency).
#[test]
fn batches_are_admitted_beside_searches_and_overload_is_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    // The cache off: these repeat one query, and the bound is about searches that run.
    let server = Server::start(&["--index", &index, "--cache-bytes", "0"]);
    server.wait_healthy(Duration::from_secs(20));
    let q: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
    let (batches, batch_rps) =
        closed_loop(&server.url, "/search/batch", &json!({"query_vectors": vec![q.clone(); 100], "k": 10}), 8, 2.0);
    let (singles, single_rps) = closed_loop(&server.url, "/search", &json!({"query_vector": q, "k": 10}), 8, 2.0);
    eprintln!("batches of 100: {batches:?}, {:.0} queries/s; singles: {singles:?}, {single_rps:.0} queries/s", batch_rps * 100.0);
    assert_eq!(batches.keys().collect::<Vec<_>>(), [&200], "{batches:?}");
    assert_eq!(singles.keys().collect::<Vec<_>>(), [&200], "{singles:?}");
    assert!(batch_rps * 100.0 >= single_rps, "batch {:.0} q/s < single {single_rps:.0} q/s", batch_rps * 100.0);
    drop(server);

    // A bound of 1000 queries, held by exact batches of 1000; singles beside them are refused.
    let server = Server::start(&["--index", &index, "--max-pending", "1000", "--cache-bytes", "0"]);
    server.wait_healthy(Duration::from_secs(20));
    let heavy = json!({"query_vectors": vec![q.clone(); 1000], "k": 100, "recall_target": 1.0});
    let busy = {
        let url = server.url.clone();
        std::thread::spawn(move || closed_loop(&url, "/search/batch", &heavy, 2, 2.0))
    };
    std::thread::sleep(Duration::from_millis(200));
    let (refused, _) = closed_loop(&server.url, "/search", &json!({"query_vector": q, "k": 10}), 2, 1.0);
    busy.join().unwrap();
    assert!(refused.get(&503).copied().unwrap_or(0) >= 10, "{refused:?}");
    let logs = server.terminate();
    let mut ms: Vec<f64> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["status"] == 503)
        .filter_map(|v| v["fields"]["latency_ms"].as_f64())
        .collect();
    ms.sort_by(f64::total_cmp);
    let p50 = ms[ms.len() / 2];
    eprintln!("503s: {} logged, server-side p50 {p50:.3} ms, max {:.3} ms", ms.len(), ms[ms.len() - 1]);
    assert!(p50 < 1.0, "p50 {p50} ms");
}

fn put(url: &str, body: Value) -> (u16, Value) {
    let mut r = agent().put(url).send_json(body).unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
}

fn delete(url: &str) -> (u16, Value) {
    let mut r = agent().delete(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
}

/// A point of the collection tests: id, version, vector from both.
fn point_vector(id: u64, version: u64, dim: usize) -> Vec<f32> {
    (0..dim).map(|j| (((id * 31 + version * 17 + j as u64 * 7) % 101) as f32 / 50.0) - 1.0).collect()
}

#[test]
fn collections_are_created_written_searched_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let data = dir.path().join("data").display().to_string();
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    let c = format!("{}/collections/docs", server.url);
    assert_eq!(put(&c, json!({"dimension": 8, "metric": "l2", "seal_points": 100})).0, 201);
    assert_eq!(put(&c, json!({"dimension": 8, "metric": "l2", "seal_points": 100})).0, 200);
    let (status, body) = put(&c, json!({"dimension": 9, "metric": "l2"}));
    assert_eq!(status, 409, "{body}");
    let (status, body) = put(&c, json!({"dimension": 8, "metric": "l2", "shards": 2}));
    assert_eq!((status, body["detail"][0]["type"].as_str()), (422, Some("extra_forbidden")), "{body}");
    assert_eq!(put(&format!("{}/collections/bad%20name", server.url), json!({"dimension": 8})).0, 422);

    let points: Vec<Value> =
        (0..250u64).map(|id| json!({"id": id, "vector": point_vector(id, 0, 8), "payload": {"v": 0, "tag": id % 3}})).collect();
    let (status, body) = put(&format!("{c}/points"), json!({"points": points}));
    assert_eq!((status, body["upserted"].as_u64()), (200, Some(250)), "{body}");
    // A bad point refuses the batch and is named.
    let bad = json!({"points": [{"id": 1000, "vector": point_vector(1000, 0, 8)}, {"id": 1001, "vector": [1.0, 2.0]}]});
    let (status, body) = put(&format!("{c}/points"), bad);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "points", 1, "vector"]), "{body}");
    assert_eq!(get(&format!("{c}/points/1000")).0, 404, "nothing of a refused batch is written");
    // Read your writes, with payloads.
    let (status, body) = post(&format!("{c}/search"), json!({"vector": point_vector(42, 0, 8), "k": 3, "with_payload": true}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["id"], 42);
    assert_eq!(body["hits"][0]["distance"], 0.0);
    assert_eq!(body["hits"][0]["payload"], json!({"v": 0, "tag": 0}));
    let (status, body) = post(&format!("{c}/points/delete"), json!({"ids": [42, 43, 99999]}));
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(2)), "{body}");
    let (_, body) = post(&format!("{c}/search"), json!({"vector": point_vector(42, 0, 8), "k": 3}));
    assert_ne!(body["hits"][0]["id"], 42, "a deleted point is never returned");
    let (status, body) = get(&format!("{c}/points/7"));
    assert_eq!((status, body["payload"]["tag"].as_u64()), (200, Some(1)), "{body}");
    let (_, body) = post(&format!("{c}/search/batch"), json!({"vectors": [point_vector(5, 0, 8), point_vector(6, 0, 8)], "k": 1}));
    assert_eq!((body["results"][0]["hits"][0]["id"].as_u64(), body["results"][1]["hits"][0]["id"].as_u64()), (Some(5), Some(6)));
    let (_, body) = get(&format!("{}/collections", server.url));
    assert_eq!(body["collections"], json!([{"name": "default", "points": 3000}, {"name": "docs", "points": 248}]));
    assert_eq!(get(&format!("{}/collections/nope", server.url)).0, 404);
    // The demo's routes still serve the index.
    assert_eq!(get(&format!("{}/stats", server.url)).1["total_vectors"], 3000);
    server.terminate();

    // Restart: the points are there (sealed or replayed from the log).
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    let c = format!("{}/collections/docs", server.url);
    let (_, body) = get(&c);
    assert_eq!(body["points"], 248, "{body}");
    let (_, body) = post(&format!("{c}/points/get"), json!({"ids": [7, 42, 249], "with_vector": true}));
    let ids: Vec<u64> = body["points"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![7, 249]);
    let v: Vec<f32> = serde_json::from_value(body["points"][0]["vector"].clone()).unwrap();
    assert_eq!(v, point_vector(7, 0, 8));
    assert_eq!(delete(&c).0, 200);
    assert_eq!(get(&c).0, 404);
    server.terminate();
}

/// `vectorwise import` loads vectors, ids and payloads as a collection in
/// bulk; a server then serves it; the data directory admits one process.
#[test]
fn import_loads_a_collection_that_serve_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (vectors, index) = generate_and_build(dir.path());
    let ids_path = dir.path().join("ids.npy");
    let ids: Vec<u64> = (0..3000u64).map(|i| 1_000_000 + 7 * i).collect();
    write_ids_npy(&ids_path, &ids);
    let payloads = dir.path().join("p.jsonl");
    let lines: Vec<String> = (0..3000).map(|i| if i % 2 == 0 { format!("{{\"row\": {i}}}") } else { "null".into() }).collect();
    std::fs::write(&payloads, lines.join("\n") + "\n").unwrap();
    let data = dir.path().join("data").display().to_string();
    let out = run_ok(&[
        "import", "--data-dir", &data, "--collection", "imp", "--vectors", &vectors, "--ids", ids_path.to_str().unwrap(),
        "--payloads", payloads.to_str().unwrap(), "--metric", "l2",
    ]);
    assert!(out.contains("Imported 3000 points of dimension 32"), "{out}");
    // A bad payload line is refused naming the point.
    std::fs::write(&payloads, "[1]\n".repeat(3000)).unwrap();
    let bad = run(&["import", "--data-dir", &data, "--collection", "imp2", "--vectors", &vectors, "--payloads", payloads.to_str().unwrap()]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("must be a JSON object"), "{bad:?}");
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    // One process per data directory.
    let busy = run(&["import", "--data-dir", &data, "--collection", "other", "--vectors", &vectors]);
    // Said once (the store's error names its cause, and gives it as its source too).
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).matches("in use by another").count() == 1, "{busy:?}");
    let v = vectorwise_index::Matrix::load(Path::new(&vectors)).unwrap();
    let (status, body) = post(&format!("{}/collections/imp/search", server.url), json!({"vector": v.row(10), "k": 2, "with_payload": true}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0], json!({"id": 1_000_070, "distance": 0.0, "payload": {"row": 10}}));
    let (_, info) = get(&format!("{}/collections/imp", server.url));
    assert_eq!((info["points"].as_u64(), info["metric"].as_str()), (Some(3000), Some("l2")), "{info}");
    server.terminate();
}

/// `vectorwise search --collection` answers in-process as the API does:
/// the exact nearest allowed points under each query's filter, one JSON
/// line per query with its time; a bad filter is refused naming its place,
/// and a directory a server holds is refused.
#[test]
fn search_queries_a_collection_in_process_under_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (vectors, index) = generate_and_build(dir.path());
    let payloads = dir.path().join("p.jsonl");
    let lines: Vec<String> = (0..3000).map(|i| format!("{{\"row\": {i}, \"tag\": \"t{}\"}}", i % 7)).collect();
    std::fs::write(&payloads, lines.join("\n") + "\n").unwrap();
    let data = dir.path().join("data").display().to_string();
    run_ok(&["import", "--data-dir", &data, "--collection", "c", "--vectors", &vectors, "--payloads", payloads.to_str().unwrap(), "--metric", "l2"]);
    let queries = dir.path().join("q.npy").display().to_string();
    run_ok(&["generate", "--n", "4", "--dim", "32", "--seed", "77", "--out", &queries]);
    let filters = dir.path().join("f.jsonl");
    let conds = [
        json!({"must": [{"key": "tag", "match": {"value": "t3"}}]}),
        json!({"must": [{"key": "row", "range": {"gte": 100, "lt": 130}}]}),
        Value::Null,
        json!({"must_not": [{"key": "tag", "match": {"any": ["t0", "t1", "t2"]}}], "must": [{"key": "row", "range": {"lt": 2000}}]}),
    ];
    let allowed = |f: usize, row: usize| match f {
        0 => row % 7 == 3,
        1 => (100..130).contains(&row),
        2 => true,
        _ => row % 7 >= 3 && row < 2000,
    };
    std::fs::write(&filters, conds.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let base = vectorwise_index::Matrix::load(Path::new(&vectors)).unwrap();
    let q = vectorwise_index::Matrix::load(Path::new(&queries)).unwrap();
    let f = filters.to_str().unwrap();
    for extra in [&["--recall-target", "1"][..], &["--profile", "balanced", "--warmup", "--threads", "1"][..]] {
        let out = run_ok(&[&["search", "--data-dir", &data, "--collection", "c", "--query-file", &queries, "--filters", f, "--k", "5"][..], extra].concat());
        let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 4, "{out}");
        for (i, row) in rows.iter().enumerate() {
            let mut truth: Vec<(f32, u64)> = (0..3000)
                .filter(|&r| allowed(i, r))
                .map(|r| (base.row(r).iter().zip(q.row(i)).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), r as u64))
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: Vec<u64> = truth[..5].iter().map(|t| t.1).collect();
            let got: Vec<u64> = row["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(got, want, "query {i} {extra:?}: {row}");
            assert!(row["micros"].as_f64().unwrap() > 0.0, "{row}");
            assert_eq!(row.get("allowed").is_some(), i != 2, "{row}");
        }
    }
    std::fs::write(&filters, "null\n{\"must\": [{\"key\": \"tag\", \"match\": {\"valu\": 1}}]}\nnull\nnull\n").unwrap();
    let bad = run(&["search", "--data-dir", &data, "--collection", "c", "--query-file", &queries, "--filters", f]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("line 2") && err.contains("filter.must.0.match"), "{err}");
    // A key repeated in an object is refused, as the API refuses it (not last-wins).
    std::fs::write(&filters, "null\n{\"must\": [{\"key\": \"tag\", \"match\": {\"value\": \"t1\"}}], \"must\": []}\nnull\nnull\n").unwrap();
    let dup = run(&["search", "--data-dir", &data, "--collection", "c", "--query-file", &queries, "--filters", f]);
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(!dup.status.success() && err.contains("line 2") && err.contains("duplicate key"), "{err}");
    // A missing data directory is an error, not created.
    let missing = dir.path().join("nowhere");
    let none = run(&["search", "--data-dir", missing.to_str().unwrap(), "--collection", "c", "--query-file", &queries]);
    assert!(!none.status.success() && !missing.exists(), "{none:?}");
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    let busy = run(&["search", "--data-dir", &data, "--collection", "c", "--query-file", &queries]);
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("in use by another"), "{busy:?}");
    server.terminate();
}

/// The served index is the collection `default`, hard-linked; the demo's
/// routes see what is written to it, across a restart.
#[test]
fn the_served_index_is_the_collection_default_and_its_writes_reach_the_demo_routes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (vectors, index) = generate_and_build(dir.path());
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let server = Server::start(&["--index", &index, "--data-dir", &data_arg]);
    server.wait_healthy(Duration::from_secs(30));
    let seg = data.join("default/segments/000000000001.vwi");
    assert_eq!(std::fs::metadata(&seg).unwrap().ino(), std::fs::metadata(&index).unwrap().ino(), "imported without a copy");
    let v = vectorwise_index::Matrix::load(Path::new(&vectors)).unwrap();
    let row = |i: usize| v.row(i).to_vec();
    let (_, before) = post(&format!("{}/search", server.url), json!({"query_vector": row(5), "k": 3}));
    let (_, same) = post(&format!("{}/collections/default/search", server.url), json!({"vector": row(5), "k": 3}));
    let ids: Vec<Value> = same["hits"].as_array().unwrap().iter().map(|h| h["id"].clone()).collect();
    assert_eq!(before["indices"], json!(ids), "the collection answers as the index");
    // Write to it: a new point and a deletion.
    let far: Vec<f32> = row(5).iter().map(|x| x + 0.001).collect();
    let (status, _) = put(&format!("{}/collections/default/points", server.url), json!({"points": [{"id": 5000, "vector": far}]}));
    assert_eq!(status, 200);
    assert_eq!(post(&format!("{}/collections/default/points/delete", server.url), json!({"ids": [5]})).0, 200);
    let (_, after) = post(&format!("{}/search", server.url), json!({"query_vector": row(5), "k": 3}));
    assert_eq!(after["indices"][0], 5000, "{after}");
    assert!(!after["indices"].as_array().unwrap().contains(&json!(5)), "{after}");
    let (_, batch) = post(&format!("{}/search/batch", server.url), json!({"query_vectors": [row(5)], "k": 3}));
    assert_eq!(batch["results"][0]["indices"], after["indices"]);
    assert_eq!(get(&format!("{}/stats", server.url)).1["total_vectors"], 3000);
    assert_eq!(get(&format!("{}/", server.url)).1["vectors_indexed"], 3000);
    server.terminate();
    let server = Server::start(&["--index", &index, "--data-dir", &data_arg]);
    server.wait_healthy(Duration::from_secs(30));
    let (_, again) = post(&format!("{}/search", server.url), json!({"query_vector": row(5), "k": 3}));
    assert_eq!(again["indices"], after["indices"], "kept across a restart, not imported again");
    // A point with a UUID id: the demo's integer `indices` cannot name it,
    // so an answer holding it is a 409 that says where to ask instead.
    let uuid = "6f1e4b1c-2d3a-4c5b-9e8f-0a1b2c3d4e5f";
    let (status, _) = put(&format!("{}/collections/default/points", server.url), json!({"points": [{"id": uuid, "vector": row(7)}]}));
    assert_eq!(status, 200);
    let (status, body) = post(&format!("{}/search", server.url), json!({"query_vector": row(7), "k": 3}));
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(uuid) && body["detail"].as_str().unwrap().contains("/collections/default/search"), "{body}");
    let (status, body) = post(&format!("{}/search/batch", server.url), json!({"query_vectors": [row(7)], "k": 3}));
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("/collections/default/search/batch"), "{body}");
    let (_, hits) = post(&format!("{}/collections/default/search", server.url), json!({"vector": row(7), "k": 3}));
    assert!(hits["hits"].as_array().unwrap().iter().any(|h| h["id"] == uuid), "{hits}");
    assert_eq!(post(&format!("{}/search", server.url), json!({"query_vector": row(5), "k": 3})).1["indices"], after["indices"]);
    server.terminate();
}

/// The crash check: writers upsert and delete while the server is killed
/// with SIGKILL at random moments (seals and merges included: the
/// collection seals every 150 points); after each restart every
/// acknowledged write is there, the batch in flight is all or nothing, and
/// exact search over the live points answers as brute force does.
#[test]
fn sigkill_never_loses_an_acknowledged_write() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    const DIM: usize = 8;
    const WRITERS: u64 = 3;
    const IDS_PER_WRITER: u64 = 200;
    // The last writer's ids travel as UUIDs: the keys the server gives them
    // must survive the kills as the points do.
    fn wire(id: u64) -> Value {
        if id >= (WRITERS - 1) * IDS_PER_WRITER { json!(format!("00000000-0000-4000-8000-{id:012x}")) } else { json!(id) }
    }
    fn unwire(v: &Value) -> u64 {
        v.as_u64().unwrap_or_else(|| u64::from_str_radix(&v.as_str().unwrap()[24..], 16).unwrap())
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let data = dir.path().join("data").display().to_string();
    // What each id must be: Some(version) or None (deleted / never written),
    // from acknowledged requests; and each writer's request in flight.
    type Model = HashMap<u64, Option<u64>>;
    let model: Arc<Mutex<Model>> = Arc::new(Mutex::new(HashMap::new()));
    let mut version = 0u64;
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    // CI runs 3 cycles; the benchmark run sets VECTORWISE_CRASH_CYCLES (README, Collections).
    let cycles: usize = std::env::var("VECTORWISE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut acknowledged = 0usize;
    let mut restarts = Vec::new();
    for cycle in 0..cycles {
        let server = Server::start(&["--index", &index, "--data-dir", &data]);
        server.wait_healthy(Duration::from_secs(30));
        let c = format!("{}/collections/crash", server.url);
        let created = put(&c, json!({"dimension": DIM, "metric": "l2", "seal_points": 150}));
        assert!(created.0 == 200 || created.0 == 201, "{created:?}");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut handles = Vec::new();
        let pending: Arc<Mutex<HashMap<u64, Vec<(u64, Option<u64>)>>>> = Arc::new(Mutex::new(HashMap::new()));
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for w in 0..WRITERS {
            let (c, model, stop, pending) = (c.clone(), Arc::clone(&model), Arc::clone(&stop), Arc::clone(&pending));
            let acked = Arc::clone(&acked);
            let base = version + w * 1_000_000;
            let seed = next();
            handles.push(std::thread::spawn(move || {
                let mut s = seed | 1;
                let mut rand = move || {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s
                };
                let mut v = base;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    v += 1;
                    let ids: Vec<u64> = (0..1 + rand() % 40).map(|_| w * IDS_PER_WRITER + rand() % IDS_PER_WRITER).collect();
                    let mut ids_unique = ids.clone();
                    ids_unique.sort_unstable();
                    ids_unique.dedup();
                    let upsert = rand() % 4 != 0;
                    let change: Vec<(u64, Option<u64>)> = ids_unique.iter().map(|&id| (id, upsert.then_some(v))).collect();
                    pending.lock().unwrap().insert(w, change.clone());
                    let result = if upsert {
                        let points: Vec<Value> = ids_unique
                            .iter()
                            .map(|&id| json!({"id": wire(id), "vector": point_vector(id, v, DIM), "payload": {"v": v}}))
                            .collect();
                        agent().put(&format!("{c}/points")).send_json(json!({"points": points}))
                    } else {
                        let ids: Vec<Value> = ids.iter().map(|&id| wire(id)).collect();
                        agent().post(&format!("{c}/points/delete")).send_json(json!({"ids": ids}))
                    };
                    match result {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acked.fetch_add(change.len(), std::sync::atomic::Ordering::Relaxed);
                            let mut m = model.lock().unwrap();
                            for (id, state) in &change {
                                m.insert(*id, *state);
                            }
                            pending.lock().unwrap().remove(&w);
                        }
                        // The server is gone: this request stays in flight.
                        _ => return,
                    }
                }
            }));
        }
        let ms = 300 + next() % 1200;
        std::thread::sleep(Duration::from_millis(ms));
        let mut server = server;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        version += 10_000_000;
        drop(server);

        let start = Instant::now();
        let server = Server::start(&["--index", &index, "--data-dir", &data]);
        server.wait_healthy(Duration::from_secs(30));
        let started = start.elapsed();
        assert!(started < Duration::from_secs(10), "restart took {started:?}");
        restarts.push(started.as_secs_f64());
        acknowledged += acked.load(std::sync::atomic::Ordering::Relaxed);
        let c = format!("{}/collections/crash", server.url);
        let all: Vec<u64> = (0..WRITERS * IDS_PER_WRITER).collect();
        let wired: Vec<Value> = all.iter().map(|&id| wire(id)).collect();
        let (status, body) = post(&format!("{c}/points/get"), json!({"ids": wired, "with_vector": true}));
        assert_eq!(status, 200, "{body}");
        let found: HashMap<u64, (u64, Vec<f32>)> = body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let v: Vec<f32> = serde_json::from_value(p["vector"].clone()).unwrap();
                (unwire(&p["id"]), (p["payload"]["v"].as_u64().unwrap(), v))
            })
            .collect();
        let mut m = model.lock().unwrap();
        let pending = pending.lock().unwrap();
        for (w, change) in pending.iter() {
            // The batch in flight: all of it or none of it.
            let applied = change.iter().filter(|(id, state)| found.get(id).map(|f| f.0) == *state).count();
            let before = change.iter().filter(|(id, _)| found.get(id).map(|f| f.0) == m.get(id).copied().flatten()).count();
            assert!(applied == change.len() || before == change.len(), "cycle {cycle}: writer {w}'s batch half applied ({applied} of {})", change.len());
            if applied == change.len() {
                for (id, state) in change {
                    m.insert(*id, *state);
                }
            }
        }
        for &id in &all {
            let want = m.get(&id).copied().flatten();
            let have = found.get(&id);
            assert_eq!(have.map(|f| f.0), want, "cycle {cycle}: id {id}");
            if let (Some(v), Some(h)) = (want, have) {
                assert_eq!(h.1, point_vector(id, v, DIM), "cycle {cycle}: id {id}'s vector");
            }
        }
        // Exact search over the live points answers as brute force does.
        let live: Vec<(u64, Vec<f32>)> = m.iter().filter_map(|(&id, s)| s.map(|v| (id, point_vector(id, v, DIM)))).collect();
        for q in 0..5u64 {
            let query = point_vector(q * 13, 999, DIM);
            let mut truth: Vec<(f32, u64)> =
                live.iter().map(|(id, v)| (v.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), *id)).collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let (_, body) = post(&format!("{c}/search"), json!({"vector": query, "k": 10, "recall_target": 1.0}));
            let got: Vec<f32> = body["hits"].as_array().unwrap().iter().map(|h| h["distance"].as_f64().unwrap() as f32).collect();
            let want: Vec<f32> = truth.iter().take(10).map(|t| t.0).collect();
            assert_eq!(got.len(), want.len().min(10));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * w.max(1.0), "cycle {cycle}: distances {got:?} vs {want:?}");
            }
        }
        drop(m);
        drop(pending);
        server.terminate();
    }
    restarts.sort_by(f64::total_cmp);
    eprintln!(
        "crash check: {cycles} SIGKILL cycles, {acknowledged} acknowledged point writes checked, none lost; restart to healthy p50 {:.3} s, max {:.3} s",
        restarts[restarts.len() / 2],
        restarts[restarts.len() - 1]
    );
}

/// A snapshot taken over HTTP, downloaded, is restored by `vectorwise
/// restore` with the server stopped (a running server keeps the data
/// directory to itself); the restarted server serves the restored
/// collection exactly as the source was at the snapshot: every point, its
/// payload, exact searches, its payload index. A damaged or truncated
/// archive and an existing collection (without --force) are refused.
#[test]
fn a_snapshot_restored_by_the_cli_is_served_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = generate_and_build(dir.path());
    let data = dir.path().join("data").display().to_string();
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    let c = format!("{}/collections/docs", server.url);
    assert_eq!(put(&c, json!({"dimension": 8, "metric": "l2", "seal_points": 100})).0, 201);
    assert_eq!(put(&format!("{c}/index"), json!({"field": "tag", "type": "integer"})).0, 201);
    let points: Vec<Value> = (0..250u64).map(|id| json!({"id": id, "vector": point_vector(id, 0, 8), "payload": {"tag": id % 3}})).collect();
    assert_eq!(put(&format!("{c}/points"), json!({"points": points})).0, 200);
    assert_eq!(post(&format!("{c}/points/delete"), json!({"ids": [42, 43]})).0, 200);
    let ids: Vec<u64> = (0..600).collect();
    let read_all = |url: &str| post(&format!("{url}/points/get"), json!({"ids": ids, "with_vector": true})).1;
    let searches = |url: &str| -> Vec<Value> {
        (0..5u64)
            .map(|q| post(&format!("{url}/search"), json!({"vector": point_vector(q * 13, 1, 8), "k": 10, "recall_target": 1.0, "with_payload": true})).1)
            .collect()
    };
    let before = read_all(&c);
    let answers = searches(&c);
    let (status, made) = post(&format!("{c}/snapshots"), json!({"name": "s1"}));
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["points"], 248);
    // Written after the snapshot: not in it.
    assert_eq!(put(&format!("{c}/points"), json!({"points": [{"id": 500, "vector": point_vector(500, 0, 8)}]})).0, 200);
    let mut response = agent().get(format!("{c}/snapshots/s1")).call().unwrap();
    let mut archive = Vec::new();
    std::io::Read::read_to_end(&mut response.body_mut().as_reader(), &mut archive).unwrap();
    assert_eq!(archive.len() as u64, made["size"].as_u64().unwrap());
    let file = dir.path().join("s1.tar");
    std::fs::write(&file, &archive).unwrap();
    let file = file.to_str().unwrap();
    let busy = run(&["restore", "--data-dir", &data, "--snapshot", file, "--collection", "copy"]);
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("in use by another"), "{busy:?}");
    server.terminate();

    let damaged = dir.path().join("damaged.tar");
    let mut bytes = archive.clone();
    // A byte of `snapshot.json` (the first entry's data starts at 512).
    bytes[600] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&["restore", "--data-dir", &data, "--snapshot", damaged.to_str().unwrap(), "--collection", "copy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("snapshot archive refused") && stderr.contains("snapshot.json"), "{stderr}");
    std::fs::write(&damaged, &archive[..archive.len() * 2 / 3]).unwrap();
    let out = run(&["restore", "--data-dir", &data, "--snapshot", damaged.to_str().unwrap(), "--collection", "copy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("truncated"), "{stderr}");
    let out = run_ok(&["restore", "--data-dir", &data, "--snapshot", file, "--collection", "copy"]);
    assert!(out.contains("Restored snapshot 's1' of 'docs'") && out.contains("248 points"), "{out}");
    let exists = run(&["restore", "--data-dir", &data, "--snapshot", file, "--collection", "docs"]);
    assert!(!exists.status.success() && String::from_utf8_lossy(&exists.stderr).contains("already exists"), "{exists:?}");
    run_ok(&["restore", "--data-dir", &data, "--snapshot", file, "--collection", "docs", "--force"]);

    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    for name in ["copy", "docs"] {
        let url = format!("{}/collections/{name}", server.url);
        assert_eq!(read_all(&url), before, "{name}: every point as it was at the snapshot");
        assert_eq!(searches(&url), answers, "{name}: exact searches");
        let (_, info) = get(&url);
        assert_eq!(info["payload_indexes"], json!([{"field": "tag", "type": "integer"}]), "{info}");
        assert_eq!(get(&format!("{url}/points/500")).0, 404, "written after the snapshot");
        // It takes writes as any collection does.
        assert_eq!(put(&format!("{url}/points"), json!({"points": [{"id": 501, "vector": point_vector(501, 0, 8)}]})).0, 200);
    }
    server.terminate();
}

/// A batch job survives a SIGKILL of the server: the restarted server
/// resumes it from its last checkpoint (`resumed`: 1) and its
/// answers, those written before the kill and after, are the answers of
/// `/search/batch` to the same queries.
#[test]
fn a_batch_job_killed_mid_run_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (vectors, index) = generate_and_build(dir.path());
    let data = dir.path().join("data").display().to_string();
    run_ok(&["import", "--data-dir", &data, "--collection", "imp", "--vectors", &vectors, "--metric", "l2"]);
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    // Enough queries to outlast a checkpoint (every second) on any machine.
    let (n, dim, k) = (400_000usize, 32usize, 5usize);
    let queries = vectorwise_index::dataset::sphere(n, dim, 77);
    let body: Vec<u8> = queries.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut r = agent()
        .post(format!("{}/collections/imp/jobs?k={k}", server.url))
        .header("content-type", "application/octet-stream")
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job: Value = r.body_mut().read_json().unwrap();
    let url = |s: &Server| format!("{}/collections/imp/jobs/{}", s.url, job["id"].as_str().unwrap());
    // Killed while it runs, after its first checkpoint.
    let start = Instant::now();
    loop {
        let (_, now) = get(&url(&server));
        assert_ne!(now["state"], "done", "the job ended before the kill: make it longer");
        if now["state"] == "running" && start.elapsed() > Duration::from_millis(2500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    let server = Server::start(&["--index", &index, "--data-dir", &data]);
    server.wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let (status, now) = get(&url(&server));
        assert_eq!(status, 200, "{now}");
        if now["state"] != "queued" && now["state"] != "running" {
            break now;
        }
        assert!(Instant::now() < deadline, "not done: {now}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((done["state"].as_str(), done["resumed"].as_u64(), done["done"].as_u64()), (Some("done"), Some(1), Some(n as u64)), "{done}");
    let download = |file: &str| {
        let mut r = agent().get(format!("{}/{file}", url(&server))).call().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let bytes = r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
        let header = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[header..].to_vec()
    };
    let ids: Vec<i64> = download("ids.npy").chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    let distances: Vec<f32> = download("distances.npy").chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!((ids.len(), distances.len()), (n * k, n * k));
    // Rows from before the kill, around it and after it: every 100th.
    let rows: Vec<usize> = (0..n).step_by(100).collect();
    for chunk in rows.chunks(1000) {
        let vectors: Vec<&[f32]> = chunk.iter().map(|&i| queries.row(i)).collect();
        let (status, answer) = post(&format!("{}/collections/imp/search/batch", server.url), json!({"vectors": vectors, "k": k}));
        assert_eq!(status, 200, "{answer}");
        for (&i, result) in chunk.iter().zip(answer["results"].as_array().unwrap()) {
            let want: Vec<(i64, f32)> =
                result["hits"].as_array().unwrap().iter().map(|h| (h["id"].as_i64().unwrap(), h["distance"].as_f64().unwrap() as f32)).collect();
            let got: Vec<(i64, f32)> = (0..k).map(|j| (ids[i * k + j], distances[i * k + j])).collect();
            assert_eq!(got, want, "query {i}");
        }
    }
    server.terminate();
}

/// A tmpfs of a given size mounted at a temporary folder for a test;
/// unmounted on drop (lazily if something still holds it), so a failed
/// test leaves no mount behind.
struct Tmpfs {
    dir: std::path::PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it, or says why it cannot (not root, no CAP_SYS_ADMIN, no `mount`).
    fn mount(kib: u64) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0700"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir, _parent: parent })
    }

    /// Grows (or shrinks) it in place.
    fn resize(&self, kib: u64) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={kib}k")]).arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(&self.dir).output();
        if !plain.is_ok_and(|o| o.status.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        }
    }
}

/// Appends zeros to `path` until the file system is full (ENOSPC); returns
/// the bytes added.
fn fill_up(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::options().create(true).append(true).open(path).unwrap();
    let mut added = 0u64;
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let zeros = vec![0u8; chunk];
        loop {
            match f.write(&zeros) {
                Ok(0) => break,
                Ok(n) => added += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    added
}

/// What a refused write must say: the disk is full, nothing applied, and
/// nothing internal (no path, no error chain).
fn assert_disk_full(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 507, "{what}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("No space left") && detail.contains("not applied"), "{what}: {body}");
    assert!(!detail.contains('/') && !detail.contains("Internal"), "{what}: the detail names nothing internal: {body}");
}

/// Issue 20: a real server on a really full disk (a small tmpfs). Writes are
/// refused with 507 and a clear detail, nothing acknowledged is lost, reads
/// go on, the optimiser failing for want of space loses nothing, a restart
/// on the full disk serves, and once space is freed writes succeed again
/// without a restart (the log only fails for good on a failed fdatasync,
/// which a full disk does not cause: the write itself fails first).
#[test]
fn a_full_disk_refuses_writes_with_507_and_loses_nothing() {
    use std::collections::HashMap;
    const DIM: usize = 16;
    let tmpfs = match Tmpfs::mount(6 * 1024) {
        Ok(t) => t,
        Err(why) => {
            assert!(
                std::env::var("VECTORWISE_REQUIRE_TMPFS").as_deref() != Ok("1"),
                "cannot mount tmpfs ({why}) and VECTORWISE_REQUIRE_TMPFS=1"
            );
            eprintln!("skipped: cannot mount tmpfs (needs root): {why}");
            return;
        }
    };
    let started = Instant::now();
    // The served index (collection `default`): small, outside the tmpfs.
    let work = tempfile::tempdir().unwrap();
    let vectors = work.path().join("v.npy").display().to_string();
    let index = work.path().join("i.vwi").display().to_string();
    run_ok(&["generate", "--n", "200", "--dim", "8", "--seed", "5", "--out", &vectors]);
    run_ok(&["build", "--vectors", &vectors, "--out", &index, "--m", "8", "--ef-construction", "32"]);
    let data = tmpfs.dir.join("data");
    let data_arg = data.display().to_string();
    // Space the test takes back later: 1 MiB now, topped up to full below.
    let filler = tmpfs.dir.join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).unwrap();

    let start = || {
        let server = Server::start(&["--index", &index, "--data-dir", &data_arg]);
        server.wait_healthy(Duration::from_secs(30));
        server
    };
    let mut logs: Vec<String> = Vec::new();
    let mut server = start();
    let mut c = format!("{}/collections/full", server.url);
    let (status, body) = put(&c, json!({"dimension": DIM, "metric": "l2", "seal_points": 400}));
    assert_eq!(status, 201, "{body}");

    // id -> the version of its acknowledged upsert, or None once an
    // acknowledged delete removed it.
    let mut model: HashMap<u64, Option<u64>> = HashMap::new();
    // Refused upserts (id, version): none of their points may be applied.
    let mut refused: Vec<Vec<(u64, u64)>> = Vec::new();
    let text = "x".repeat(400);
    let payload = |id: u64, v: u64| json!({"id": id, "v": v, "text": text});
    let vector = |id: u64, v: u64| point_vector(id, v, DIM);
    let mut version = 0u64;
    let mut next_id = 0u64;
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let live = |model: &HashMap<u64, Option<u64>>| -> Vec<u64> {
        let mut ids: Vec<u64> = model.iter().filter(|(_, v)| v.is_some()).map(|(&id, _)| id).collect();
        ids.sort_unstable();
        ids
    };
    // One upsert: 80 new ids and 20 existing ones updated, with payloads.
    let mut upsert = |c: &str, model: &mut HashMap<u64, Option<u64>>, refused: &mut Vec<Vec<(u64, u64)>>| -> (u16, Value) {
        version += 1;
        let existing = live(model);
        let mut ids: Vec<u64> = (next_id..next_id + 80).collect();
        next_id += 80;
        if !existing.is_empty() {
            for _ in 0..20 {
                ids.push(existing[(rand() % existing.len() as u64) as usize]);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let points: Vec<Value> = ids.iter().map(|&id| json!({"id": id, "vector": vector(id, version), "payload": payload(id, version)})).collect();
        let (status, body) = put(&format!("{c}/points"), json!({"points": points}));
        match status {
            200 => {
                assert_eq!(body["upserted"].as_u64(), Some(ids.len() as u64), "{body}");
                for &id in &ids {
                    model.insert(id, Some(version));
                }
            }
            _ => refused.push(ids.iter().map(|&id| (id, version)).collect()),
        }
        (status, body)
    };
    let delete_some = |c: &str, model: &mut HashMap<u64, Option<u64>>, n: usize| -> (u16, Value) {
        let existing = live(model);
        let mut ids: Vec<u64> = (0..n).map(|i| existing[(i * 7919 + 13) % existing.len()]).collect();
        ids.sort_unstable();
        ids.dedup();
        let (status, body) = post(&format!("{c}/points/delete"), json!({"ids": ids}));
        if status == 200 {
            assert_eq!(body["deleted"].as_u64(), Some(ids.len() as u64), "{body}");
            for id in ids {
                model.insert(id, None);
            }
        }
        (status, body)
    };
    // Every read agrees with the model: each point (vector, payload), the
    // count, and exact searches with brute force over the live points.
    let check_reads = |c: &str, model: &HashMap<u64, Option<u64>>, refused: &[Vec<(u64, u64)>], when: &str| {
        let mut ids: Vec<u64> = model.keys().copied().chain(refused.iter().flatten().map(|r| r.0)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut found: HashMap<u64, (u64, Vec<f32>, Value)> = HashMap::new();
        // In requests of 2000 ids (a get takes at most 10 × --max-batch).
        for chunk in ids.chunks(2000) {
            let (status, body) = post(&format!("{c}/points/get"), json!({"ids": chunk, "with_vector": true}));
            assert_eq!(status, 200, "{when}: {body}");
            found.extend(body["points"].as_array().unwrap().iter().map(|p| {
                let v: Vec<f32> = serde_json::from_value(p["vector"].clone()).unwrap();
                (p["id"].as_u64().unwrap(), (p["payload"]["v"].as_u64().unwrap(), v, p["payload"].clone()))
            }));
        }
        for (&id, &want) in model {
            let have = found.get(&id);
            assert_eq!(have.map(|h| h.0), want, "{when}: id {id}");
            if let (Some(v), Some(h)) = (want, have) {
                assert_eq!(h.1, vector(id, v), "{when}: id {id}'s vector");
                assert_eq!(h.2, payload(id, v), "{when}: id {id}'s payload");
            }
        }
        // A refused batch: none of it applied (new ids absent, others as acknowledged).
        for batch in refused {
            for &(id, v) in batch {
                assert_ne!(found.get(&id).map(|h| h.0), Some(v), "{when}: id {id} of a refused batch (version {v}) was applied");
            }
        }
        let live_points: Vec<(u64, Vec<f32>)> = model.iter().filter_map(|(&id, s)| s.map(|v| (id, vector(id, v)))).collect();
        let (status, info) = get(c);
        assert_eq!(status, 200, "{when}: {info}");
        assert_eq!(info["points"].as_u64(), Some(live_points.len() as u64), "{when}: {info}");
        for q in 0..4u64 {
            let query = vector(q * 101 + 7, 1_000_000 + q);
            let mut truth: Vec<f32> = live_points.iter().map(|(_, v)| v.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum()).collect();
            truth.sort_by(f32::total_cmp);
            let (status, body) = post(&format!("{c}/search"), json!({"vector": query, "k": 10, "recall_target": 1.0, "with_payload": true}));
            assert_eq!(status, 200, "{when}: {body}");
            let hits = body["hits"].as_array().unwrap();
            assert_eq!(hits.len(), truth.len().min(10), "{when}");
            for (h, w) in hits.iter().zip(&truth) {
                let g = h["distance"].as_f64().unwrap() as f32;
                assert!((g - w).abs() <= 1e-4 * w.max(1.0), "{when}: distance {g} vs {w}");
                let id = h["id"].as_u64().unwrap();
                assert_eq!(h["payload"], payload(id, model[&id].unwrap()), "{when}: hit {id}'s payload");
            }
        }
    };
    let drain = |server: &Server, logs: &mut Vec<String>| logs.extend(server.logs.try_iter());

    // 1. Write until the disk is full: batches with payloads, a delete now and then.
    let fill_start = Instant::now();
    let mut batches = 0;
    let (status, refusal) = loop {
        assert!(fill_start.elapsed() < Duration::from_secs(60), "the disk never filled");
        let (status, body) = upsert(&c, &mut model, &mut refused);
        if status != 200 {
            break (status, body);
        }
        batches += 1;
        if batches % 4 == 0 {
            let (status, body) = delete_some(&c, &mut model, 30);
            if status != 200 {
                assert_disk_full(status, &body, "a delete while filling");
            }
        }
    };
    assert_disk_full(status, &refusal, "the upsert that found the disk full");
    let filled_in = fill_start.elapsed();
    let acked_before_full = model.values().filter(|v| v.is_some()).count();
    eprintln!("disk full after {batches} upserts ({acked_before_full} live points) in {:.2} s", filled_in.as_secs_f64());

    // 2. While full. Top the disk up to the last byte (the optimiser may
    // have freed a merged segment's files), twice: a build in flight when
    // the first ran may remove its partial files.
    // A build in flight may have written part of its files and then remove
    // them when it fails: fill again until a fill finds nothing freed with
    // the optimiser idle before and after it. From then on no step of it can
    // write a byte, so none frees one.
    let wait_idle = |c: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, info) = get(c);
            assert_eq!(status, 200, "{info}");
            if info["optimiser"]["state"] == "idle" {
                return;
            }
            assert!(Instant::now() < deadline, "the optimiser stayed busy on a full disk: {info}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let top_up = |c: &str| {
        wait_idle(c);
        fill_up(&filler);
        loop {
            wait_idle(c);
            if fill_up(&filler) == 0 {
                break;
            }
        }
    };
    top_up(&c);
    // Later writes keep being refused, cleanly and fast.
    let mut refusals = 0;
    for _ in 0..6 {
        let t = Instant::now();
        let (status, body) = upsert(&c, &mut model, &mut refused);
        assert!(t.elapsed() < Duration::from_secs(5), "a refused write took {:?}", t.elapsed());
        if status == 200 {
            // Space someone freed: acknowledged, so kept in the model; fill again.
            top_up(&c);
            continue;
        }
        assert_disk_full(status, &body, "an upsert on the full disk");
        refusals += 1;
        if refusals == 3 {
            break;
        }
    }
    assert_eq!(refusals, 3, "writes on a full disk were accepted");
    // Reads answer, right.
    check_reads(&c, &model, &refused, "while full");
    let some = live(&model)[0];
    let (status, body) = get(&format!("{c}/points/{some}"));
    assert_eq!((status, body["payload"]["v"].as_u64()), (200, model[&some]), "{body}");
    // A delete: its record may still fit in the log's last page (200), or not (507).
    let (status, body) = delete_some(&c, &mut model, 40);
    if status != 200 {
        assert_disk_full(status, &body, "a delete on the full disk");
    }
    // A new collection: refused, and no half-made folder left.
    let (status, body) = put(&format!("{}/collections/other", server.url), json!({"dimension": 4, "metric": "l2"}));
    assert_disk_full(status, &body, "creating a collection on the full disk");
    assert_eq!(get(&format!("{}/collections/other", server.url)).0, 404);
    let leftovers: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".creating") || n == "other")
        .collect();
    assert!(leftovers.is_empty(), "a refused create left {leftovers:?}");
    // A payload index: refused, and not declared (a retry once there is room creates it).
    let (status, body) = put(&format!("{c}/index"), json!({"field": "v", "type": "integer"}));
    assert_disk_full(status, &body, "declaring a payload index on the full disk");
    let (_, info) = get(&c);
    assert_eq!(info["payload_indexes"], json!([]), "a refused payload index is not declared: {info}");
    // A snapshot: refused, and no partial archive, staging folder or temporary left.
    let (status, body) = post(&format!("{c}/snapshots"), json!({"name": "while-full"}));
    assert_disk_full(status, &body, "a snapshot on the full disk");
    let snapshots = data.join(".snapshots").join("full");
    let left: Vec<String> =
        std::fs::read_dir(&snapshots).map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a refused snapshot left {left:?} in {}", snapshots.display());
    check_reads(&c, &model, &refused, "after the refused snapshot");

    // 3. The optimiser out of space: free 64 KiB (room for a delete's
    // record, not for any segment), delete a third of the points so that
    // every sealed segment wants rewriting, and wait for the rewrite to fail.
    drain(&server, &mut logs);
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::File::options().write(true).open(&filler).unwrap().set_len(len - (64 << 10)).unwrap();
    let n = live(&model).len() / 3;
    let (status, body) = delete_some(&c, &mut model, n);
    assert_eq!(status, 200, "a delete with room for its record: {body}");
    // Its lanes retry after a back-off of up to 30 s.
    let mark = logs.len();
    let deadline = Instant::now() + Duration::from_secs(35);
    let failed = loop {
        drain(&server, &mut logs);
        if let Some(line) = logs[mark..].iter().find(|l| l.contains("optimiser step failed") && l.contains("no space left")) {
            break line.clone();
        }
        assert!(Instant::now() < deadline, "the optimiser never ran out of space (or never said so)");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, info) = get(&c);
    assert_eq!(status, 200, "{info}");
    assert!(info["optimiser"]["last_error"].as_str().is_some_and(|e| e.contains("no space left")), "{info}");
    eprintln!("optimiser out of space: {failed}");
    top_up(&c);
    check_reads(&c, &model, &refused, "after the optimiser ran out of space");

    // 4. SIGKILL on the full disk; it starts again on it and serves reads.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drain(&server, &mut logs);
    drop(server);
    let t = Instant::now();
    server = start();
    eprintln!("restarted on the full disk in {:.2} s", t.elapsed().as_secs_f64());
    c = format!("{}/collections/full", server.url);
    check_reads(&c, &model, &refused, "restarted on the full disk");
    let (status, body) = upsert(&c, &mut model, &mut refused);
    if status != 200 {
        assert_disk_full(status, &body, "an upsert after the restart on the full disk");
    }

    // 5. Space freed: writes succeed again, with no restart.
    // A seal the optimiser starts meanwhile may hold that room for a moment
    // (until it fails and removes its files): a refusal is retried for up
    // to 5 s, and each refused batch joins the ones that must not be applied.
    std::fs::remove_file(&filler).unwrap();
    for round in 0..6 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = upsert(&c, &mut model, &mut refused);
            if status == 200 {
                break;
            }
            assert_disk_full(status, &body, "an upsert once space is freed");
            assert!(Instant::now() < deadline, "upsert {round} refused for 5 s once space is freed: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = delete_some(&c, &mut model, 50);
        if status == 200 {
            break;
        }
        assert_disk_full(status, &body, "a delete once space is freed");
        assert!(Instant::now() < deadline, "a delete refused for 5 s once space is freed: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The log keeps every point not yet in a sealed segment's manifest entry
    // (it drops whole 64 MiB files only), and a seal writes its segment
    // before the log can let go of those points: on this 6 MiB disk the
    // log alone is ~4.5 MiB, so sealing needs more room than the filler
    // gave back. Writes go on meanwhile (above); the optimiser retries. Give
    // it room (the disk grown in place) and it catches up: no frozen segment
    // left, none over the rewrite threshold, idle.
    tmpfs.resize(32 * 1024);
    let (status, body) = upsert(&c, &mut model, &mut refused);
    assert_eq!(status, 200, "upsert once the disk is larger: {body}");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, info) = get(&c);
        let segments = info["segments"].as_array().unwrap();
        let frozen = segments.iter().filter(|s| s["kind"] == "frozen").count();
        let to_rewrite = segments
            .iter()
            .filter(|s| s["kind"] == "sealed" && s["deleted"].as_f64().unwrap() >= 0.2 * s["points"].as_f64().unwrap() && s["deleted"] != 0)
            .count();
        // Its lanes working again, the error they reported is cleared.
        if frozen == 0 && to_rewrite == 0 && info["optimiser"]["state"] == "idle" && info["optimiser"]["last_error"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the optimiser did not catch up once space was freed: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
    check_reads(&c, &model, &refused, "space freed");
    let (status, body) = put(&format!("{c}/index"), json!({"field": "v", "type": "integer"}));
    assert_eq!(status, 201, "the payload index refused on the full disk, once there is room: {body}");
    let (status, body) = post(&format!("{c}/snapshots"), json!({"name": "after"}));
    assert_eq!(status, 201, "a snapshot once space is freed: {body}");

    // 6. SIGKILL and restart: every acknowledged write is there, nothing refused is.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drain(&server, &mut logs);
    drop(server);
    server = start();
    c = format!("{}/collections/full", server.url);
    check_reads(&c, &model, &refused, "after the last restart");
    drain(&server, &mut logs);
    let bad: Vec<&String> = logs.iter().filter(|l| l.contains("panicked") || l.contains("internal error")).collect();
    assert!(bad.is_empty(), "the server logged {bad:#?}");
    // Its errors and warnings, by message: only what a full disk explains.
    let mut messages: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in &logs {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if v["level"] == "ERROR" || v["level"] == "WARN" {
            let message = format!("{} {}", v["level"].as_str().unwrap_or_default(), v["fields"]["message"].as_str().unwrap_or_default());
            *messages.entry(message).or_default() += 1;
        }
    }
    eprintln!("server errors and warnings: {messages:?}");
    let expected = [
        "ERROR write refused: disk full",
        "ERROR optimiser step failed; retrying later",
        // A payload index file is a cache: not written, it is rebuilt at the next open.
        "WARN cannot write a payload index file (it is rebuilt at the next open)",
        // A merge whose output would leave writes too little room waits for room.
        "WARN merge put off for lack of disk room; retrying later",
    ];
    assert!(messages.keys().all(|m| expected.contains(&m.as_str())), "unexpected errors or warnings: {messages:?}");
    let live_n = live(&model).len();
    let logs_after = server.terminate();
    assert!(!logs_after.iter().any(|l| l.contains("panicked")), "{logs_after:#?}");
    drop(tmpfs);
    eprintln!(
        "full-disk check: {} refused upserts, {live_n} live points checked after SIGKILL + restart, {:.1} s",
        refused.len(),
        started.elapsed().as_secs_f64()
    );
}

/// `tests/faultfs.py` mounted (FUSE): a real file system over a folder whose
/// fsync answers EIO while `ctl/fail-fsync` exists.
struct FaultFs {
    root: std::path::PathBuf,
    mnt: std::path::PathBuf,
    ctl: std::path::PathBuf,
    child: Child,
    _parent: tempfile::TempDir,
}

impl FaultFs {
    /// Mounts it, or says why it cannot (no /dev/fuse, not root, no libfuse2 or fusepy).
    fn mount() -> Result<FaultFs, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        let python = std::env::var("VECTORWISE_FAULTFS_PYTHON").unwrap_or_else(|_| "python3".into());
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let [root, mnt, ctl] = ["root", "mnt", "ctl"].map(|d| parent.path().join(d));
        for d in [&root, &mnt, &ctl] {
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faultfs.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args([&root, &mnt, &ctl])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let key = format!(" {} ", mnt.display());
        while !std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains(&key)) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                return Err(format!("faultfs.py exited ({status}): {}", err.trim()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("faultfs.py did not mount within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(FaultFs { root, mnt, ctl, child, _parent: parent })
    }

    fn fail_fsync(&self, on: bool) {
        let flag = self.ctl.join("fail-fsync");
        if on { std::fs::write(flag, b"").unwrap() } else { std::fs::remove_file(flag).unwrap() }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(&self.mnt).output();
        if !plain.is_ok_and(|o| o.status.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A disk whose flush fails (fsync answers EIO, through a real FUSE file
/// system): the write that met the failure is refused (503), never
/// acknowledged; the log then refuses every write until a restart (the
/// tail's state is unknown) while searches go on; after the restart every
/// acknowledged write is there, the refused batch is there whole or not at
/// all, and writes work again.
#[test]
fn a_failed_fsync_is_never_acknowledged() {
    const DIM: usize = 8;
    let fs = match FaultFs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            assert!(std::env::var("VECTORWISE_REQUIRE_FUSE").as_deref() != Ok("1"), "cannot mount faultfs ({why}) and VECTORWISE_REQUIRE_FUSE=1");
            eprintln!("skipped: cannot mount the fault-injecting file system: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let vectors = work.path().join("v.npy").display().to_string();
    let index = work.path().join("i.vwi").display().to_string();
    run_ok(&["generate", "--n", "200", "--dim", "8", "--seed", "5", "--out", &vectors]);
    run_ok(&["build", "--vectors", &vectors, "--out", &index, "--m", "8", "--ef-construction", "32"]);
    let data = fs.mnt.join("data").display().to_string();
    let start = || {
        let server = Server::start(&["--index", &index, "--data-dir", &data]);
        server.wait_healthy(Duration::from_secs(30));
        server
    };
    let points = |ids: std::ops::Range<u64>, version: u64| -> Value {
        json!({"points": ids.map(|id| json!({"id": id, "vector": point_vector(id, version, DIM)})).collect::<Vec<_>>()})
    };
    let server = start();
    let c = format!("{}/collections/f", server.url);
    assert_eq!(put(&c, json!({"dimension": DIM, "metric": "l2"})).0, 201);
    assert_eq!(put(&format!("{c}/points"), points(0..50, 1)).0, 200);

    fs.fail_fsync(true);
    let (status, body) = put(&format!("{c}/points"), points(100..110, 1));
    assert_eq!(status, 503, "a write whose fsync failed must not be acknowledged: {body}");
    fs.fail_fsync(false);
    // The log stays refused until a restart; reads go on.
    let (status, body) = put(&format!("{c}/points"), points(200..201, 1));
    assert_eq!(status, 503, "{body}");
    let (status, body) = post(&format!("{c}/search"), json!({"vector": point_vector(7, 1, DIM), "k": 1}));
    assert_eq!((status, &body["hits"][0]["id"]), (200, &json!(7)), "{body}");
    let logs = server.terminate();
    assert!(logs.iter().any(|l| l.contains("Input/output error") || l.contains("os error 5")), "the cause is logged: {logs:?}");

    let server = start();
    let c = format!("{}/collections/f", server.url);
    let all: Vec<u64> = (0..250).collect();
    let (status, body) = post(&format!("{c}/points/get"), json!({"ids": all, "with_vector": true}));
    assert_eq!(status, 200, "{body}");
    let found: std::collections::HashMap<u64, Vec<f32>> = body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), serde_json::from_value(p["vector"].clone()).unwrap()))
        .collect();
    for id in 0..50 {
        assert_eq!(found.get(&id), Some(&point_vector(id, 1, DIM)), "acknowledged point {id}");
    }
    let refused = (100..110).filter(|id| found.contains_key(id)).count();
    assert!(refused == 0 || refused == 10, "the refused batch is whole or absent, not {refused} of 10");
    assert!(!found.contains_key(&200), "a write refused before the log is never applied");
    assert_eq!(put(&format!("{c}/points"), points(300..301, 1)).0, 200, "writes work after the restart");
    server.terminate();
    assert!(fs.root.join("data/f/manifest.json").exists());
}
