//! A collection's state identity: names the collection's contents in a way
//! that holds across processes, for the server's shared answer cache.
//!
//! **What it is.** Each collection carries a random 128-bit `uuid` and a
//! *history digest*: SHA-256 chained over every log record applied, in
//! order — `digest' = SHA-256("record" ‖ digest ‖ lsn ‖ SHA-256(body))`, the
//! record's exact bytes as logged (hashed before the write lock is taken:
//! only the 72-byte step is under it) — from a start named by the uuid. Both are
//! kept in `state.json` beside the manifest, with the digest as of the
//! manifest's `wal_from` (the writes its segments already hold), so opening
//! the collection — that digest, then each replayed record chained — arrives
//! at the digest the writing process had after the same records.
//!
//! **`state.json`** (`{"format", "wal_from", "uuid", "history"}`) is its own
//! file so that the manifest stays readable by builds before it (the
//! manifest refuses unknown fields). A checkpoint writes it (atomically)
//! before the manifest; at open it counts only when its `wal_from` is the
//! manifest's. Missing, garbled, or for another `wal_from` (a crash between
//! the two writes, a directory restored from a snapshot or written by an
//! older build, whose checkpoints move `wal_from` without it): the
//! collection gets a fresh random uuid for the contents it has, written at
//! once. A fresh uuid never names anything else, so it is always exact; it
//! only shares nothing with copies of the directory taken before.
//!
//! **Why equal identities mean equal contents.** A collection's contents
//! (its live points, vectors and payloads) are a function of its creation
//! and of the sequence of records applied to it: segments, seals, merges
//! and deleted sets only re-arrange what the records say, and records are
//! self-contained (no file they point to) — but for a segment that came
//! from outside the log (an import, the served index hard-linked as
//! `default`), whose file could be replaced in place: `state.json` also
//! holds the digest of the sealed segments' file identities ([`files`]) and
//! counts only with the same files. The digest is a collision-
//! resistant hash of that sequence from a random start: two processes show
//! the same digest only if they applied the same records to the same start.
//! That holds where the LSN alone would not: two copies of one directory
//! written differently reach the same LSN with different contents, and
//! different digests. A `state.json` is trusted only with the manifest of
//! its `wal_from`: the digest then names the records below `wal_from`,
//! which the manifest's segments hold, and replay chains the rest; an older
//! build writing to the directory appends records (chained at the next
//! open) and moves `wal_from` only forward, which voids the file.
//!
//! What it does not name: the shape of the segments. Two processes with the
//! same contents may answer an approximate search differently (a segment
//! sealed in one and not yet in the other): each answer is a valid answer
//! of those contents, as an answer kept in one process across a seal is.

use sha2::{Digest, Sha256};

/// One state of one collection (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateId {
    /// Writes applied since this opening: names the state within this
    /// process (with [`crate::Collection::incarnation`]).
    pub version: u64,
    /// Random, made at creation, kept in the manifest.
    pub uuid: [u8; 16],
    /// The LSN of the last record applied (0: none since the start; a
    /// restored snapshot numbers its log from 1 again).
    pub position: u64,
    /// SHA-256 chained over the records applied since creation.
    pub digest: [u8; 32],
}

pub(crate) fn fresh_uuid() -> [u8; 16] {
    rand::random()
}

/// The digest of a collection just created as `uuid`.
pub(crate) fn created(uuid: &[u8; 16]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vectorwise.state.created\0");
    h.update(uuid);
    h.finalize().into()
}


/// A record's own digest (its exact bytes as logged), for [`chain`].
pub(crate) fn record_digest(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vectorwise.state.body\0");
    h.update(body);
    h.finalize().into()
}

/// `digest` after the record whose [`record_digest`] is `body` logged at `lsn`.
pub(crate) fn chain(digest: &[u8; 32], lsn: u64, body: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vectorwise.state.record\0");
    h.update(digest);
    h.update(lsn.to_le_bytes());
    h.update(body);
    h.finalize().into()
}

pub(crate) const STATE_FILE: &str = "state.json";

/// `state.json`: the identity and the digest as of `wal_from`, and the
/// [`files`] digest of the sealed segments the manifest of that `wal_from`
/// names.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    wal_from: u64,
    uuid: String,
    history: String,
    files: String,
}

/// The format of `state.json` (1: before `files`; not trusted).
const FORMAT: u32 = 2;

/// A digest of the sealed segments' files (each one's identity, its header
/// hash, which holds its body's checksum), in the manifest's order. The
/// records do not name these files' contents for a segment that came from
/// outside the log (an imported index, the served index hard-linked as
/// `default`): a file replaced in place under the same name would keep the
/// history while changing the contents. `state.json` counts only with the
/// files it was written with.
pub(crate) fn files(identities: impl Iterator<Item = u128>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vectorwise.state.files\0");
    for id in identities {
        h.update(id.to_le_bytes());
    }
    h.finalize().into()
}

/// The uuid and the digest as of `wal_from` that `dir`'s `state.json`
/// holds for that `wal_from`, else a fresh identity (written at once; see
/// the module doc).
pub(crate) fn load(dir: &std::path::Path, wal_from: u64, files: &[u8; 32]) -> ([u8; 16], [u8; 32]) {
    let kept = std::fs::read(dir.join(STATE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<StateFile>(&bytes).ok())
        .filter(|f| f.format == FORMAT && f.wal_from == wal_from && from_hex::<32>(&f.files).as_ref() == Some(files))
        .and_then(|f| Some((from_hex::<16>(&f.uuid)?, from_hex::<32>(&f.history)?)));
    kept.unwrap_or_else(|| {
        let uuid = fresh_uuid();
        let history = created(&uuid);
        store(dir, wal_from, &uuid, &history, files);
        (uuid, history)
    })
}

/// Writes `state.json` (atomically). A failure is logged: the file then
/// fails to match the manifest at the next open, which makes a fresh identity.
pub(crate) fn store(dir: &std::path::Path, wal_from: u64, uuid: &[u8; 16], history: &[u8; 32], files: &[u8; 32]) {
    let file = StateFile { format: FORMAT, wal_from, uuid: to_hex(uuid), history: to_hex(history), files: to_hex(files) };
    let text = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let path = dir.join(STATE_FILE);
    if let Err(e) = vectorwise_index::write_atomic(&path, |w| std::io::Write::write_all(w, &text)) {
        tracing::warn!(path = %path.display(), error = %e, "could not write the collection's state identity");
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_counts_only_for_its_wal_from_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = files([1u128, 2].into_iter());
        let (u, h) = load(dir.path(), 1, &f);
        assert_eq!(load(dir.path(), 1, &f), (u, h));
        // Another wal_from (a crash between state.json and the manifest):
        // a fresh identity, kept from then on.
        let (u2, h2) = load(dir.path(), 7, &f);
        assert_ne!(u2, u);
        assert_eq!(load(dir.path(), 7, &f), (u2, h2));
        // A segment file replaced in place: another identity.
        let (u3, _) = load(dir.path(), 7, &files([1u128, 3].into_iter()));
        assert_ne!(u3, u2);
        assert_ne!(files([1u128, 2].into_iter()), files([2u128, 1].into_iter()));
        std::fs::write(dir.path().join(STATE_FILE), b"{garbled").unwrap();
        assert_ne!(load(dir.path(), 7, &f).0, u3);
    }

    #[test]
    fn hex_round_trips_and_refuses_bad_text() {
        let u = fresh_uuid();
        assert_eq!(from_hex::<16>(&to_hex(&u)), Some(u));
        assert_eq!(from_hex::<2>("0g00"), None);
        assert_eq!(from_hex::<2>("000"), None);
        assert_ne!(fresh_uuid(), u);
    }

    #[test]
    fn the_chain_depends_on_every_part() {
        let d = created(&[1; 16]);
        let (abc, abd) = (record_digest(b"abc"), record_digest(b"abd"));
        let base = chain(&d, 5, &abc);
        assert_ne!(base, chain(&d, 6, &abc));
        assert_ne!(base, chain(&d, 5, &abd));
        assert_ne!(base, chain(&created(&[2; 16]), 5, &abc));
        assert_ne!(created(&[1; 16]), chain(&d, 5, &record_digest(b"")));
    }
}
