//! End to end, the security settings of `vectorwise serve`: the real binary on
//! real files and a real socket (the bind default; more as they come).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vectorwise");

/// The binary with no `VECTORWISE_*` variable inherited from the test's environment.
fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("VECTORWISE_")) {
        cmd.env_remove(key);
    }
    cmd
}

fn run_ok(args: &[&str]) {
    let out = command().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A 500 x 16 index in `dir`.
fn small_index(dir: &Path) -> String {
    let vectors = dir.join("v.npy").display().to_string();
    let index = dir.join("i.vwi").display().to_string();
    run_ok(&["generate", "--n", "500", "--dim", "16", "--seed", "3", "--out", &vectors]);
    run_ok(&["build", "--vectors", &vectors, "--out", &index, "--no-calibrate", "--threads", "1"]);
    index
}

/// A running `vectorwise serve` (port 0, JSON logs, collections in a
/// temporary directory), killed on drop.
struct Server {
    child: Child,
    /// `host:port` it logged.
    addr: String,
    logs: mpsc::Receiver<String>,
    /// Every log line read so far.
    seen: Vec<String>,
    _data: tempfile::TempDir,
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut child = command()
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--port", "0", "--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
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
        let mut server = Server { child, addr: String::new(), logs, seen: Vec::new(), _data: data };
        let line = server.wait_log("listening", Duration::from_secs(30));
        server.addr = line["fields"]["address"].as_str().unwrap().to_owned();
        server
    }

    /// The first log line (from the start) whose message is `message`.
    fn wait_log(&mut self, message: &str, timeout: Duration) -> Value {
        let matches = |line: &str| serde_json::from_str::<Value>(line).ok().filter(|v| v["fields"]["message"] == message);
        if let Some(v) = self.seen.iter().find_map(|l| matches(l)) {
            return v;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let line = self
                .logs
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {message:?} in the log: {:#?}", self.seen));
            self.seen.push(line.clone());
            if let Some(v) = matches(&line) {
                return v;
            }
        }
    }

    /// Every log line so far, after a moment for late ones.
    fn log_lines(&mut self) -> &[String] {
        std::thread::sleep(Duration::from_millis(200));
        self.seen.extend(self.logs.try_iter());
        &self.seen
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.seen.extend(self.logs.try_iter());
            for line in &self.seen {
                eprintln!("server: {line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Without `--host` the server listens on loopback only, and says nothing
/// about being open there; bound to every interface with no keys, it warns.
#[test]
fn the_default_host_is_loopback_and_an_open_public_bind_warns() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let mut server = Server::start(&["--index", &index], &[]);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    let warned = |lines: &[String]| lines.iter().any(|l| l.contains("\"WARN\"") && l.contains("beyond loopback"));
    assert!(!warned(server.log_lines()), "{:#?}", server.seen);

    let mut public = Server::start(&["--index", &index, "--host", "0.0.0.0"], &[]);
    assert!(public.addr.starts_with("0.0.0.0:"), "{}", public.addr);
    assert!(warned(public.log_lines()), "{:#?}", public.seen);
    // The environment variable says the same as the flag.
    let mut by_env = Server::start(&["--index", &index], &[("VECTORWISE_HOST", "0.0.0.0")]);
    assert!(by_env.addr.starts_with("0.0.0.0:") && warned(by_env.log_lines()), "{:#?}", by_env.seen);
}
