//! Who may do what: API keys with roles, the one table of what each route
//! needs ([`ROUTES`]), and the middleware that applies it ([`authorize`]).
//!
//! **The rule.** A request's route (its matched template and method) is
//! looked up in [`ROUTES`]; the entry says the role it needs (`open`, the
//! metrics key, `read` < `write` < `admin`), which collection it acts on
//! (the `{name}` in its path; `default` for the demo's `/search`,
//! `/search/batch` and `/stats`) and which rate budget it spends. A key
//! limited to named collections may act on those only; `GET /collections`
//! lists only those, and `/metrics` (every collection's series) needs an
//! unlimited key. A route missing from the table needs an admin key: a route
//! added to the router but not to the table is closed, not open. Every
//! operation of the OpenAPI document has an entry (tested).
//!
//! **Keys.** The server holds each key's SHA-256, never the key: from a keys
//! file (JSON lines, [`parse_key_file`]), plus an admin key given in plain
//! (`VECTORWISE_API_KEY`, hashed at start). A presented key (`Authorization:
//! Bearer <key>`, else `api-key: <key>`) is hashed and compared with every
//! stored hash in constant time (`subtle`), all of them, so the time taken
//! does not depend on which stored hash, or how much of one, matched. With
//! no key configured the server is open ([`Keys::open`]): every route
//! answers without a key.
//!
//! Missing or unknown key: 401 with `WWW-Authenticate: Bearer`; a known key
//! without the role or the collection: 403. Neither says anything about the
//! keys that exist.

use crate::error::ApiError;
use crate::ratelimit::{Budget, RateKey};
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A key's SHA-256.
pub type KeyHash = [u8; 32];

/// What a key may do; each role may do everything the one before may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search, read points, stats, list and inspect collections, `/metrics`
    /// (unless it has its own key).
    Read,
    /// And upsert and delete points.
    Write,
    /// And create and delete collections, take and manage snapshots.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`: expected read, write or admin")),
        }
    }
}

/// The SHA-256 of a key, as stored.
pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// A hash as 64 lowercase hexadecimal characters (the keys file's form).
pub fn to_hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<KeyHash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Shortest key accepted in plain (`VECTORWISE_API_KEY`, the metrics key,
/// `vectorwise keys hash`).
pub const MIN_KEY_LEN: usize = 16;

/// A key given in plain must be at least [`MIN_KEY_LEN`] visible ASCII
/// characters: what an HTTP header carries unchanged.
pub fn check_plain_key(key: &str) -> Result<(), String> {
    if key.len() < MIN_KEY_LEN {
        return Err(format!("an API key must be at least {MIN_KEY_LEN} characters (it has {})", key.len()));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an API key must be visible ASCII characters only (no spaces or control characters)".into());
    }
    Ok(())
}

/// Whether `name` is a key name: 1 to 64 of `A-Z a-z 0-9 _ - . @`.
pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
}

/// One API key as the server knows it: its hash, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Shown in logs (`key=`), never secret.
    pub name: String,
    pub role: Role,
    pub sha256: KeyHash,
    /// The collections it may act on; `None`: all.
    pub collections: Option<BTreeSet<String>>,
}

impl ApiKey {
    /// Its line in a keys file: `{"name", "role", "sha256", "collections"?}`, in that order.
    pub fn file_line(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            name: &'a str,
            role: &'a str,
            sha256: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            collections: Option<&'a BTreeSet<String>>,
        }
        let line = Line { name: &self.name, role: self.role.as_str(), sha256: to_hex(&self.sha256), collections: self.collections.as_ref() };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// A line of the keys file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLine {
    name: String,
    role: Role,
    sha256: String,
    #[serde(default)]
    collections: Option<Vec<String>>,
}

/// Why the keys could not be read; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API keys file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}, line {line}: {reason}", path.display())]
    Line { path: PathBuf, line: usize, reason: String },
    #[error("{0}")]
    Conflict(String),
}

/// Reads a keys file: one JSON object a line, `{"name", "role", "sha256",
/// "collections"?}`; blank lines and lines starting with `#` are skipped.
/// Names and hashes are unique; unknown fields are refused.
pub fn load_key_file(path: &Path) -> Result<Vec<ApiKey>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read { path: path.to_owned(), source })?;
    parse_key_file(&text, path)
}

/// [`load_key_file`] on text already read (`path` names it in errors).
pub fn parse_key_file(text: &str, path: &Path) -> Result<Vec<ApiKey>, KeyFileError> {
    let mut keys: Vec<(usize, ApiKey)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let fail = |reason: String| KeyFileError::Line { path: path.to_owned(), line, reason };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let k: KeyLine = serde_json::from_str(trimmed).map_err(|e| fail(format!("not a key entry: {e}")))?;
        if !valid_key_name(&k.name) {
            return Err(fail(format!("name {:?}: 1 to 64 of A-Z a-z 0-9 _ - . @", k.name)));
        }
        let sha256 = from_hex(&k.sha256)
            .ok_or_else(|| fail("sha256: must be 64 hexadecimal characters (`vectorwise keys hash`)".into()))?;
        let collections = match k.collections {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(fail("collections: an empty list allows nothing; leave it out to allow every collection".into()));
            }
            Some(list) => {
                if let Some(bad) = list.iter().find(|c| !vectorwise_store::valid_name(c)) {
                    return Err(fail(format!("collections: {bad:?} is not a collection name")));
                }
                Some(list.into_iter().collect())
            }
        };
        if let Some((first, _)) = keys.iter().find(|(_, other)| other.name == k.name) {
            return Err(fail(format!("name {:?} is already used on line {first}", k.name)));
        }
        if let Some((first, other)) = keys.iter().find(|(_, other)| other.sha256 == sha256) {
            return Err(fail(format!("the same key as {:?} on line {first}", other.name)));
        }
        keys.push((line, ApiKey { name: k.name, role: k.role, sha256, collections }));
    }
    Ok(keys.into_iter().map(|(_, k)| k).collect())
}

/// A stored key, shared cheaply with the requests it admits.
#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    role: Role,
    sha256: Words,
    collections: Option<Arc<BTreeSet<String>>>,
}

/// A hash as four words, compared without a branch on their contents.
type Words = [u64; 4];

fn words(hash: &KeyHash) -> Words {
    let mut out = [0u64; 4];
    for (w, chunk) in out.iter_mut().zip(hash.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *w = u64::from_le_bytes(bytes);
    }
    out
}

/// Whether two hashes are equal, in constant time: every word is read
/// and combined with bitwise operations (no early exit), and the one
/// word left is compared with `subtle`. Word-wise rather than `subtle`'s
/// byte-wise slice comparison (about 44 ns a key): admitting a request
/// among 100 keys, hashing included, took 0.65 µs instead of 4.4 µs
/// (`tests::comparing_a_hundred_keys_is_cheap` prints it).
fn same(a: &Words, b: &Words) -> subtle::Choice {
    let diff = (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]);
    diff.ct_eq(&0)
}

/// The keys a server checks requests against; swapped whole on reload.
#[derive(Debug, Default)]
pub struct Keys {
    entries: Vec<Entry>,
    /// Whether routes that need a role need a key (false: open).
    required: bool,
    metrics: Option<Words>,
}

impl Keys {
    /// No key needed anywhere (today's open server).
    pub fn open() -> Keys {
        Keys::default()
    }

    /// Keys required: only these (possibly none) are admitted where a role
    /// is needed. Names and hashes must be unique.
    pub fn required(keys: Vec<ApiKey>) -> Result<Keys, KeyFileError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(keys.len());
        for k in keys {
            if entries.iter().any(|e| *e.name == *k.name) {
                return Err(KeyFileError::Conflict(format!("two API keys are named {:?}", k.name)));
            }
            let sha256 = words(&k.sha256);
            if let Some(e) = entries.iter().find(|e| e.sha256 == sha256) {
                return Err(KeyFileError::Conflict(format!("API keys {:?} and {:?} are the same key", e.name, k.name)));
            }
            entries.push(Entry { name: k.name.into(), role: k.role, sha256, collections: k.collections.map(Arc::new) });
        }
        Ok(Keys { entries, required: true, metrics: None })
    }

    /// `/metrics` answers only to this key (hashed here), whatever else is set.
    pub fn with_metrics_key(mut self, key: &str) -> Keys {
        self.metrics = Some(words(&hash_key(key.as_bytes())));
        self
    }

    /// Whether routes that need a role need a key.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// Whether `/metrics` has a key of its own.
    pub fn has_metrics_key(&self) -> bool {
        self.metrics.is_some()
    }

    /// How many API keys (the metrics key aside).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key whose hash is `hash`, comparing with every stored hash in
    /// constant time.
    fn find(&self, hash: &KeyHash) -> Option<&Entry> {
        let hash = words(hash);
        let mut found = None;
        for e in &self.entries {
            if bool::from(same(&e.sha256, &hash)) {
                found = Some(e);
            }
        }
        found
    }

    fn is_metrics_key(&self, hash: &KeyHash) -> bool {
        self.metrics.is_some_and(|m| bool::from(same(&m, &words(hash))))
    }
}

// ---- the table --------------------------------------------------------------

/// What a route needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: health and docs.
    Open,
    /// The metrics key when there is one, else `read` with no collection limit.
    Metrics,
    Role(Role),
}

/// Which collection a route acts on, for keys limited to some.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// None.
    Nothing,
    /// The `{name}` of its path.
    Path,
    /// `default` (the demo's routes).
    Default,
    /// Every collection: a limited key may not.
    All,
    /// Every collection the key may see (the handler filters).
    Listed,
}

/// One route's entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
    pub scope: Scope,
    /// The rate budget it spends. `Batch` is spent by the handler, which
    /// knows how many queries the body holds.
    pub budget: Option<Budget>,
    /// Whether the OpenAPI document describes it (the docs' own pages are
    /// not operations); read by the test that holds the table to the document.
    #[cfg_attr(not(test), allow(dead_code))]
    pub documented: bool,
}

const fn rule(method: &'static str, path: &'static str, need: Need, scope: Scope, budget: Option<Budget>) -> Rule {
    Rule { method, path, need, scope, budget, documented: true }
}

const fn docs(path: &'static str) -> Rule {
    Rule { method: "GET", path, need: Need::Open, scope: Scope::Nothing, budget: None, documented: false }
}

const READ: Need = Need::Role(Role::Read);
const WRITE: Need = Need::Role(Role::Write);
const ADMIN: Need = Need::Role(Role::Admin);
const SEARCHES: Option<Budget> = Some(Budget::Search);
const WRITES: Option<Budget> = Some(Budget::Write);
const BATCHES: Option<Budget> = Some(Budget::Batch);

/// Every route, what it needs, what it acts on and what it spends.
pub(crate) const ROUTES: &[Rule] = &[
    rule("GET", "/", Need::Open, Scope::Nothing, None),
    rule("GET", "/stats", READ, Scope::Default, None),
    rule("POST", "/search", READ, Scope::Default, SEARCHES),
    rule("POST", "/search/batch", READ, Scope::Default, BATCHES),
    rule("GET", "/metrics", Need::Metrics, Scope::All, None),
    rule("GET", "/collections", READ, Scope::Listed, None),
    rule("GET", "/collections/{name}", READ, Scope::Path, None),
    rule("PUT", "/collections/{name}", ADMIN, Scope::Path, WRITES),
    rule("DELETE", "/collections/{name}", ADMIN, Scope::Path, WRITES),
    rule("PUT", "/collections/{name}/points", WRITE, Scope::Path, WRITES),
    rule("POST", "/collections/{name}/points/delete", WRITE, Scope::Path, WRITES),
    rule("POST", "/collections/{name}/points/get", READ, Scope::Path, SEARCHES),
    rule("GET", "/collections/{name}/points/{id}", READ, Scope::Path, SEARCHES),
    rule("POST", "/collections/{name}/search", READ, Scope::Path, SEARCHES),
    rule("POST", "/collections/{name}/search/batch", READ, Scope::Path, BATCHES),
    rule("PUT", "/collections/{name}/index", ADMIN, Scope::Path, WRITES),
    rule("DELETE", "/collections/{name}/index/{field}", ADMIN, Scope::Path, WRITES),
    rule("POST", "/collections/{name}/snapshots", ADMIN, Scope::Path, WRITES),
    rule("GET", "/collections/{name}/snapshots", ADMIN, Scope::Path, None),
    rule("GET", "/collections/{name}/snapshots/{snapshot}", ADMIN, Scope::Path, None),
    rule("DELETE", "/collections/{name}/snapshots/{snapshot}", ADMIN, Scope::Path, WRITES),
    // A job is a search, so `read`; its submission writes files, so it
    // spends one write. Its key sees it (and admin keys): `jobs.rs`.
    rule("POST", "/collections/{name}/jobs", READ, Scope::Path, WRITES),
    rule("GET", "/collections/{name}/jobs", READ, Scope::Path, None),
    rule("GET", "/collections/{name}/jobs/{id}", READ, Scope::Path, None),
    rule("DELETE", "/collections/{name}/jobs/{id}", READ, Scope::Path, None),
    rule("GET", "/collections/{name}/jobs/{id}/{file}", READ, Scope::Path, None),
    docs("/openapi.json"),
    docs("/docs"),
    docs("/docs/"),
    docs("/docs/{*file}"),
    docs("/redoc"),
    docs("/redoc/redoc.standalone.js"),
];

/// What a matched route absent from [`ROUTES`] needs (another method on a
/// known path, or a route someone forgot): an admin key.
const UNLISTED: Rule =
    Rule { method: "", path: "", need: ADMIN, scope: Scope::All, budget: None, documented: false };

/// The entry of `method` on the route template `path` (`HEAD` is `GET`'s).
pub(crate) fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}

// ---- the decision ---------------------------------------------------------------

/// Who is calling, as the handlers see it.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The key's name; `None` when no key was needed.
    pub key: Option<Arc<str>>,
    /// The collections the key is limited to; `None`: all.
    pub collections: Option<Arc<BTreeSet<String>>>,
    /// Whose rate budgets it spends: the key's, or its address's.
    pub rate_key: RateKey,
    /// Whether it may act on what other keys made (batch jobs): an admin
    /// key, or anyone when the server has no keys.
    pub admin: bool,
}

impl Caller {
    /// Whether this caller may see or act on `collection`.
    pub fn may_use(&self, collection: &str) -> bool {
        self.collections.as_ref().is_none_or(|c| c.contains(collection))
    }
}

/// The key name the access log shows (a response extension).
#[derive(Clone, Debug)]
pub(crate) struct KeyName(pub Arc<str>);

/// Why a key was refused (403); none of them says anything of other keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// Its role is below the route's.
    Role,
    /// It is limited to collections that do not include this one.
    Collection,
    /// It is limited to some collections and the route concerns all of them.
    AllCollections,
    /// `/metrics` has a key of its own, or this is that key on another route.
    Metrics,
}

impl Forbidden {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Forbidden::Role => "This API key's role does not allow this request",
            Forbidden::Collection => "This API key may not use this collection",
            Forbidden::AllCollections => "This API key is limited to some collections; this request concerns all of them",
            Forbidden::Metrics => "This API key may not be used here: /metrics has a key of its own",
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>` (any case of
/// `Bearer`), else the `api-key` header.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes();
        (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| v[7..].trim_ascii())
    });
    bearer.or_else(|| headers.get("api-key").map(|v| v.as_bytes().trim_ascii()))
}

/// The caller of a request needing `rule`, or its 401/403. `collection`:
/// the one it acts on (`Err(())` when its name in the path cannot be read).
fn decide(
    keys: &Keys,
    rule: &Rule,
    collection: Result<Option<&str>, ()>,
    presented: Option<&[u8]>,
    peer: Option<SocketAddr>,
) -> Result<Caller, ApiError> {
    let anonymous = || Caller { key: None, collections: None, rate_key: RateKey::address(peer), admin: !keys.required };
    let role = match rule.need {
        Need::Open => return Ok(anonymous()),
        Need::Metrics if keys.metrics.is_some() => {
            let hash = hash_key(presented.ok_or(ApiError::Unauthenticated { missing: true })?);
            if keys.is_metrics_key(&hash) {
                return Ok(Caller {
                    key: Some("metrics".into()),
                    collections: None,
                    rate_key: RateKey::Key("metrics".into()),
                    admin: false,
                });
            }
            return Err(match keys.find(&hash) {
                Some(_) => ApiError::Forbidden(Forbidden::Metrics),
                None => ApiError::Unauthenticated { missing: false },
            });
        }
        Need::Metrics => Role::Read,
        Need::Role(role) => role,
    };
    if !keys.required {
        return Ok(anonymous());
    }
    let hash = hash_key(presented.ok_or(ApiError::Unauthenticated { missing: true })?);
    let Some(key) = keys.find(&hash) else {
        return Err(if keys.is_metrics_key(&hash) {
            ApiError::Forbidden(Forbidden::Metrics)
        } else {
            ApiError::Unauthenticated { missing: false }
        });
    };
    if key.role < role {
        return Err(ApiError::Forbidden(Forbidden::Role));
    }
    if let Some(allowed) = &key.collections {
        match rule.scope {
            Scope::Path | Scope::Default => match collection {
                Ok(Some(c)) if allowed.contains(c) => {}
                _ => return Err(ApiError::Forbidden(Forbidden::Collection)),
            },
            Scope::All => return Err(ApiError::Forbidden(Forbidden::AllCollections)),
            Scope::Nothing | Scope::Listed => {}
        }
    }
    Ok(Caller {
        key: Some(key.name.clone()),
        collections: key.collections.clone(),
        rate_key: RateKey::Key(key.name.clone()),
        admin: key.role == Role::Admin,
    })
}

/// The middleware: finds the route's entry, admits the caller (or answers
/// 401/403), spends its rate budget (or answers 429), and hands the
/// [`Caller`] to the handler. Requests no route matched pass (the 404
/// fallback answers them and protects nothing).
pub(crate) async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(req).await;
    };
    let rule = rule_for(req.method(), &route).unwrap_or(&UNLISTED);
    let (mut parts, body) = req.into_parts();
    let name = match rule.scope {
        Scope::Path => match RawPathParams::from_request_parts(&mut parts, &state).await {
            Ok(params) => params.iter().find(|(k, _)| *k == "name").map(|(_, v)| v.to_owned()).ok_or(()),
            Err(_) => Err(()),
        }
        .map(Some),
        Scope::Default => Ok(Some(crate::DEFAULT_COLLECTION.to_owned())),
        _ => Ok(None),
    };
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let decided = decide(&state.keys(), rule, name.as_ref().map(Option::as_deref).map_err(|_| ()), presented(&parts.headers), peer);
    let caller = match decided {
        Ok(caller) => caller,
        Err(e) => return refused(e, &parts),
    };
    if let Some(budget) = rule.budget.filter(|b| *b != Budget::Batch)
        && let Err(e) = state.admit(&caller, budget, 1)
    {
        return with_key_name(refused(e, &parts), &caller);
    }
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(caller.clone());
    with_key_name(next.run(req).await, &caller)
}

/// The answer to a request refused before its body was read. On HTTP/1 the
/// body would have to be drained before another request could follow on
/// the connection (hyper drains only what has already arrived, else closes
/// it): the response says `Connection: close`, so the client knows. A
/// refused client's body is never read.
fn refused(error: ApiError, parts: &axum::http::request::Parts) -> Response {
    let mut response = error.into_response();
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if has_body && parts.version < axum::http::Version::HTTP_2 {
        response.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

fn with_key_name(mut response: Response, caller: &Caller) -> Response {
    if let Some(name) = &caller.key {
        response.extensions_mut().insert(KeyName(name.clone()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ServerConfig;

    fn key(name: &str, role: Role, secret: &str, collections: Option<&[&str]>) -> ApiKey {
        ApiKey {
            name: name.into(),
            role,
            sha256: hash_key(secret.as_bytes()),
            collections: collections.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    /// Every operation of the OpenAPI document has an entry, and every
    /// entry marked documented is an operation: a new route cannot be
    /// forgotten by the table, nor the table keep a route that is gone.
    #[test]
    fn every_documented_route_is_in_the_table_and_back() {
        let doc = serde_json::to_value(crate::docs::openapi(&ServerConfig::default(), None)).unwrap();
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                let method: Method = method.to_uppercase().parse().unwrap();
                let rule = rule_for(&method, path).unwrap_or_else(|| panic!("{method} {path} is not in auth::ROUTES"));
                assert!(rule.documented, "{method} {path}");
                operations.insert((method.to_string(), path.clone()));
            }
        }
        assert!(operations.len() >= 15, "{operations:?}");
        for r in ROUTES.iter().filter(|r| r.documented) {
            assert!(operations.contains(&(r.method.to_owned(), r.path.to_owned())), "{} {} is not in the document", r.method, r.path);
        }
        // One entry per route.
        let mut seen = BTreeSet::new();
        assert!(ROUTES.iter().all(|r| seen.insert((r.method, r.path))));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = hash_key(b"abc");
        assert_eq!(to_hex(&h), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex(&to_hex(&h).to_uppercase()), Some(h));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn the_keys_file_is_read_and_every_mistake_named_by_line() {
        let hash = to_hex(&hash_key(b"k1-aaaaaaaaaaaaaaaa"));
        let other = to_hex(&hash_key(b"k2-aaaaaaaaaaaaaaaa"));
        let text = format!(
            "# keys\n\n{{\"name\": \"ci\", \"role\": \"read\", \"sha256\": \"{hash}\", \"collections\": [\"docs\"]}}\n\
             {{\"name\": \"ops\", \"role\": \"admin\", \"sha256\": \"{other}\"}}\n"
        );
        let keys = parse_key_file(&text, Path::new("k.jsonl")).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!((keys[0].name.as_str(), keys[0].role), ("ci", Role::Read));
        assert_eq!(keys[0].collections, Some(["docs".to_owned()].into()));
        assert_eq!((keys[1].role, keys[1].collections.as_ref()), (Role::Admin, None));
        // A line written by file_line reads back the same.
        assert_eq!(parse_key_file(&keys[0].file_line(), Path::new("x")).unwrap(), vec![keys[0].clone()]);
        assert_eq!(keys[0].file_line(), format!("{{\"name\":\"ci\",\"role\":\"read\",\"sha256\":\"{hash}\",\"collections\":[\"docs\"]}}"));
        assert_eq!(keys[1].file_line(), format!("{{\"name\":\"ops\",\"role\":\"admin\",\"sha256\":\"{other}\"}}"));

        let bad = |line: &str| parse_key_file(&format!("# first\n{line}"), Path::new("k.jsonl")).unwrap_err().to_string();
        let e = bad(&format!("{{\"name\": \"a\", \"role\": \"root\", \"sha256\": \"{hash}\"}}"));
        assert!(e.starts_with("k.jsonl, line 2:") && e.contains("root"), "{e}");
        let e = bad(&format!("{{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"{hash}\", \"key\": \"x\"}}"));
        assert!(e.contains("unknown field `key`"), "{e}");
        let e = bad("{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"abc\"}");
        assert!(e.contains("sha256"), "{e}");
        let e = bad(&format!("{{\"role\": \"read\", \"sha256\": \"{hash}\"}}"));
        assert!(e.contains("missing field `name`"), "{e}");
        let e = bad(&format!("{{\"name\": \"a b\", \"role\": \"read\", \"sha256\": \"{hash}\"}}"));
        assert!(e.contains("name"), "{e}");
        let e = bad(&format!("{{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"{hash}\", \"collections\": []}}"));
        assert!(e.contains("collections"), "{e}");
        let e = bad(&format!("{{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"{hash}\", \"collections\": [\"a/b\"]}}"));
        assert!(e.contains("\"a/b\""), "{e}");
        let e = bad("not json");
        assert!(e.contains("line 2"), "{e}");
        let twice = format!(
            "{{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"{hash}\"}}\n{{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"{other}\"}}"
        );
        let e = bad(&twice);
        assert!(e.contains("line 3") && e.contains("line 2"), "{e}");
        let same = format!(
            "{{\"name\": \"a\", \"role\": \"read\", \"sha256\": \"{hash}\"}}\n{{\"name\": \"b\", \"role\": \"read\", \"sha256\": \"{hash}\"}}"
        );
        assert!(bad(&same).contains("the same key"));
    }

    #[test]
    fn plain_keys_must_be_long_visible_ascii() {
        assert!(check_plain_key("0123456789abcdef").is_ok());
        assert!(check_plain_key("short").is_err());
        assert!(check_plain_key("0123456789abcdef ").is_err());
        assert!(check_plain_key("0123456789abcdé").is_err());
    }

    /// The decision for each kind of caller, route and key.
    #[test]
    fn decisions() {
        let keys = Keys::required(vec![
            key("r", Role::Read, "read-key-aaaaaaaaaaaa", None),
            key("w", Role::Write, "write-key-aaaaaaaaaaa", None),
            key("a", Role::Admin, "admin-key-aaaaaaaaaaa", None),
            key("docs", Role::Write, "docs-key-aaaaaaaaaaaa", Some(&["docs"])),
        ])
        .unwrap();
        let route = |m: &str, p: &str| rule_for(&m.parse().unwrap(), p).unwrap();
        let status = |keys: &Keys, r: &Rule, c: Option<&str>, k: Option<&str>| match decide(keys, r, Ok(c), k.map(str::as_bytes), None) {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        };
        let search = route("POST", "/search");
        assert_eq!(status(&keys, search, Some("default"), None), 401);
        assert_eq!(status(&keys, search, Some("default"), Some("nope-aaaaaaaaaaaaaa")), 401);
        assert_eq!(status(&keys, search, Some("default"), Some("read-key-aaaaaaaaaaaa")), 200);
        assert_eq!(status(&keys, search, Some("default"), Some("docs-key-aaaaaaaaaaaa")), 403);
        let upsert = route("PUT", "/collections/{name}/points");
        assert_eq!(status(&keys, upsert, Some("docs"), Some("read-key-aaaaaaaaaaaa")), 403);
        assert_eq!(status(&keys, upsert, Some("docs"), Some("write-key-aaaaaaaaaaa")), 200);
        assert_eq!(status(&keys, upsert, Some("docs"), Some("docs-key-aaaaaaaaaaaa")), 200);
        assert_eq!(status(&keys, upsert, Some("other"), Some("docs-key-aaaaaaaaaaaa")), 403);
        let create = route("PUT", "/collections/{name}");
        assert_eq!(status(&keys, create, Some("docs"), Some("write-key-aaaaaaaaaaa")), 403);
        assert_eq!(status(&keys, create, Some("docs"), Some("admin-key-aaaaaaaaaaa")), 200);
        let metrics = route("GET", "/metrics");
        assert_eq!(status(&keys, metrics, None, Some("read-key-aaaaaaaaaaaa")), 200);
        assert_eq!(status(&keys, metrics, None, Some("docs-key-aaaaaaaaaaaa")), 403);
        assert_eq!(status(&keys, route("GET", "/"), None, None), 200);
        assert_eq!(status(&keys, route("GET", "/docs/{*file}"), None, None), 200);
        assert_eq!(status(&keys, &UNLISTED, None, Some("write-key-aaaaaaaaaaa")), 403);
        assert_eq!(status(&keys, &UNLISTED, None, Some("admin-key-aaaaaaaaaaa")), 200);
        // The name in the path could not be read: a limited key is refused.
        assert!(decide(&keys, upsert, Err(()), Some(b"docs-key-aaaaaaaaaaaa"), None).is_err());
        assert!(decide(&keys, upsert, Err(()), Some(b"write-key-aaaaaaaaaaa"), None).is_ok());

        // A metrics key of its own: /metrics answers to it only.
        let with_metrics = Keys::required(vec![key("r", Role::Read, "read-key-aaaaaaaaaaaa", None)])
            .unwrap()
            .with_metrics_key("metrics-key-aaaaaaaaa");
        assert_eq!(status(&with_metrics, metrics, None, Some("metrics-key-aaaaaaaaa")), 200);
        assert_eq!(status(&with_metrics, metrics, None, Some("read-key-aaaaaaaaaaaa")), 403);
        assert_eq!(status(&with_metrics, metrics, None, None), 401);
        assert_eq!(status(&with_metrics, search, Some("default"), Some("metrics-key-aaaaaaaaa")), 403);

        // Open: everything but a metrics key's route answers without a key.
        let open = Keys::open();
        assert_eq!(status(&open, create, Some("x"), None), 200);
        assert_eq!(status(&open, metrics, None, None), 200);
        let open_metrics = Keys::open().with_metrics_key("metrics-key-aaaaaaaaa");
        assert_eq!(status(&open_metrics, metrics, None, None), 401);
        assert_eq!(status(&open_metrics, search, Some("default"), None), 200);
        // Required with no key at all: only the open routes answer.
        let none = Keys::required(vec![]).unwrap();
        assert_eq!(status(&none, search, Some("default"), Some("read-key-aaaaaaaaaaaa")), 401);
        assert_eq!(status(&none, route("GET", "/"), None, None), 200);
    }

    #[test]
    fn the_key_comes_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("api-key", "k2".parse().unwrap());
        assert_eq!(presented(&h), Some(&b"k2"[..]));
        h.insert(header::AUTHORIZATION, "bEaReR  k1 ".parse().unwrap());
        assert_eq!(presented(&h), Some(&b"k1"[..]), "Authorization first");
        h.insert(header::AUTHORIZATION, "Basic eDp5".parse().unwrap());
        assert_eq!(presented(&h), Some(&b"k2"[..]), "not a bearer token");
    }

    /// Finding a key among 100 (the last one, all compared) stays well
    /// under a search's cost. The bound only catches a gross mistake (a
    /// hash per comparison, say): 20 µs failed once when the 2-core machine
    /// also ran a build; the figure itself is printed, and measured in
    /// `bench/security/auth_cost.py`.
    #[test]
    fn comparing_a_hundred_keys_is_cheap() {
        let list = (0..100).map(|i| key(&format!("k{i}"), Role::Read, &format!("key-{i}-aaaaaaaaaaaaaaaa"), None)).collect();
        let keys = Keys::required(list).unwrap();
        let search = rule_for(&Method::POST, "/search").unwrap();
        let last = b"key-99-aaaaaaaaaaaaaaaa";
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let caller = decide(&keys, search, Ok(Some("default")), Some(std::hint::black_box(&last[..])), None).unwrap();
            assert_eq!(caller.key.as_deref(), Some("k99"));
        }
        let each = start.elapsed() / n;
        eprintln!("decide with 100 keys: {each:?}");
        assert!(each < std::time::Duration::from_micros(500), "{each:?}");
        // And what a rate-limit check adds (a budget that never refuses).
        let limits = crate::ratelimit::RateLimits { search: Some(1e6), ..Default::default() };
        let limiters = crate::ratelimit::Limiters::new(&limits, 1024);
        let caller = decide(&keys, search, Ok(Some("default")), Some(&last[..]), None).unwrap();
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(limiters.admit(&caller, Budget::Search, 1).is_ok());
        }
        eprintln!("rate-limit check: {:?}", start.elapsed() / n);
        // Equal and unequal hashes, differing in any one byte.
        let h = hash_key(b"x");
        assert!(bool::from(same(&words(&h), &words(&h))));
        for byte in 0..32 {
            let mut other = h;
            other[byte] ^= 1;
            assert!(!bool::from(same(&words(&h), &words(&other))), "byte {byte}");
        }
    }

    #[test]
    fn keys_must_be_distinct() {
        let a = key("a", Role::Read, "aaaaaaaaaaaaaaaaaaaa", None);
        let b = key("b", Role::Read, "aaaaaaaaaaaaaaaaaaaa", None);
        assert!(Keys::required(vec![a.clone(), b]).unwrap_err().to_string().contains("same key"));
        let a2 = key("a", Role::Admin, "bbbbbbbbbbbbbbbbbbbb", None);
        assert!(Keys::required(vec![a, a2]).unwrap_err().to_string().contains("named"));
    }
}
