//! TLS over a real socket: a self-signed certificate made by the test
//! (rcgen), the server's accept loop (`serve_tls`), and real clients:
//! reqwest (rustls) for HTTP/2 by ALPN and HTTP/1.1, raw TLS and TCP
//! sockets for the handshake timeout and the idle HTTP/2 connection.

mod common;

use common::{FIXTURE, row};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vectorwise_server::{ApiKey, AppState, ConnectionLimits, Keys, Role, ServerConfig, Tls, app, hash_key};

const KEY: &str = "tls-read-key-0123456789";

struct Served {
    addr: std::net::SocketAddr,
    /// The certificate clients trust (PEM).
    cert_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// `app` over TLS on 127.0.0.1, a certificate for `localhost` and 127.0.0.1.
async fn serve(header_timeout: Duration) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let tls = Arc::new(Tls::load(&cert, &key).unwrap());
    let state = AppState::with_index(ServerConfig::default(), Arc::clone(&FIXTURE.index));
    let keys = ApiKey { name: "reader".into(), role: Role::Read, sha256: hash_key(KEY.as_bytes()), collections: None };
    state.set_keys(Keys::required(vec![keys]).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ConnectionLimits { header_timeout, shutdown_timeout: Duration::from_secs(5), ..ConnectionLimits::default() };
    let task = tokio::spawn(vectorwise_server::serve_tls(listener, app(state), limits, tls, async move {
        let _ = stopped.await;
    }));
    Served { addr, cert_pem: made.cert.pem(), stop: Some(stop), task: Some(task), _dir: dir }
}

impl Served {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    fn client(&self, http1_only: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30));
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

async fn search(client: &reqwest::Client, url: String, key: Option<&str>) -> (reqwest::Version, u16, Value) {
    let mut request = client.post(url).json(&json!({"query_vector": row(3), "k": 5}));
    if let Some(k) = key {
        request = request.bearer_auth(k);
    }
    let response = request.send().await.unwrap();
    let (version, status) = (response.version(), response.status().as_u16());
    (version, status, response.json().await.unwrap())
}

/// A client offering HTTP/2 gets it; one that offers only HTTP/1.1 gets
/// that; both get the same answers, keys checked as over plain HTTP, and
/// many requests share one HTTP/2 connection at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_round_trip_over_http2_and_http1() {
    let served = serve(Duration::from_secs(10)).await;
    let h2 = served.client(false);
    let h1 = served.client(true);
    let health = h2.get(served.url("/")).send().await.unwrap();
    assert_eq!((health.version(), health.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    let (v2, s2, b2) = search(&h2, served.url("/search"), Some(KEY)).await;
    let (v1, s1, b1) = search(&h1, served.url("/search"), Some(KEY)).await;
    assert_eq!((v2, s2), (reqwest::Version::HTTP_2, 200), "{b2}");
    assert_eq!((v1, s1), (reqwest::Version::HTTP_11, 200), "{b1}");
    assert_eq!(b1, b2);
    assert_eq!(b2["indices"][0], 3, "a stored vector finds itself");
    let (v, status, body) = search(&h2, served.url("/search"), None).await;
    assert_eq!((v, status), (reqwest::Version::HTTP_2, 401), "{body}");
    // 32 requests at once on the one HTTP/2 connection.
    let all = futures_util::future::join_all((0..32).map(|_| search(&h2, served.url("/search"), Some(KEY)))).await;
    assert!(all.iter().all(|(v, s, b)| *v == reqwest::Version::HTTP_2 && *s == 200 && *b == b2));
    served.stop().await;
}

/// A client that does not trust the certificate gets no answer; a plain
/// HTTP request to the TLS port gets no HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_and_plaintext_clients_get_nothing() {
    let served = serve(Duration::from_secs(10)).await;
    let stranger = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).build().unwrap();
    let error = stranger.get(served.url("/")).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let mut plain = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut reply)).await.unwrap();
    assert!(!reply.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&reply));
    served.stop().await;
}

/// A socket that connects and never starts the handshake is closed after
/// the header timeout (1 s here), not held; the server still answers others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_at_the_handshake_timeout() {
    let served = serve(Duration::from_secs(1)).await;
    let start = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "not closed: {read:?}");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(8), "{waited:?}");
    let (_, status, _) = search(&served.client(false), served.url("/search"), Some(KEY)).await;
    assert_eq!(status, 200);
    served.stop().await;
}

/// An HTTP/2 connection that completes its handshake and preface, then
/// sends no request, is closed once idle for the header timeout (hyper's
/// HTTP/2 has no header timer of its own); the server's pings alone would
/// keep it for 20 s more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    let served = serve(Duration::from_secs(1)).await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(served.cert_pem.as_bytes()).unwrap()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The client preface and an empty SETTINGS frame; then nothing.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let start = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle HTTP/2 connection stayed open 10 s");
    assert!(start.elapsed() >= Duration::from_millis(900), "{:?}", start.elapsed());
    served.stop().await;
}
