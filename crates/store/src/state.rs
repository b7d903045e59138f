//! A collection's state identity: names the collection's contents in a way
//! that holds across processes, for the server's shared answer cache.
//!
//! **What it is.** Each collection carries a random 128-bit `uuid` made when
//! it is created (or imported) and kept in its manifest, and a *history
//! digest*: SHA-256 chained over every log record applied since, in order —
//! `digest' = SHA-256("record" ‖ digest ‖ lsn ‖ len ‖ body)`, the record's
//! exact bytes as logged. The manifest keeps the digest as of its `wal_from`
//! (the writes its segments already hold), so opening the collection — the
//! manifest's digest, then each replayed record chained — arrives at the
//! digest the writing process had after the same records.
//!
//! **Why equal identities mean equal contents.** A collection's contents
//! (its live points, vectors and payloads) are a function of its creation
//! and of the sequence of records applied to it: segments, seals, merges
//! and deleted sets only re-arrange what the records say, and records are
//! self-contained (no file they point to). The digest is a collision-
//! resistant hash of that sequence from a random start: two processes show
//! the same digest only if they applied the same records to the same start.
//! That holds where the LSN alone would not: a snapshot restored twice and
//! then written differently reaches the same LSN with different contents,
//! and different digests. The starts are domain-separated: a creation
//! (`"created" ‖ uuid`), a restored snapshot (`"snapshot" ‖ uuid ‖ position
//! ‖ the digest captured`, whose own log then chains on top), and a
//! manifest written before identities existed, which gets a fresh random
//! uuid at every opening until a checkpoint persists one (so it is never
//! shared with a copy taken before).
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

/// The digest a snapshot's restored collection starts from: the captured
/// state, marked as restored (its log is the memory points re-written).
pub(crate) fn restored(uuid: &[u8; 16], position: u64, digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vectorwise.state.snapshot\0");
    h.update(uuid);
    h.update(position.to_le_bytes());
    h.update(digest);
    h.finalize().into()
}

/// `digest` after the record `body` logged at `lsn`.
pub(crate) fn chain(digest: &[u8; 32], lsn: u64, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vectorwise.state.record\0");
    h.update(digest);
    h.update(lsn.to_le_bytes());
    h.update((body.len() as u64).to_le_bytes());
    h.update(body);
    h.finalize().into()
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
        let base = chain(&d, 5, b"abc");
        assert_ne!(base, chain(&d, 6, b"abc"));
        assert_ne!(base, chain(&d, 5, b"abd"));
        assert_ne!(base, chain(&created(&[2; 16]), 5, b"abc"));
        assert_ne!(restored(&[1; 16], 5, &d), chain(&d, 5, b""));
    }
}
