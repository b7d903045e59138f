//! Serving connections: the accept loop, with the limits that keep a few
//! hundred idle or slow sockets from denying service and a stuck client from
//! holding shutdown.
//!
//! - **Header timeout** (`header_timeout`): a client has this long to send a
//!   request's headers, counted from the connection's opening or the end of
//!   its previous response, so it also closes idle keep-alive connections
//!   (hyper's HTTP/1 header-read timer starts when the server waits for a head).
//! - **Connection cap** (`max_connections`): past it, the connection idle the
//!   longest (no request in flight: a keep-alive or a slowloris socket) is
//!   closed to make room; when every connection has a request in flight, the
//!   new one gets a 503 and is closed. A connection serving a request is never
//!   evicted.
//! - **Accept errors** (out of file descriptors): an idle connection is
//!   closed to free one, the loop backs off (10 ms doubling to 1 s) and logs
//!   at most once a second.
//! - **Shutdown**: stop accepting, serve what is already in the accept queue,
//!   answer every request already received (keep-alive connections close after
//!   their response), close idle connections, and return by `shutdown_timeout`
//!   whatever clients do. A connection that has not begun its first request
//!   when the signal comes gets [`FIRST_REQUEST_GRACE`] (at most the header
//!   timeout) to deliver it: hyper's own graceful shutdown closes a connection
//!   it has read nothing from, even when the request already sits in the
//!   socket (accepted just before the signal, its task not yet run).
//! - Half-closed clients (request sent, write side shut) still get their
//!   response.
//!
//! - **TLS** ([`serve_tls`]): the handshake runs on the connection's task
//!   within `header_timeout` (a socket that never finishes it is closed like
//!   one that never sends a head), the connection counting against the cap
//!   (and evictable) from its first byte; past the cap a TLS connection is
//!   closed without the plaintext 503.
//!
//! Plain TCP is HTTP/1.1 only: a version-sniffing server (HTTP/2 prior
//! knowledge) reads the first bytes before any header timer runs, so a
//! socket that sends nothing would be held until the client gives up. Over
//! TLS, HTTP/2 is served when the client offers it by ALPN (the protocol is
//! known from the handshake, no sniffing). hyper's HTTP/2 has no header-read
//! timer, so an HTTP/2 connection with no request in flight for
//! `header_timeout` (idle, or stuck in a header block) is closed here; at
//! most 128 concurrent streams, 64 KiB of headers, pings detect dead peers.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use crate::tls::Tls;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Connection limits (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// The body of the 503 a connection past the cap gets.
const FULL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 47\r\n\r\n{\"detail\":\"Too many connections, retry later\"}";

/// One open connection, as the cap sees it.
#[derive(Debug)]
struct Entry {
    /// Requests in flight on it.
    busy: Arc<AtomicUsize>,
    /// When it last started or finished a request (ms since the server started).
    last_active: Arc<AtomicU64>,
    /// Closes it when notified.
    evict: Arc<Notify>,
}

/// Every open connection.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Entry>,
}

impl Registry {
    /// Closes the connection idle the longest; false when every one is busy.
    fn evict_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, e)| e.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, e)| e.last_active.load(Ordering::Relaxed))
            .map(|(&id, _)| id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(e) => {
                e.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see
/// the module doc). Returns once every connection is closed or the shutdown
/// deadline passed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run(listener, app, limits, None, shutdown).await
}

/// [`serve`] over TLS: HTTP/2 or HTTP/1.1 as the client's ALPN offer says.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Arc<Tls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run(listener, app, limits, Some(tls), shutdown).await
}

async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let started = Instant::now();
    let registry = Arc::new(Mutex::new(Registry::default()));
    // Every connection task holds a receiver: the signal reaches them all,
    // and `closed()` completes when the last one has ended.
    let (stop, stopping) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).half_close(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_BYTES)
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let accept = Accept {
        registry: &registry,
        stopping,
        builder: &builder,
        h2: &h2,
        app: &app,
        limits,
        started,
        tls: tls.as_deref(),
    };
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    accept.connection(stream, peer, true);
                }
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a connection reset
                    // in the queue: free an idle connection, wait, go on.
                    registry.lock().evict_idle();
                    backoff.wait(&e).await;
                }
            },
        }
    }
    // What was already in the accept queue when the signal came is served
    // too: accepted by the system call until it would block (the runtime's
    // readiness flag may not have seen the latest arrivals yet).
    let listener = listener.into_std()?;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => match stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
                Ok(stream) => accept.connection(stream, peer, false),
                Err(e) => tracing::warn!(error = %e, "a queued connection could not be served"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "accept failed while draining");
                break;
            }
        }
    }
    drop(listener);
    drop(accept);
    tracing::info!(
        connections = registry.lock().open.len(),
        deadline_s = limits.shutdown_timeout.as_secs_f64(),
        "draining"
    );
    stop.send_replace(true);
    if tokio::time::timeout(limits.shutdown_timeout, stop.closed()).await.is_err() {
        tracing::warn!(
            connections = registry.lock().open.len(),
            "shutdown deadline passed: closing the connections still open"
        );
    }
    Ok(())
}

/// HTTP/2 limits (see the module doc).
const H2_MAX_STREAMS: u32 = 128;
const H2_MAX_HEADER_BYTES: u32 = 64 * 1024;
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What the accept loop hands each new connection.
struct Accept<'a> {
    registry: &'a Arc<Mutex<Registry>>,
    stopping: watch::Receiver<bool>,
    builder: &'a http1::Builder,
    h2: &'a http2::Builder<TokioExecutor>,
    app: &'a Router,
    limits: ConnectionLimits,
    started: Instant,
    tls: Option<&'a Tls>,
}

impl Accept<'_> {
    /// Registers `stream` (evicting an idle connection past the cap, or
    /// refusing it, with a 503 on plain TCP, when none is idle) and serves it
    /// on a task. `keep_alive` false: one request, then close (while draining).
    fn connection(&self, stream: TcpStream, peer: SocketAddr, keep_alive: bool) {
        let now_ms = || self.started.elapsed().as_millis() as u64;
        let entry = Entry {
            busy: Arc::new(AtomicUsize::new(0)),
            last_active: Arc::new(AtomicU64::new(now_ms())),
            evict: Arc::new(Notify::new()),
        };
        let (busy, last_active, evict) = (entry.busy.clone(), entry.last_active.clone(), entry.evict.clone());
        let first = Arc::new(FirstRequest::default());
        let id = {
            let mut registry = self.registry.lock();
            if registry.open.len() >= self.limits.max_connections && !registry.evict_idle() {
                drop(registry);
                if self.tls.is_none() {
                    // Best effort: the socket is new and its buffer empty.
                    let _ = stream.try_write(FULL_RESPONSE);
                }
                tracing::warn!(max = self.limits.max_connections, "connection refused: every connection is busy");
                return;
            }
            registry.next += 1;
            let id = registry.next;
            registry.open.insert(id, entry);
            id
        };
        let _ = stream.set_nodelay(true);
        let app = self.app.clone();
        let started = self.started;
        let idle = Idle { busy: busy.clone(), last_active: last_active.clone(), started, limit: self.limits.header_timeout };
        let began = first.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            began.began();
            let guard = BusyGuard::new(busy.clone(), last_active.clone(), started);
            // The client's address: anonymous callers' rate budgets are by address.
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await;
                drop(guard);
                response
            }
        });
        let mut h1 = self.builder.clone();
        h1.keep_alive(keep_alive);
        let h2 = self.h2.clone();
        let acceptor = self.tls.map(Tls::acceptor);
        let handshake_timeout = self.limits.header_timeout;
        let drain = Drain { stopping: self.stopping.clone(), first, grace: FIRST_REQUEST_GRACE.min(handshake_timeout) };
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let served = async move {
                let Some(acceptor) = acceptor else {
                    let connection = h1.serve_connection(TokioIo::new(stream), service);
                    return ended(drain.run(connection, |c| c.graceful_shutdown()).await);
                };
                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!("TLS handshake timed out"),
                };
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let connection = h2.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        result = drain.run(connection, |c| c.graceful_shutdown()) => ended(result),
                        () = idle.elapsed() => tracing::debug!("idle HTTP/2 connection closed"),
                    }
                } else {
                    let connection = h1.serve_connection(TokioIo::new(stream), service);
                    ended(drain.run(connection, |c| c.graceful_shutdown()).await);
                }
            };
            tokio::select! {
                () = served => {}
                () = evict.notified() => tracing::debug!("idle connection closed to make room"),
            }
            registry.lock().open.remove(&id);
        });
    }
}

/// How long a connection that has not begun its first request when the
/// shutdown signal comes is given to deliver it (capped by the header timeout).
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Whether a connection's first request has begun.
#[derive(Debug, Default)]
struct FirstRequest {
    seen: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn began(&self) {
        if !self.seen.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    fn seen(&self) -> bool {
        self.seen.load(Ordering::Acquire)
    }
}

/// A connection's part in shutdown (see the module doc).
struct Drain {
    stopping: watch::Receiver<bool>,
    first: Arc<FirstRequest>,
    grace: Duration,
}

impl Drain {
    /// Runs `connection`; once the shutdown signal comes (and its first
    /// request has begun, or the grace passed) asks it to finish what it
    /// serves and close, by `shut`. The receiver is held until the connection
    /// ends: the server's drain waits for every one.
    async fn run<C, T>(mut self, connection: C, shut: impl FnOnce(std::pin::Pin<&mut C>)) -> T
    where
        C: Future<Output = T>,
    {
        tokio::pin!(connection);
        tokio::select! {
            out = &mut connection => return out,
            // An error means the server is gone: shut down as well.
            _ = self.stopping.wait_for(|stop| *stop) => {}
        }
        if !self.first.seen() {
            tokio::select! {
                out = &mut connection => return out,
                () = self.first.notify.notified() => {}
                () = tokio::time::sleep(self.grace) => {}
            }
        }
        shut(connection.as_mut());
        connection.await
    }
}

fn ended(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A connection's idleness, for HTTP/2 (HTTP/1 has hyper's header timer).
struct Idle {
    busy: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    started: Instant,
    limit: Duration,
}

impl Idle {
    /// Completes once the connection has had no request in flight for `limit`.
    async fn elapsed(self) {
        let limit = self.limit.as_millis() as u64;
        loop {
            let since = (self.started.elapsed().as_millis() as u64).saturating_sub(self.last_active.load(Ordering::Relaxed));
            let busy = self.busy.load(Ordering::Acquire) > 0;
            if !busy && since >= limit {
                return;
            }
            let wait = if busy { limit } else { limit - since };
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    }
}

/// Marks a connection busy while a request is in flight.
struct BusyGuard {
    busy: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    started: Instant,
}

impl BusyGuard {
    fn new(busy: Arc<AtomicUsize>, last_active: Arc<AtomicU64>, started: Instant) -> Self {
        busy.fetch_add(1, Ordering::AcqRel);
        last_active.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        BusyGuard { busy, last_active, started }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.last_active.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accept-error backoff: 10 ms doubling to 1 s, one log line a second.
#[derive(Debug, Default)]
struct Backoff {
    delay: Option<Duration>,
    logged: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    fn reset(&mut self) {
        self.delay = None;
    }

    async fn wait(&mut self, error: &std::io::Error) {
        let delay = self.delay.map_or(Duration::from_millis(10), |d| (d * 2).min(Duration::from_secs(1)));
        self.delay = Some(delay);
        if self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(error = %error, suppressed = self.suppressed, backoff_ms = delay.as_millis() as u64, "accept failed");
            self.logged = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Requests already in the accept queue when the signal comes are
    /// answered, not closed unread. On a current-thread runtime the signal is
    /// seen before any connection task runs: hyper's graceful shutdown alone
    /// would close every one of them before reading its request.
    #[test]
    fn requests_queued_before_the_signal_are_answered() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let clients: Vec<std::net::TcpStream> = (0..16)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
                s
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = TcpListener::from_std(std_listener).unwrap();
            let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
            let limits = ConnectionLimits { shutdown_timeout: Duration::from_secs(5), ..ConnectionLimits::default() };
            serve(listener, app, limits, std::future::ready(())).await.unwrap();
        });
        for mut client in clients {
            let mut response = String::new();
            client.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
            assert!(response.ends_with("ok"), "{response:?}");
        }
    }
}
