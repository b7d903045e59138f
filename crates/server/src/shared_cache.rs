//! The shared cache tier: answers kept in Redis (`--cache-url`,
//! `VECTORWISE_CACHE_URL`) for every replica that names the same Redis,
//! behind the in-process tier (see `cache.rs` for the lookup order and for
//! what makes a shared key exact across processes).
//!
//! **Never slower, never down because of Redis.** Every lookup has a short
//! timeout (`--cache-timeout-ms`, default 5 ms); an error, a timeout or a
//! value that does not decode is a miss, counted, and logged at warn at most
//! once every [`WARN_EVERY`] (with the number of failures in between). A
//! broken connection (refused, reset, closed), or [`STREAK`] failures in a
//! row (timeouts: Redis or this machine is overloaded), drops the connection
//! and skips the tier for [`BACKOFF`]: while Redis is down a search pays
//! nothing for it; a single late answer (a scheduling hiccup) costs one miss,
//! not a second of misses. Connecting happens in a spawned task (a
//! lookup finding no connection is a miss and starts one), so a server
//! starts and serves with Redis down and uses it once it is back (the
//! connection attempt and a write may take the longer of 50 ms and ten
//! times the timeout: nobody waits for them). Writes are spawned as the
//! response is made, with a TTL (`--cache-ttl-seconds`, default 600): Redis's
//! memory is bounded by its own policy and the TTL.
//!
//! **Values.** `SET vw:<xxh3-128 of the key, hex> <value> PX <ttl>`, the
//! value:
//!
//! ```text
//! "VWC" 1          magic and encoding version
//! u32 n, n bytes   the whole canonical key (compared on read: another key is a miss)
//! u64              nanoseconds the search took
//! u16 h            headers, each: u16 n, name; u32 n, value
//! u32 n, n bytes   the response body
//! u64              xxh3-64 of every byte before it
//! ```
//!
//! little-endian; a value that is short, long, of another version, with a
//! bad checksum or header, or for another key is a miss, never an error.

use crate::cache::{Answer, Key};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default `--cache-timeout-ms`: the longest a Redis command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);
/// Default `--cache-ttl-seconds`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// How long the tier is skipped after a broken connection or [`STREAK`]
/// failures in a row.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);
/// Failures in a row (timeouts) that count as Redis being unusable.
const STREAK: u32 = 3;
/// At most one warning per this.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Redis keys' prefix.
const PREFIX: &str = "vw:";
/// Largest key (canonical bytes: the query and the filter) kept in Redis.
pub(crate) const MAX_SHARED_KEY: usize = 64 << 10;
/// Largest answer body kept in Redis (read back well within a 5 ms lookup on
/// a LAN).
pub(crate) const MAX_SHARED_BODY: usize = 256 << 10;
const MAGIC: &[u8; 4] = b"VWC\x01";

/// What `/stats` and `/metrics` show of the shared tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SharedStats {
    pub configured: bool,
    pub connected: bool,
    pub hits: u64,
    pub misses: u64,
    /// Errors and timeouts (lookups, writes, connection attempts).
    pub errors: u64,
    /// Values found under a key's Redis key that did not decode or were for
    /// another key (counted as misses too).
    pub rejected: u64,
    pub writes: u64,
    /// Answers kept in memory only: their key or body over the shared bounds.
    pub skipped: u64,
}

/// The Redis tier.
pub(crate) struct SharedTier {
    client: redis::Client,
    timeout: Duration,
    connect_timeout: Duration,
    ttl: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: AtomicBool,
    /// Failures since the last success.
    streak: std::sync::atomic::AtomicU32,
    /// Skip Redis until then (after a failure).
    retry_at: Mutex<Option<Instant>>,
    /// The last warning, and the failures not logged since.
    warned: Mutex<Option<Instant>>,
    unlogged: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    writes: AtomicU64,
    skipped: AtomicU64,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier").field("timeout", &self.timeout).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Checks a `--cache-url` (`redis://host:port[/db]`); the message says why not.
pub fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with("redis://") {
        return Err("the cache URL must be redis://host:port[/db]".into());
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| format!("bad cache URL: {e}"))
}

impl SharedTier {
    pub(crate) fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<SharedTier, String> {
        check_url(url)?;
        let client = redis::Client::open(url).map_err(|e| format!("bad cache URL: {e}"))?;
        Ok(SharedTier {
            client,
            timeout,
            // Off the request path: may take longer than a command.
            connect_timeout: (timeout * 10).max(Duration::from_millis(50)),
            ttl: ttl.max(Duration::from_millis(1)),
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            streak: std::sync::atomic::AtomicU32::new(0),
            retry_at: Mutex::new(None),
            warned: Mutex::new(None),
            unlogged: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> SharedStats {
        SharedStats {
            configured: true,
            connected: self.conn.lock().is_some(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn in_backoff(&self) -> bool {
        self.retry_at.lock().is_some_and(|t| Instant::now() < t)
    }

    /// The connection, when there is one and the tier is not backing off;
    /// else starts connecting (in a task) and answers `None`.
    fn connection(self: &Arc<Self>) -> Option<MultiplexedConnection> {
        if self.in_backoff() {
            return None;
        }
        if let Some(c) = self.conn.lock().clone() {
            return Some(c);
        }
        self.connect();
        None
    }

    /// Connects in a spawned task (one at a time; none outside a runtime).
    fn connect(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let tier = Arc::clone(self);
        runtime.spawn(async move {
            // No response timeout of the connection's own: each command has
            // its own (a lookup's is short, a write's longer).
            let config =
                redis::AsyncConnectionConfig::new().set_connection_timeout(Some(tier.connect_timeout)).set_response_timeout(None);
            let attempt =
                tokio::time::timeout(tier.connect_timeout * 2, tier.client.get_multiplexed_async_connection_with_config(&config))
                    .await;
            match attempt {
                Ok(Ok(conn)) => {
                    *tier.conn.lock() = Some(conn);
                    *tier.retry_at.lock() = None;
                    tier.streak.store(0, Ordering::Relaxed);
                    tracing::info!("connected to the shared cache (Redis)");
                }
                Ok(Err(e)) => tier.failed("connect", &e.to_string(), true),
                Err(_) => tier.failed("connect", "timed out", true),
            }
            tier.connecting.store(false, Ordering::Release);
        });
    }

    /// A command failed: counted, logged at most once every [`WARN_EVERY`];
    /// when `broken` (the connection is) or after [`STREAK`] failures in a
    /// row, the connection is dropped and a new one made after [`BACKOFF`].
    fn failed(&self, what: &str, error: &str, broken: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        if broken || streak >= STREAK {
            *self.conn.lock() = None;
            *self.retry_at.lock() = Some(Instant::now() + BACKOFF);
        }
        let now = Instant::now();
        let mut warned = self.warned.lock();
        if warned.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *warned = Some(now);
            let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
            drop(warned);
            tracing::warn!(
                operation = what, error, failures_not_logged = unlogged,
                "the shared cache (Redis) failed: served without it for now"
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The answer kept under `key` in Redis, or `None` (a miss: absent,
    /// unreachable, slow, garbled or another key's).
    pub(crate) async fn get(self: &Arc<Self>, key: &Key) -> Option<Answer> {
        let Some(mut conn) = self.connection() else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let mut get = redis::cmd("GET");
        get.arg(redis_key(key));
        let command = get.query_async::<Option<Vec<u8>>>(&mut conn);
        let found = match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(found)) => {
                self.streak.store(0, Ordering::Relaxed);
                found
            }
            Ok(Err(e)) => {
                self.failed("get", &e.to_string(), is_broken(&e));
                None
            }
            Err(_) => {
                self.failed("get", "timed out", false);
                None
            }
        };
        let answer = found.and_then(|bytes| {
            let answer = decode(&bytes, key);
            if answer.is_none() {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
            answer
        });
        let counter = if answer.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    /// Keeps `answer` under `key` in Redis, in a spawned task (off the
    /// response path); a failure is counted and logged, nothing more.
    pub(crate) fn put(self: &Arc<Self>, key: Key, answer: Arc<Answer>) {
        // Large keys (a long filter) or answers stay in memory only: they
        // would let one client fill Redis, and reading them back would take
        // longer than a lookup may (timeouts that switch the tier off for
        // every client of this replica).
        if key.bytes().len() > MAX_SHARED_KEY || answer.body.len() > MAX_SHARED_BODY {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let Some(mut conn) = self.connection() else { return };
        let tier = Arc::clone(self);
        runtime.spawn(async move {
            let value = encode(&key, &answer);
            let ttl_ms = u64::try_from(tier.ttl.as_millis()).unwrap_or(u64::MAX);
            let mut set = redis::cmd("SET");
            set.arg(redis_key(&key)).arg(value).arg("PX").arg(ttl_ms);
            let command = set.query_async::<()>(&mut conn);
            // Off the response path: the longer timeout of a connection.
            match tokio::time::timeout(tier.connect_timeout, command).await {
                Ok(Ok(())) => {
                    tier.writes.fetch_add(1, Ordering::Relaxed);
                    tier.streak.store(0, Ordering::Relaxed);
                }
                Ok(Err(e)) => tier.failed("set", &e.to_string(), is_broken(&e)),
                Err(_) => tier.failed("set", "timed out", false),
            }
        });
    }
}

/// Whether `e` means the connection is gone (not merely a slow or refused
/// command: a timeout is an I/O error of kind `TimedOut` to the crate).
fn is_broken(e: &redis::RedisError) -> bool {
    !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error())
}

/// `vw:` and the key's xxh3-128, hex (the value holds the whole key).
pub(crate) fn redis_key(key: &Key) -> String {
    format!("{PREFIX}{:032x}", xxhash_rust::xxh3::xxh3_128(key.bytes()))
}

/// A kept answer's value (see the module doc).
pub(crate) fn encode(key: &Key, a: &Answer) -> Vec<u8> {
    let k = key.bytes();
    let mut b = Vec::with_capacity(64 + k.len() + a.body.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(k.len() as u32).to_le_bytes());
    b.extend_from_slice(k);
    b.extend_from_slice(&u64::try_from(a.took.as_nanos()).unwrap_or(u64::MAX).to_le_bytes());
    // Headers are few and short (the engine's own); any that would not fit
    // the format is left out of the value rather than truncated.
    let headers: Vec<_> = a.headers.iter().filter(|(n, v)| n.as_str().len() <= usize::from(u16::MAX) && v.len() <= u32::MAX as usize).collect();
    b.extend_from_slice(&(headers.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    for (name, value) in headers.into_iter().take(usize::from(u16::MAX)) {
        b.extend_from_slice(&(name.as_str().len() as u16).to_le_bytes());
        b.extend_from_slice(name.as_str().as_bytes());
        b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        b.extend_from_slice(value.as_bytes());
    }
    b.extend_from_slice(&(a.body.len() as u32).to_le_bytes());
    b.extend_from_slice(&a.body);
    let sum = xxhash_rust::xxh3::xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// The answer a value holds for `key`, or `None` when the value is not a
/// whole, intact value of this encoding for exactly this key.
pub(crate) fn decode(bytes: &[u8], key: &Key) -> Option<Answer> {
    let (content, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if xxhash_rust::xxh3::xxh3_64(content) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(content);
    if r.take(4)? != MAGIC {
        return None;
    }
    let n = r.u32()? as usize;
    if r.take(n)? != key.bytes() {
        return None;
    }
    let took = Duration::from_nanos(r.u64()?);
    let count = r.u16()?;
    let mut headers = HeaderMap::with_capacity(usize::from(count));
    for _ in 0..count {
        let n = usize::from(r.u16()?);
        let name = HeaderName::from_bytes(r.take(n)?).ok()?;
        let n = r.u32()? as usize;
        let value = HeaderValue::from_bytes(r.take(n)?).ok()?;
        headers.append(name, value);
    }
    let n = r.u32()? as usize;
    let body = Bytes::copy_from_slice(r.take(n)?);
    if !r.0.is_empty() {
        return None;
    }
    Some(Answer { headers, body, took })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert("x-vectorwise-method", HeaderValue::from_static("hnsw"));
        headers.insert("x-vectorwise-setting", HeaderValue::from_static("ef=64"));
        Answer { headers, body: Bytes::from_static(b"{\"hits\":[]}"), took: Duration::from_micros(1234) }
    }

    #[test]
    fn a_value_round_trips_and_anything_else_is_refused() {
        let key = Key::from_bytes(b"one key");
        let a = answer();
        let value = encode(&key, &a);
        let back = decode(&value, &key).unwrap();
        assert_eq!((back.headers, back.body, back.took), (a.headers.clone(), a.body.clone(), a.took));
        // Another key (a hash collision of Redis keys): a miss.
        assert!(decode(&value, &Key::from_bytes(b"another key")).is_none());
        // Every truncation, every single flipped byte, and extra bytes.
        for n in 0..value.len() {
            assert!(decode(&value[..n], &key).is_none(), "cut at {n}");
            let mut bad = value.clone();
            bad[n] ^= 0x55;
            assert!(decode(&bad, &key).is_none(), "byte {n} flipped");
        }
        let mut long = value.clone();
        long.push(0);
        assert!(decode(&long, &key).is_none());
        // Random bytes never panic.
        let mut x = 1u64;
        for len in 0..200 {
            let noise: Vec<u8> = (0..len).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }).collect();
            assert!(decode(&noise, &key).is_none());
        }
        assert!(redis_key(&key).starts_with("vw:") && redis_key(&key).len() == 3 + 32);
        assert_ne!(redis_key(&key), redis_key(&Key::from_bytes(b"another key")));
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("http://127.0.0.1:6379").is_err());
        assert!(check_url("redis://127.0.0.1:notaport").is_err());
    }
}
