//! The hot-query cache: the answers of recent searches (`POST /search`,
//! `POST /collections/{name}/search`), kept as the bytes of their response
//! body and their headers, bounded by memory (`--cache-bytes`), so that a
//! repeated search is answered without searching.
//!
//! **Exactness.** A [`Key`] names everything that decides an answer: the
//! response's shape, what was searched — the served index file (by its
//! generation in this process) or a collection (its incarnation and its
//! write version) — `k`, the planner's request (profile / recall target /
//! `ef_search`, after the server's default is applied), `with_payload`,
//! `with_vector`, the filter in a canonical form, and the query's exact
//! bytes. The write version is read *before* the search runs, and the store
//! bumps it only once a write is visible to searches and before the write
//! is acknowledged (`Collection::write_version`): an answer is kept under a
//! version that counts no write it does not reflect, and a search that
//! starts after a write's 200 reads a newer version, so it can never be
//! answered from before that write. A deleted and re-created collection is
//! another incarnation. Errors are never kept.
//!
//! The key is its canonical bytes; moka's map hashes them (SipHash, keyed
//! at random: no hash flooding) and compares them whole, so a hash
//! collision never returns another query's answer.
//!
//! **The shared tier** (`--cache-url`, `shared_cache.rs`): answers kept in
//! Redis for every replica. Lookup order: memory, then Redis (a Redis hit
//! fills memory), else search and keep in both (Redis off the response
//! path). A process counter means nothing to another process, so the shared
//! key names *contents* where the memory key names *this process's state*:
//!
//! - the served index file by [`vectorwise_index::Index::file_identity`]
//!   (xxh3-128 of its header, which holds its sizes, settings and the body's
//!   xxh3-64, checked at open): two files share it only by a checksum
//!   collision of two index builds, not something an operator's files meet
//!   by chance (the files are the operator's, not the clients');
//! - a collection by its [`vectorwise_store::StateId`]: a random uuid, the
//!   LSN of the last applied record, and a SHA-256 chained over every
//!   applied record's bytes from a start the uuid names (uuid and digest as
//!   of the manifest's `wal_from` kept in the collection's `state.json`,
//!   trusted only beside the manifest of that `wal_from`, so a reopen or a
//!   copy of the directory arrives at the same digest, and anything else —
//!   a crash between the two files, a restored snapshot, a directory an
//!   older build checkpointed — gets a fresh random uuid). The uuid and
//!   position alone would not do: copies of one directory that then take
//!   different writes reach the same position with different contents;
//!   their digests differ. Equal digests mean the same start and the same
//!   records in the same order (SHA-256 being collision-resistant), and a
//!   collection's contents are a function of those
//!   (`vectorwise_store::state` has the argument). Copies that took the
//!   same writes in another order, or restores of one snapshot, are not
//!   recognised as equal: a miss, never a wrong answer;
//! - the rest of the key as above, prefixed by the key format and the
//!   build's version (another version may answer in other bytes).
//!
//! One more rule holds the shared tier to the same exactness as memory: in
//! one process, an answer computed while a write was being applied may be
//! kept under the state read before it (every reader of that state is
//! concurrent with the write); another process at that state never saw the
//! write. So an answer goes to Redis only when the collection began no write
//! between the state read and the search's end
//! ([`vectorwise_store::Collection::writes_begun`] equals the state's
//! version: a write bumps it before it changes anything a search reads).
//! What the shared key does not name is the shape of the segments: two
//! replicas with the same contents may answer an approximate search in
//! other bytes (a segment sealed in one, not yet in the other); either is an
//! answer of those contents, as a memory hit across a seal already is.
//!
//! Redis keys are `vw:` and the xxh3-128 of the whole shared key; the value
//! holds the whole key and is compared on read, so a collision of Redis keys
//! is a miss, never another query's answer. A Redis error, a timeout, or a
//! value that does not decode is a miss (counted, logged at warn, rate-
//! limited): see `shared_cache.rs`.
//!
//! What a hit skips: the search, its permit of the pending-search bound and
//! the recall monitor (which samples searches that ran). What it does not
//! skip: authorization and rate limits (middleware before the handler), and
//! the request's validation. A hit repeats the headers of the search that
//! computed the answer (what ran to produce it), plus
//! `x-vectorwise-cache: hit` and `x-vectorwise-cache-tier: memory` or
//! `redis`.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use moka::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vectorwise_index::plan::SearchRequest;
use vectorwise_store::{Condition, Filter, MatchValue, StateId};
use crate::shared_cache::{SharedStats, SharedTier};

/// `hit` or `miss`: whether the answer came from the cache (absent when the
/// cache is off).
pub(crate) const HEADER: &str = "x-vectorwise-cache";

/// On a hit, which tier answered: `memory` (this process) or `redis` (the
/// shared tier).
pub(crate) const TIER_HEADER: &str = "x-vectorwise-cache-tier";

/// Default `--cache-bytes`: 64 MiB (about 57,000 answers of k = 10 to
/// 128-d queries).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// Bytes an entry costs beyond its key, body and headers (moka's node, the
/// `Arc`s, the header map), counted by the weigher so that the bound holds
/// for many small entries too; an estimate.
const ENTRY_OVERHEAD: usize = 256;

/// What a search answered on: a key part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The served index file, read directly (the pristine `default`);
    /// `generation` changes whenever another index is served (the memory
    /// tier's key), `file` names the file's contents (the shared tier's:
    /// [`vectorwise_index::Index::file_identity`]).
    Index { generation: u64, file: u128 },
    /// A collection in one state: its incarnation and `state.version` (the
    /// memory tier's key), `state`'s uuid, position and digest (the shared
    /// tier's: [`vectorwise_store::StateId`]).
    Collection { incarnation: u64, state: StateId },
}

impl Target {
    /// The collection's target as of now: read *before* the search runs.
    pub(crate) fn collection(c: &vectorwise_store::Collection) -> Target {
        Target::Collection { incarnation: c.incarnation(), state: c.state_id() }
    }

    /// Whether an answer computed on this target may be shared (called
    /// after the search ran): an index file does not change under a search;
    /// a collection must have begun no write since its state was read, or
    /// the answer may hold a write another process at that state lacks.
    pub(crate) fn unchanged(&self, c: Option<&vectorwise_store::Collection>) -> bool {
        match (self, c) {
            (Target::Index { .. }, _) => true,
            (Target::Collection { state, .. }, Some(c)) => c.writes_begun() == state.version,
            (Target::Collection { .. }, None) => false,
        }
    }
}

/// Which key a [`Key`] is: the memory tier's (process-local) or the shared
/// tier's (the same in every process whose contents are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Local,
    Shared,
    /// What a search costs: its target by identity, not contents (a
    /// collection's writes do not change the key), and not the vector.
    Cost,
}

/// A shared key's first bytes: the key and value encoding, and the build
/// (another version may answer in other bytes).
const SHARED_TAG: &str = concat!("vectorwise-shared-key-1 ", env!("CARGO_PKG_VERSION"));

/// The shape of the response body: a key part (the collection `default`
/// answers `/search` in the demo's shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `{"indices", "distances"}`.
    Demo,
    /// `{"hits": [...]}`.
    Hits,
}

/// One search, as the key sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Query<'a> {
    pub shape: Shape,
    pub target: Target,
    pub k: usize,
    /// The planner's request, the server's default already applied (so a
    /// request naming the default profile and one naming none share answers).
    pub request: SearchRequest,
    pub with_payload: bool,
    pub with_vector: bool,
    pub filter: Option<&'a Filter>,
    pub vector: &'a [f32],
}

/// A search's identity: the canonical bytes of a [`Query`] (every
/// variable-length part length-prefixed, so two queries share bytes only
/// when they are the same query).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key(Arc<[u8]>);

impl Key {
    /// The memory tier's key.
    pub(crate) fn new(q: &Query<'_>) -> Key {
        Key::encode(q, Scope::Local)
    }

    /// The shared tier's key.
    pub(crate) fn shared(q: &Query<'_>) -> Key {
        Key::encode(q, Scope::Shared)
    }

    /// The key under which [`crate::dispatch::Dispatch`] learns what such a
    /// search costs: everything that chooses the plan (target, k, request,
    /// filter's shape, what the hits carry), not the vector nor the values
    /// the filter compares with.
    pub(crate) fn cost(q: &Query<'_>) -> u64 {
        xxhash_rust::xxh3::xxh3_64(Key::encode(q, Scope::Cost).bytes())
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(b: &[u8]) -> Key {
        Key(b.into())
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn encode(q: &Query<'_>, scope: Scope) -> Key {
        let mut b = Vec::with_capacity(64 + q.vector.len() * 4);
        if scope == Scope::Shared {
            put_str(&mut b, SHARED_TAG);
        }
        b.push(match q.shape {
            Shape::Demo => 1,
            Shape::Hits => 2,
        });
        match (q.target, scope) {
            (Target::Index { generation, .. }, Scope::Local | Scope::Cost) => {
                b.push(1);
                put_u64(&mut b, generation);
            }
            (Target::Collection { incarnation, state }, Scope::Local) => {
                b.push(2);
                put_u64(&mut b, incarnation);
                put_u64(&mut b, state.version);
            }
            (Target::Collection { incarnation, .. }, Scope::Cost) => {
                b.push(2);
                put_u64(&mut b, incarnation);
            }
            (Target::Index { file, .. }, Scope::Shared) => {
                b.push(3);
                b.extend_from_slice(&file.to_le_bytes());
            }
            (Target::Collection { state, .. }, Scope::Shared) => {
                b.push(4);
                b.extend_from_slice(&state.uuid);
                put_u64(&mut b, state.position);
                b.extend_from_slice(&state.digest);
            }
        }
        put_u64(&mut b, q.k as u64);
        match q.request {
            SearchRequest::Profile(p) => {
                b.push(1);
                put_str(&mut b, p.as_str());
            }
            SearchRequest::RecallTarget(r) => {
                b.push(2);
                put_u64(&mut b, r.to_bits());
            }
            SearchRequest::EfSearch(ef) => {
                b.push(3);
                put_u64(&mut b, ef as u64);
            }
        }
        b.push(u8::from(q.with_payload) | (u8::from(q.with_vector) << 1));
        match q.filter {
            None => b.push(0),
            Some(f) => {
                b.push(1);
                put_filter(&mut b, f, scope != Scope::Cost);
                if scope == Scope::Cost {
                    // What a filter's cost grows with, by powers of two: its
                    // conditions and the values they compare with.
                    let (conditions, values) = filter_size(f);
                    b.push((usize::BITS - conditions.leading_zeros()) as u8);
                    b.push((usize::BITS - values.leading_zeros()) as u8);
                }
            }
        }
        if scope == Scope::Cost {
            return Key(b.into());
        }
        put_u64(&mut b, q.vector.len() as u64);
        for x in q.vector {
            b.extend_from_slice(&x.to_le_bytes());
        }
        Key(b.into())
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn put_u64(b: &mut Vec<u8>, x: u64) {
    b.extend_from_slice(&x.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, x: &[u8]) {
    put_u64(b, x.len() as u64);
    b.extend_from_slice(x);
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_bytes(b, s.as_bytes());
}

/// A filter's canonical bytes: the meaning of `must`, `should` and
/// `must_not` does not depend on the order of their conditions, nor on a
/// condition given twice, so each list is written sorted and without
/// repeats (likewise `match.any` values and `has_id` ids); keys are in their
/// parsed form (`a[].b` is `a.b`); a bound of -0 is 0. Without `values`,
/// the filter's shape only: each condition's kind and key (and which bounds
/// a range has), not what it compares with (one key for every tenant's
/// filter, in [`Key::cost`]).
fn put_filter(b: &mut Vec<u8>, f: &Filter, values: bool) {
    for list in [&f.must, &f.should, &f.must_not] {
        let mut items: Vec<Vec<u8>> = list
            .iter()
            .map(|c| {
                let mut one = Vec::new();
                put_condition(&mut one, c, values);
                one
            })
            .collect();
        items.sort_unstable();
        items.dedup();
        put_u64(b, items.len() as u64);
        for item in &items {
            put_bytes(b, item);
        }
    }
}

/// A filter's conditions (nested ones included) and the values they hold
/// (`match` values, `has_id` ids).
fn filter_size(f: &Filter) -> (usize, usize) {
    let (mut conditions, mut values) = (0, 0);
    for c in f.must.iter().chain(&f.should).chain(&f.must_not) {
        conditions += 1;
        match c {
            Condition::Match { values: v, .. } => values += v.len(),
            Condition::HasId(ids) => values += ids.len(),
            Condition::HasUuid(ids) => values += ids.len(),
            Condition::Nested(inner) => {
                let (c, v) = filter_size(inner);
                (conditions, values) = (conditions + c, values + v);
            }
            Condition::Range { .. } | Condition::IsEmpty(_) => {}
        }
    }
    (conditions, values)
}

fn put_condition(b: &mut Vec<u8>, c: &Condition, with_values: bool) {
    match c {
        Condition::Match { key, values } => {
            b.push(1);
            put_str(b, key.as_str());
            if !with_values {
                return;
            }
            let mut items: Vec<Vec<u8>> = values
                .iter()
                .map(|v| {
                    let mut one = Vec::new();
                    match v {
                        MatchValue::Keyword(s) => {
                            one.push(1);
                            put_str(&mut one, s);
                        }
                        MatchValue::Integer(i) => {
                            one.push(2);
                            one.extend_from_slice(&i.to_le_bytes());
                        }
                        MatchValue::Bool(x) => {
                            one.push(3);
                            one.push(u8::from(*x));
                        }
                    }
                    one
                })
                .collect();
            items.sort_unstable();
            items.dedup();
            put_u64(b, items.len() as u64);
            for item in &items {
                put_bytes(b, item);
            }
        }
        Condition::Range { key, range } => {
            b.push(2);
            put_str(b, key.as_str());
            for bound in [range.gt, range.gte, range.lt, range.lte] {
                match bound {
                    None => b.push(0),
                    Some(x) => {
                        b.push(1);
                        // -0.0 + 0.0 is 0.0: both compare alike.
                        if with_values {
                            put_u64(b, (x + 0.0).to_bits());
                        }
                    }
                }
            }
        }
        Condition::HasId(_) if !with_values => b.push(3),
        Condition::HasUuid(_) if !with_values => b.push(6),
        Condition::HasId(ids) => {
            b.push(3);
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            put_u64(b, ids.len() as u64);
            for id in ids {
                put_u64(b, id);
            }
        }
        Condition::HasUuid(ids) => {
            b.push(6);
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            put_u64(b, ids.len() as u64);
            for id in ids {
                b.extend_from_slice(&id.to_le_bytes());
            }
        }
        Condition::IsEmpty(key) => {
            b.push(4);
            put_str(b, key.as_str());
        }
        Condition::Nested(f) => {
            b.push(5);
            let mut one = Vec::new();
            put_filter(&mut one, f, with_values);
            put_bytes(b, &one);
        }
    }
}

/// A kept answer: the response as it was sent, and what computing it took.
#[derive(Debug)]
pub(crate) struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub took: Duration,
}

/// A search's keys: the memory tier's, and the shared tier's when it is on.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    local: Key,
    shared: Option<Key>,
}

impl Answer {
    fn bytes(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum::<usize>()
    }
}

/// What `/stats` and `/metrics` show of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CacheStats {
    pub max_bytes: u64,
    pub entries: u64,
    pub bytes: u64,
    /// Hits of either tier.
    pub hits: u64,
    /// Searches neither tier had an answer for.
    pub misses: u64,
    /// Sum, over the hits, of the engine time the kept answer took when it
    /// was computed: the search time the cache spared.
    pub saved: Duration,
    /// The shared tier (all zero and `configured: false` without one).
    pub shared: SharedStats,
}

/// The cache (none when `--cache-bytes` is 0), its shared tier (none
/// without `--cache-url`) and their counters.
pub(crate) struct AnswerCache {
    cache: Option<Cache<Key, Arc<Answer>>>,
    shared: Option<Arc<SharedTier>>,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    saved_nanos: AtomicU64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache").field("max_bytes", &self.max_bytes).field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl AnswerCache {
    /// A cache of at most `max_bytes` (keys, bodies, headers and an estimate
    /// of each entry's overhead); 0: off.
    pub(crate) fn new(max_bytes: u64) -> AnswerCache {
        let cache = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &Key, v: &Arc<Answer>| {
                    u32::try_from(k.len() + v.bytes() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build()
        });
        AnswerCache {
            cache,
            shared: None,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            saved_nanos: AtomicU64::new(0),
        }
    }

    /// Adds the shared tier (the memory tier must be on: a Redis hit fills it).
    pub(crate) fn with_shared(mut self, tier: SharedTier) -> AnswerCache {
        if self.cache.is_some() {
            self.shared = Some(Arc::new(tier));
        } else {
            tracing::warn!("--cache-url is ignored: the cache is off (--cache-bytes 0)");
        }
        self
    }

    /// The keys of `query`, when the cache is on.
    pub(crate) fn key(&self, query: &Query<'_>) -> Option<Keys> {
        self.cache.as_ref()?;
        Some(Keys { local: Key::new(query), shared: self.shared.as_ref().map(|_| Key::shared(query)) })
    }

    /// The kept answer to `keys` as a response (a hit: from memory, else
    /// from the shared tier, which then fills memory), or `None` (a miss);
    /// either is counted.
    pub(crate) async fn get(&self, keys: &Keys) -> Option<Response> {
        let cache = self.cache.as_ref()?;
        let (answer, tier) = match cache.get(&keys.local) {
            Some(a) => (Some(a), "memory"),
            None => match (&self.shared, &keys.shared) {
                (Some(shared), Some(key)) => {
                    let found = shared.get(key).await.map(Arc::new);
                    if let Some(a) = &found {
                        cache.insert(keys.local.clone(), Arc::clone(a));
                    }
                    (found, "redis")
                }
                _ => (None, "memory"),
            },
        };
        match answer {
            Some(a) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let nanos = u64::try_from(a.took.as_nanos()).unwrap_or(u64::MAX);
                self.saved_nanos.fetch_add(nanos, Ordering::Relaxed);
                let mut response = respond(a.headers.clone(), a.body.clone(), Some("hit"));
                response.headers_mut().insert(HeaderName::from_static(TIER_HEADER), HeaderValue::from_static(tier));
                Some(response)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keeps the answer to `keys` (a body and its headers, computed in
    /// `took`): in memory, and in the shared tier (off the response path)
    /// when `shareable` (see [`Target::unchanged`]).
    pub(crate) fn put(&self, keys: Keys, headers: HeaderMap, body: Bytes, took: Duration, shareable: bool) {
        if let Some(cache) = &self.cache {
            let answer = Arc::new(Answer { headers, body, took });
            if let (Some(shared), Some(key), true) = (&self.shared, keys.shared, shareable) {
                shared.put(key, Arc::clone(&answer));
            }
            cache.insert(keys.local, answer);
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let (entries, bytes) = match &self.cache {
            Some(c) => {
                // Counts are settled by moka's housekeeping; run it first.
                c.run_pending_tasks();
                (c.entry_count(), c.weighted_size())
            }
            None => (0, 0),
        };
        CacheStats {
            max_bytes: self.max_bytes,
            entries,
            bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            saved: Duration::from_nanos(self.saved_nanos.load(Ordering::Relaxed)),
            shared: self.shared.as_ref().map(|s| s.stats()).unwrap_or_default(),
        }
    }
}

/// A JSON response of `body` with `headers`, and the cache's verdict when
/// the cache is on.
pub(crate) fn respond(mut headers: HeaderMap, body: Bytes, cache: Option<&'static str>) -> Response {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(verdict) = cache {
        headers.insert(HeaderName::from_static(HEADER), HeaderValue::from_static(verdict));
    }
    (headers, body).into_response()
}

/// A response body's JSON bytes.
pub(crate) fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Bytes, crate::error::ApiError> {
    Ok(Bytes::from(serde_json::to_vec(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorwise_index::Profile;
    use vectorwise_store::{KeyPath, NumRange};

    fn state(version: u64) -> StateId {
        StateId { version, uuid: [1; 16], position: 9, digest: [2; 32] }
    }

    fn query<'a>(filter: Option<&'a Filter>, vector: &'a [f32]) -> Query<'a> {
        Query {
            shape: Shape::Hits,
            target: Target::Collection { incarnation: 1, state: state(5) },
            k: 10,
            request: SearchRequest::Profile(Profile::Balanced),
            with_payload: false,
            with_vector: false,
            filter,
            vector,
        }
    }

    #[test]
    fn every_part_of_a_query_is_in_its_key() {
        let v = [0.5f32, -1.0, 2.0];
        let base = Key::new(&query(None, &v));
        assert_eq!(base, Key::new(&query(None, &v)));
        let f = Filter::default();
        let variants = [
            Query { shape: Shape::Demo, ..query(None, &v) },
            Query { target: Target::Collection { incarnation: 2, state: state(5) }, ..query(None, &v) },
            Query { target: Target::Collection { incarnation: 1, state: state(6) }, ..query(None, &v) },
            Query { target: Target::Index { generation: 1, file: 7 }, ..query(None, &v) },
            Query { k: 11, ..query(None, &v) },
            Query { request: SearchRequest::Profile(Profile::HighAccuracy), ..query(None, &v) },
            Query { request: SearchRequest::RecallTarget(0.95), ..query(None, &v) },
            Query { request: SearchRequest::EfSearch(10), ..query(None, &v) },
            Query { with_payload: true, ..query(None, &v) },
            Query { with_vector: true, ..query(None, &v) },
            query(Some(&f), &v),
            query(None, &[0.5, -1.0]),
            query(None, &[0.5, -1.0, 2.000_000_2]),
            // -0 and 0 are different bytes: a miss, never a wrong answer.
            query(None, &[0.5, -1.0, 2.0, -0.0]),
        ];
        let mut seen = std::collections::HashSet::from([base.clone()]);
        for q in &variants {
            assert!(seen.insert(Key::new(q)), "{q:?} shares a key");
        }
    }

    /// The shared key names contents, not this process: the same for two
    /// incarnations and versions of one state; different for another uuid,
    /// position, digest or file; never a memory key.
    #[test]
    fn the_shared_key_names_contents() {
        let v = [0.5f32, -1.0];
        let base = Key::shared(&query(None, &v));
        let other_process = Target::Collection { incarnation: 9, state: StateId { version: 77, ..state(5) } };
        assert_eq!(base, Key::shared(&Query { target: other_process, ..query(None, &v) }));
        assert_ne!(base, Key::new(&query(None, &v)));
        let with = |s: StateId| Key::shared(&Query { target: Target::Collection { incarnation: 1, state: s }, ..query(None, &v) });
        let variants = [
            with(StateId { uuid: [3; 16], ..state(5) }),
            with(StateId { position: 10, ..state(5) }),
            with(StateId { digest: [4; 32], ..state(5) }),
            Key::shared(&Query { target: Target::Index { generation: 1, file: 7 }, ..query(None, &v) }),
            Key::shared(&Query { target: Target::Index { generation: 1, file: 8 }, ..query(None, &v) }),
            Key::shared(&Query { k: 11, ..query(None, &v) }),
        ];
        let mut seen = std::collections::HashSet::from([base]);
        for k in variants {
            assert!(seen.insert(k.clone()), "{k:?} shares a key");
        }
        // Another index served in this process, the same file: one shared key.
        let index = |generation| Key::shared(&Query { target: Target::Index { generation, file: 7 }, ..query(None, &v) });
        assert_eq!(index(1), index(2));
    }

    fn key(name: &str) -> KeyPath {
        KeyPath::parse(name).unwrap()
    }

    #[test]
    fn filters_that_mean_the_same_share_a_key_and_others_do_not() {
        let v = [1.0f32];
        let tag = |s: &str| Condition::Match { key: key("tag"), values: vec![MatchValue::Keyword(s.into())] };
        let range = |gte: f64| Condition::Range { key: key("n"), range: NumRange { gte: Some(gte), ..NumRange::default() } };
        let a = Filter { must: vec![tag("x"), range(1.0)], should: vec![], must_not: vec![Condition::HasId(vec![3, 1])] };
        let b = Filter {
            must: vec![range(1.0), tag("x"), tag("x")],
            should: vec![],
            must_not: vec![Condition::HasId(vec![1, 3, 3])],
        };
        let bracketed = Filter { must: vec![Condition::IsEmpty(key("a[].b"))], ..Filter::default() };
        let dotted = Filter { must: vec![Condition::IsEmpty(key("a.b"))], ..Filter::default() };
        assert_eq!(Key::new(&query(Some(&a), &v)), Key::new(&query(Some(&b), &v)));
        assert_eq!(Key::new(&query(Some(&bracketed), &v)), Key::new(&query(Some(&dotted), &v)));
        let zero = Filter { must: vec![range(0.0)], ..Filter::default() };
        let minus_zero = Filter { must: vec![range(-0.0)], ..Filter::default() };
        assert_eq!(Key::new(&query(Some(&zero), &v)), Key::new(&query(Some(&minus_zero), &v)));

        let different = [
            Filter { should: a.must.clone(), ..a.clone() },
            Filter { must: vec![tag("x")], ..a.clone() },
            Filter { must: vec![tag("y"), range(1.0)], ..a.clone() },
            Filter { must: vec![tag("x"), range(1.5)], ..a.clone() },
            Filter { must_not: vec![Condition::HasId(vec![1])], ..a.clone() },
            Filter { must: vec![Condition::Nested(Box::new(Filter { must: a.must.clone(), ..Filter::default() }))], ..a.clone() },
            Filter {
                must: vec![Condition::Match { key: key("tag"), values: vec![MatchValue::Integer(1)] }, range(1.0)],
                ..a.clone()
            },
            Filter {
                must: vec![Condition::Match { key: key("tag"), values: vec![MatchValue::Bool(true)] }, range(1.0)],
                ..a.clone()
            },
        ];
        let mut seen = std::collections::HashSet::from([Key::new(&query(Some(&a), &v))]);
        for f in &different {
            assert!(seen.insert(Key::new(&query(Some(f), &v))), "{f:?} shares a key");
        }
    }

    #[test]
    fn cost_keys_follow_the_filters_shape_not_its_values_nor_the_vector() {
        let tag = |s: &str| Condition::Match { key: key("tag"), values: vec![MatchValue::Keyword(s.into())] };
        let range = |gte: f64| Condition::Range { key: key("n"), range: NumRange { gte: Some(gte), ..NumRange::default() } };
        let one = |c: Condition| Filter { must: vec![c], ..Filter::default() };
        let cost = |f: Option<&Filter>, v: &[f32]| Key::cost(&query(f, v));
        // Every tenant's filter, any query: one kind of search.
        assert_eq!(cost(Some(&one(tag("a"))), &[1.0]), cost(Some(&one(tag("b"))), &[2.0]));
        assert_eq!(cost(Some(&one(range(1.0))), &[1.0]), cost(Some(&one(range(7.0))), &[1.0]));
        assert_eq!(cost(Some(&one(Condition::HasId(vec![1, 2]))), &[1.0]), cost(Some(&one(Condition::HasId(vec![5, 6, 7]))), &[1.0]));
        let other_key = Condition::Match { key: key("lang"), values: vec![MatchValue::Keyword("a".into())] };
        let lt = Condition::Range { key: key("n"), range: NumRange { lt: Some(1.0), ..NumRange::default() } };
        let kinds = [
            cost(None, &[1.0]),
            cost(Some(&one(tag("a"))), &[1.0]),
            cost(Some(&one(other_key)), &[1.0]),
            cost(Some(&one(range(1.0))), &[1.0]),
            cost(Some(&one(lt)), &[1.0]),
            cost(Some(&Filter { must_not: vec![tag("a")], ..Filter::default() }), &[1.0]),
        ];
        let distinct: std::collections::HashSet<u64> = kinds.iter().copied().collect();
        assert_eq!(distinct.len(), kinds.len(), "{kinds:?}");
        // What the cost grows with: more conditions, or many more values, is another kind.
        let any = |n: usize| Condition::Match { key: key("tag"), values: (0..n).map(|i| MatchValue::Integer(i as i64)).collect() };
        assert_eq!(cost(Some(&one(any(5))), &[1.0]), cost(Some(&one(any(6))), &[1.0]), "within a power of two");
        assert_ne!(cost(Some(&one(any(1))), &[1.0]), cost(Some(&one(any(1024))), &[1.0]));
        let many = Filter { must: vec![tag("a"); 64], ..Filter::default() };
        assert_ne!(cost(Some(&one(tag("a"))), &[1.0]), cost(Some(&many), &[1.0]));
        // A collection's writes do not change its kinds; another collection's are its own.
        let at = |target: Target| Key::cost(&Query { target, ..query(None, &[1.0]) });
        let c = |incarnation: u64, version: u64| Target::Collection { incarnation, state: state(version) };
        assert_eq!(at(c(1, 5)), at(c(1, 6)));
        assert_ne!(at(c(1, 5)), at(c(2, 5)));
    }

    #[test]
    fn the_cache_counts_hits_misses_and_the_time_they_saved() {
        let cache = AnswerCache::new(1 << 20);
        let v = [1.0f32, 2.0];
        let key = cache.key(&query(None, &v)).unwrap();
        let get = |key| futures_util::FutureExt::now_or_never(cache.get(key)).unwrap();
        assert!(get(&key).is_none());
        cache.put(key.clone(), HeaderMap::new(), Bytes::from_static(b"{\"hits\":[]}"), Duration::from_millis(3), true);
        let hit = get(&key).unwrap();
        assert_eq!(hit.headers()[HEADER], "hit");
        assert_eq!(hit.headers()[TIER_HEADER], "memory");
        assert_eq!(hit.headers()[header::CONTENT_TYPE], "application/json");
        get(&key).unwrap();
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.saved), (2, 1, 1, Duration::from_millis(6)));
        assert!(!s.shared.configured);
        assert!(s.bytes as usize >= key.local.len() + 11 + ENTRY_OVERHEAD, "{s:?}");

        let off = AnswerCache::new(0);
        assert!(off.key(&query(None, &v)).is_none());
        assert_eq!(off.stats(), CacheStats::default());
    }

    /// The bound holds: past it, entries are evicted.
    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = AnswerCache::new(64 << 10);
        for i in 0..2000 {
            let v = [i as f32; 32];
            let key = cache.key(&query(None, &v)).unwrap();
            cache.put(key, HeaderMap::new(), Bytes::from(vec![b' '; 200]), Duration::ZERO, false);
        }
        let s = cache.stats();
        assert!(s.bytes <= 64 << 10, "{s:?}");
        assert!(s.entries > 50 && s.entries < 2000, "{s:?}");
    }
}
