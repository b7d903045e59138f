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
    let warned = |lines: &[String]| lines.iter().any(|l| l.contains("\"WARN\"") && l.contains("beyond loopback with no API keys"));
    assert!(!warned(server.log_lines()), "{:#?}", server.seen);

    let mut public = Server::start(&["--index", &index, "--host", "0.0.0.0"], &[]);
    assert!(public.addr.starts_with("0.0.0.0:"), "{}", public.addr);
    assert!(warned(public.log_lines()), "{:#?}", public.seen);
    // The environment variable says the same as the flag.
    let mut by_env = Server::start(&["--index", &index], &[("VECTORWISE_HOST", "0.0.0.0")]);
    assert!(by_env.addr.starts_with("0.0.0.0:") && warned(by_env.log_lines()), "{:#?}", by_env.seen);
}

/// One keep-alive HTTP/1.1 connection: requests written by hand, answers
/// read by their `content-length`.
struct Conn {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn { stream, buf: Vec::new() }
    }

    /// `method path` with `headers`; the status, the headers (lowercase
    /// names) and the body. Panics if the server closed the connection.
    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Vec<(String, String)>, String) {
        use std::io::{Read, Write};
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).unwrap();
        self.stream.write_all(body.as_bytes()).unwrap();
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let mut lines = text.split("\r\n");
        let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        while self.buf.len() < end + length {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection mid-body");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(self.buf[end..end + length].to_vec()).unwrap();
        self.buf.drain(..end + length);
        (status, headers, body)
    }

    fn status(&mut self, path: &str, key: &str) -> u16 {
        self.send("GET", path, &[("authorization", &format!("Bearer {key}"))], "").0
    }
}

fn keys_cli(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command().arg("keys").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `keys new` prints a fresh key and a keys-file line holding its hash;
/// `keys hash` gives the same hash (or the same line) for that key; short
/// keys and bad names are refused.
#[test]
fn keys_new_and_hash_agree() {
    let out = keys_cli(&["new", "--name", "ci", "--role", "write", "--collections", "docs,faq"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let key = lines[0];
    assert!(key.starts_with("vw_") && key.len() == 43, "{key}");
    let line: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(line["name"], "ci");
    assert_eq!(line["role"], "write");
    assert_eq!(line["collections"], serde_json::json!(["docs", "faq"]));
    assert!(!lines[1].contains(key), "the file line never holds the key");

    let hashed = keys_cli(&["hash"], &format!("{key}\n"));
    assert!(hashed.status.success());
    assert_eq!(String::from_utf8(hashed.stdout).unwrap().trim(), line["sha256"].as_str().unwrap());
    let full = keys_cli(&["hash", "--name", "ci", "--role", "write", "--collections", "docs,faq"], key);
    assert_eq!(String::from_utf8(full.stdout).unwrap().trim(), lines[1]);
    // A known vector: sha256("0123456789abcdef").
    let known = keys_cli(&["hash"], "0123456789abcdef");
    assert_eq!(String::from_utf8(known.stdout).unwrap().trim(), "9f9f5111f7b27a781f1f1ddde5ebc2dd2b796bfc7365c9c28b548e564176929f");
    // A second key is another key.
    let again = keys_cli(&["new", "--name", "ci", "--role", "write"], "");
    assert_ne!(String::from_utf8(again.stdout).unwrap().lines().next(), Some(key));

    for (args, stdin, says) in [
        (&["hash"][..], "short\n", "at least 16"),
        (&["new", "--name", "a b", "--role", "read"][..], "", "--name"),
        (&["new", "--name", "a", "--role", "root"][..], "", "root"),
        (&["new", "--name", "a", "--role", "read", "--collections", "a/b"][..], "", "a/b"),
    ] {
        let out = keys_cli(args, stdin);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A keys-file line for `secret`.
fn line(name: &str, role: &str, secret: &str) -> String {
    let out = keys_cli(&["hash", "--name", name, "--role", role], secret);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// SIGHUP reads the keys file again, in a running server, without closing
/// connections: on one keep-alive connection opened before, the old key
/// turns 401 and the new one 200. A bad file on reload keeps the keys in
/// force and logs why.
#[test]
fn sighup_reloads_the_keys_file_and_keeps_connections() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let file = dir.path().join("keys.jsonl");
    let (old, new) = ("old-key-0123456789abc", "new-key-0123456789abc");
    std::fs::write(&file, format!("# the first key\n{}", line("first", "read", old))).unwrap();
    let mut server = Server::start(&["--index", &index, "--api-keys-file", file.to_str().unwrap()], &[]);
    server.wait_log("API keys required (except for / and the docs)", Duration::from_secs(5));
    let mut conn = Conn::open(&server.addr);
    assert_eq!(conn.status("/stats", old), 200);
    assert_eq!(conn.status("/stats", new), 401);
    assert_eq!(conn.send("GET", "/", &[], "").0, 200, "health stays open");

    // Replace the file (as an operator's tool would: write, rename) and signal.
    let staged = dir.path().join("keys.jsonl.new");
    std::fs::write(&staged, line("second", "read", new)).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let reloaded = server.wait_log("API keys reloaded", Duration::from_secs(10));
    assert_eq!(reloaded["fields"]["keys"], 1);
    assert_eq!(conn.status("/stats", old), 401, "the old key is gone");
    assert_eq!(conn.status("/stats", new), 200, "the new key works on the connection opened before");
    assert_eq!(Conn::open(&server.addr).status("/stats", new), 200);

    // A bad file: the keys in force stay, the log says why.
    std::fs::write(&file, "{\"name\": \"x\", \"role\": \"read\"}\n").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let refused = server.wait_log("API keys not reloaded: the previous keys stay in force", Duration::from_secs(10));
    assert!(refused["fields"]["error"].as_str().unwrap().contains("line 1"), "{refused}");
    assert_eq!(conn.status("/stats", new), 200);
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
    // The access log names the key, never the key itself.
    let lines = server.log_lines();
    assert!(lines.iter().any(|l| l.contains("\"key\":\"second\"")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(new) || l.contains(old)), "a key in the log");
}

/// One admin key from the environment; `--help` does not show it; a short
/// one, or a broken keys file, stops the start with the reason.
#[test]
fn an_admin_key_from_the_environment_and_bad_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let admin = "env-admin-key-0123456789";
    let server = Server::start(&["--index", &index, "--host", "0.0.0.0"], &[("VECTORWISE_API_KEY", admin)]);
    let addr = server.addr.replace("0.0.0.0", "127.0.0.1");
    let mut conn = Conn::open(&addr);
    assert_eq!(conn.status("/stats", admin), 200);
    let create = |conn: &mut Conn, key: Option<&str>| {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        conn.send("PUT", "/collections/docs", &headers, "{\"dimension\": 4}")
    };
    let (status, headers, body) = create(&mut conn, None);
    assert_eq!(status, 401, "{body}");
    assert!(headers.contains(&("www-authenticate".into(), "Bearer".into())), "{headers:?}");
    // Refused unread, the body would block the connection: it is closed.
    assert!(headers.contains(&("connection".into(), "close".into())), "{headers:?}");
    assert_eq!(create(&mut Conn::open(&addr), Some("wrong-key-0123456789")).0, 401);
    assert_eq!(create(&mut Conn::open(&addr), Some(admin)).0, 201);
    let mut server = server;
    let lines = server.log_lines();
    assert!(!lines.iter().any(|l| l.contains("with no API keys")), "keys configured: no open-server warning");
    assert!(lines.iter().any(|l| l.contains("API keys over plain HTTP beyond loopback")), "{lines:#?}");

    // `bench --url` sends the key it is given.
    let vectors = dir.path().join("v.npy");
    let bench = |key: Option<&str>| {
        let mut cmd = command();
        cmd.args(["bench", "--url", &format!("http://{addr}"), "--queries", "20", "--vectors"]).arg(&vectors);
        if let Some(k) = key {
            cmd.args(["--api-key", k]);
        }
        cmd.output().unwrap()
    };
    let out = bench(Some(admin));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!bench(None).status.success(), "a keyed server answers bench without a key");

    let help = command().args(["serve", "--help"]).env("VECTORWISE_API_KEY", admin).output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(admin), "--help shows the key");

    let keys = dir.path().join("bad.jsonl");
    std::fs::write(&keys, "{\"name\": \"a\", \"role\": \"reader\", \"sha256\": \"00\"}\n").unwrap();
    for (args, env, says) in [
        (vec!["--api-key", "short"], vec![], "at least 16"),
        (vec![], vec![("VECTORWISE_METRICS_KEY", "short")], "VECTORWISE_METRICS_KEY"),
        (vec!["--api-keys-file", keys.to_str().unwrap()], vec![], "bad.jsonl, line 1"),
        (vec!["--api-keys-file", "/nonexistent/keys"], vec![], "/nonexistent/keys"),
        (vec!["--rate-limit-batch", "0"], vec![], "batch"),
    ] {
        let out = command()
            .args(["serve", "--index", &index, "--port", "0", "--data-dir"])
            .arg(dir.path().join("d"))
            .args(&args)
            .envs(env)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `--rate-limit-search` from the command line: past the budget a 429 with
/// `Retry-After`, then served again once that has passed.
#[test]
fn rate_limits_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let server = Server::start(&["--index", &index, "--rate-limit-search", "1"], &[]);
    let mut conn = Conn::open(&server.addr);
    let body = serde_json::json!({"query_vector": vec![0.5; 16], "k": 3}).to_string();
    let search = |conn: &mut Conn| conn.send("POST", "/search", &[("content-type", "application/json")], &body);
    assert_eq!(search(&mut conn).0, 200);
    let (status, headers, detail) = search(&mut conn);
    assert_eq!(status, 429, "{detail}");
    let retry: u64 = headers.iter().find(|(k, _)| k == "retry-after").unwrap().1.parse().unwrap();
    assert_eq!(retry, 1);
    assert!(detail.contains("too many searches"), "{detail}");
    // The refused body was not read: that connection closes.
    assert!(headers.contains(&("connection".into(), "close".into())), "{headers:?}");
    std::thread::sleep(Duration::from_secs(retry) + Duration::from_millis(100));
    assert_eq!(search(&mut Conn::open(&server.addr)).0, 200);
}

/// A self-signed certificate for localhost and 127.0.0.1, written as
/// `{name}.pem` and `{name}.key` in `dir`.
fn certificate(dir: &Path, name: &str) -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

fn health(url: &str, extra: &[&str]) -> std::process::Output {
    command().args(["health", "--url", url]).args(extra).output().unwrap()
}

/// The binary over TLS: `health` with the server's certificate trusted
/// (or checks off) gets healthy, without it fails; an API key works over
/// HTTPS; SIGHUP reads a new certificate for new connections; a bad
/// certificate stops the start naming the file.
#[test]
fn tls_from_the_command_line_and_its_reload() {
    let dir = tempfile::tempdir().unwrap();
    let index = small_index(dir.path());
    let (cert, key) = certificate(dir.path(), "live");
    let admin = "tls-admin-key-0123456789";
    let mut server =
        Server::start(&["--index", &index, "--tls-cert", &cert, "--tls-key", &key], &[("VECTORWISE_API_KEY", admin)]);
    assert_eq!(server.wait_log("listening", Duration::from_secs(1))["fields"]["tls"], true);
    let url = format!("https://{}", server.addr);
    let ok = health(&url, &["--ca-cert", &cert]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(!health(&url, &[]).status.success(), "an unknown issuer is refused");
    assert!(health(&url, &["--insecure"]).status.success());
    assert!(!health(&format!("http://{}", server.addr), &[]).status.success(), "no plain HTTP on the TLS port");

    // A key over HTTPS (ureq, HTTP/1.1), trusting the server's certificate.
    let pem = std::fs::read(&cert).unwrap();
    let roots: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i.unwrap() {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots))).build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().into();
    let stats = |key: &str| agent.get(format!("{url}/stats")).header("authorization", format!("Bearer {key}")).call().unwrap().status().as_u16();
    assert_eq!(stats(admin), 200);
    assert_eq!(stats("wrong-key-0123456789"), 401);

    // A new certificate, read on SIGHUP: new connections get it.
    let (cert2, key2) = certificate(dir.path(), "next");
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    server.wait_log("TLS certificate reloaded", Duration::from_secs(10));
    assert!(health(&url, &["--ca-cert", &cert2]).status.success());
    let old = dir.path().join("old.pem");
    std::fs::write(&old, &pem).unwrap();
    assert!(!health(&url, &["--ca-cert", old.to_str().unwrap()]).status.success(), "the old certificate is gone");
    // A broken certificate on reload keeps the one in force.
    std::fs::write(&cert, "broken").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    server.wait_log("TLS certificate not reloaded: the previous one stays in force", Duration::from_secs(10));
    assert!(health(&url, &["--ca-cert", &cert2]).status.success());

    let out = command()
        .args(["serve", "--index", &index, "--port", "0", "--tls-cert", &cert, "--tls-key", &key2, "--data-dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("live.pem"), "{stderr}");
    let out = command().args(["serve", "--index", &index, "--tls-cert", &cert]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
