//! Point ids: an unsigned integer below 2^63, or a UUID.
//!
//! Inside a collection every point has a **key**, a `u64`: an integer id is
//! its own key; a UUID gets a key from 2^63 on (never one an integer id can
//! have), given in order under the write lock the first time the UUID is
//! written, and kept while the point lives. Segments, the id map, deleted
//! sets and filters deal in keys only, so a UUID costs its 16 bytes in the
//! map below and nothing on the search path.
//!
//! The map (UUID ⇄ key) is rebuilt at open from two sources:
//! - the log: an upsert that gives a UUID its key carries both (record kind 3,
//!   [`crate::record`]), a delete of the key ends the pair;
//! - `uuids.bin`, the live pairs written atomically at each checkpoint
//!   *before* the manifest that moves `wal_from` past their records.
//!
//! Replaying the log from `wal_from` over a `uuids.bin` written at any
//! position at or past it gives the same map: each pair's last record in the
//! log decides it, and pairs the log does not touch are as the file has them.
//!
//! ```text
//! uuids.bin: "VWUUIDS1" | next key u64 | count u64 | count × (key u64 | uuid u128) | xxh3-64 of all before
//! ```

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// The first key a UUID can have.
pub const UUID_KEY_BASE: u64 = 1 << 63;
pub(crate) const UUIDS_FILE: &str = "uuids.bin";
const MAGIC: &[u8; 8] = b"VWUUIDS1";

/// Whether `key` stands for a UUID.
pub fn is_uuid_key(key: u64) -> bool {
    key >= UUID_KEY_BASE
}

/// A point's id as the user gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    /// Below 2^63 ([`vectorwise_index::MAX_ID`]).
    Num(u64),
    Uuid(u128),
}

impl PointId {
    /// Reads an id as JSON gives it: an integer, or a UUID string (any form
    /// the `uuid` crate parses: hyphenated, simple, braced, URN).
    pub fn parse_uuid(text: &str) -> Option<PointId> {
        uuid::Uuid::try_parse(text).ok().map(|u| PointId::Uuid(u.as_u128()))
    }
}

impl std::fmt::Display for PointId {
    /// An integer as digits; a UUID hyphenated, lower case.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{}", uuid::Uuid::from_u128(*u).hyphenated()),
        }
    }
}

impl serde::Serialize for PointId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            PointId::Num(n) => s.serialize_u64(*n),
            PointId::Uuid(_) => s.collect_str(self),
        }
    }
}

/// An integer (any `u64`: the range is the caller's to check) or a UUID
/// string.
impl<'de> serde::Deserialize<'de> for PointId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PointId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an unsigned integer or a UUID string")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<PointId, E> {
                Ok(PointId::Num(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<PointId, E> {
                u64::try_from(n).map(PointId::Num).map_err(|_| E::custom("a negative id"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<PointId, E> {
                PointId::parse_uuid(s).ok_or_else(|| E::custom("not a UUID"))
            }
        }
        d.deserialize_any(V)
    }
}

impl PointId {
    /// The integer id (`None`: a UUID).
    pub fn as_num(self) -> Option<u64> {
        match self {
            PointId::Num(n) => Some(n),
            PointId::Uuid(_) => None,
        }
    }
}

impl PartialEq<u64> for PointId {
    fn eq(&self, n: &u64) -> bool {
        *self == PointId::Num(*n)
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}

/// The UUIDs of a collection and their keys (see the module's text).
#[derive(Clone, Debug)]
pub(crate) struct UuidMap {
    /// The live pairs.
    forward: HashMap<u128, u64>,
    /// The live pairs, and those ended since the sweep before last: a search
    /// that found a point just before its delete still names it (keys are
    /// never given twice, so a key's UUID never changes).
    reverse: HashMap<u64, u128>,
    /// Keys ended since the last sweep, and in the sweep before it.
    ended: Vec<u64>,
    ended_before: Vec<u64>,
    /// The next key to give (never lower than every key given).
    next: u64,
    /// Counts changes (what `uuids.bin` holds is compared with it).
    pub version: u64,
}

impl Default for UuidMap {
    fn default() -> Self {
        UuidMap { forward: HashMap::new(), reverse: HashMap::new(), ended: Vec::new(), ended_before: Vec::new(), next: UUID_KEY_BASE, version: 0 }
    }
}

impl UuidMap {
    pub(crate) fn len(&self) -> usize {
        self.forward.len()
    }

    /// Whether a key was ever given (the next one then matters: keys are
    /// never given twice).
    pub(crate) fn ever_used(&self) -> bool {
        self.next > UUID_KEY_BASE
    }

    pub(crate) fn key_of(&self, uuid: u128) -> Option<u64> {
        self.forward.get(&uuid).copied()
    }

    /// The UUID of `key`, live or recently ended.
    pub(crate) fn uuid_of(&self, key: u64) -> Option<u128> {
        self.reverse.get(&key).copied()
    }

    /// The id a key stands for: an integer id is its own key (`None`: a
    /// UUID key no longer named, its point deleted long since it was found).
    pub(crate) fn id_of(&self, key: u64) -> Option<PointId> {
        if is_uuid_key(key) { self.uuid_of(key).map(PointId::Uuid) } else { Some(PointId::Num(key)) }
    }

    /// The UUID of `key` while its point lives.
    pub(crate) fn live_uuid_of(&self, key: u64) -> Option<u128> {
        self.uuid_of(key).filter(|u| self.forward.get(u) == Some(&key))
    }

    /// The key `uuid` has, or the one it would get (`fresh` holds those given
    /// in the batch being prepared, so a UUID twice in it gets one key).
    pub(crate) fn key_for(&self, uuid: u128, fresh: &mut HashMap<u128, u64>, taken: &mut u64) -> u64 {
        if let Some(k) = self.key_of(uuid) {
            return k;
        }
        *fresh.entry(uuid).or_insert_with(|| {
            let k = self.next.max(*taken);
            *taken = k + 1;
            k
        })
    }

    /// Records that `uuid` has `key` (an applied upsert).
    pub(crate) fn set(&mut self, uuid: u128, key: u64) {
        if let Some(old) = self.forward.insert(uuid, key)
            && old != key
        {
            self.ended.push(old);
        }
        if let Some(other) = self.reverse.insert(key, uuid)
            && other != uuid
            && self.forward.get(&other) == Some(&key)
        {
            self.forward.remove(&other);
        }
        self.next = self.next.max(key + 1);
        self.version += 1;
    }

    /// Ends the pair of `key` (an applied delete). Its UUID still names the
    /// key until the sweep after next ([`UuidMap::sweep`]).
    pub(crate) fn remove_key(&mut self, key: u64) {
        if let Some(&uuid) = self.reverse.get(&key)
            && self.forward.get(&uuid) == Some(&key)
        {
            self.forward.remove(&uuid);
            self.ended.push(key);
            self.version += 1;
        }
    }

    /// Forgets the names of the keys ended before the previous sweep (run
    /// at each checkpoint: far longer ago than any search takes).
    pub(crate) fn sweep(&mut self) {
        for k in std::mem::take(&mut self.ended_before) {
            if self.reverse.get(&k).is_some_and(|u| self.forward.get(u) != Some(&k)) {
                self.reverse.remove(&k);
            }
        }
        self.ended_before = std::mem::take(&mut self.ended);
    }

    /// Writes the map to `dir/uuids.bin` atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let mut pairs: Vec<(u64, u128)> = self.forward.iter().map(|(&u, &k)| (k, u)).collect();
        pairs.sort_unstable();
        let mut bytes = Vec::with_capacity(32 + 24 * pairs.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.next.to_le_bytes());
        bytes.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
        for (k, u) in pairs {
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let sum = xxh3_64(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        vectorwise_index::write_atomic(&dir.join(UUIDS_FILE), |w| w.write_all(&bytes))?;
        Ok(())
    }

    /// Reads `dir/uuids.bin` (none: an empty map); refuses a damaged file.
    pub(crate) fn read(dir: &Path) -> Result<UuidMap> {
        let path = dir.join(UUIDS_FILE);
        vectorwise_index::remove_stale_temporaries(&path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UuidMap::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let bad = |reason: &str| Error::corrupt(&path, format!("UUID map {reason}"));
        if bytes.len() < 32 || &bytes[..8] != MAGIC {
            return Err(bad("is not a VectorWise UUID map or is truncated"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut h = Xxh3::new();
        h.update(body);
        if h.digest().to_le_bytes() != sum {
            return Err(bad("fails its checksum"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        let next = u64_at(8);
        let count = u64_at(16) as usize;
        if body.len() != 24 + count.saturating_mul(24) {
            return Err(bad("has the wrong length for its count"));
        }
        let mut map = UuidMap { next: next.max(UUID_KEY_BASE), ..Default::default() };
        for pair in body[24..].chunks_exact(24) {
            let key = u64::from_le_bytes(pair[..8].try_into().unwrap());
            let uuid = u128::from_le_bytes(pair[8..].try_into().unwrap());
            if !is_uuid_key(key) || key >= map.next || map.forward.insert(uuid, key).is_some() || map.reverse.insert(key, uuid).is_some()
            {
                return Err(bad("holds a bad or repeated pair"));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse() {
        let u = PointId::parse_uuid("550E8400-E29B-41D4-A716-446655440000").unwrap();
        assert_eq!(u.to_string(), "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(PointId::parse_uuid("550e8400e29b41d4a716446655440000"), Some(u));
        assert_eq!(serde_json::to_string(&[u, PointId::Num(7)]).unwrap(), r#"["550e8400-e29b-41d4-a716-446655440000",7]"#);
        let back: Vec<PointId> = serde_json::from_str(r#"["550e8400-e29b-41d4-a716-446655440000",7]"#).unwrap();
        assert_eq!(back, [u, PointId::Num(7)]);
        for bad in ["[-1]", "[1.5]", r#"["x"]"#, "[null]"] {
            assert!(serde_json::from_str::<Vec<PointId>>(bad).is_err(), "{bad}");
        }
        for bad in ["", "7", "550e8400-e29b-41d4-a716-44665544000", "550e8400-e29b-41d4-a716-44665544000g"] {
            assert_eq!(PointId::parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_map_gives_keys_in_order_and_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = UuidMap::default();
        let (mut fresh, mut taken) = (HashMap::new(), 0);
        let a = m.key_for(10, &mut fresh, &mut taken);
        assert_eq!(m.key_for(10, &mut fresh, &mut taken), a, "one key for a UUID twice in a batch");
        let b = m.key_for(11, &mut fresh, &mut taken);
        assert_eq!((a, b), (UUID_KEY_BASE, UUID_KEY_BASE + 1));
        m.set(10, a);
        m.set(11, b);
        m.remove_key(a);
        assert_eq!((m.key_of(10), m.live_uuid_of(a), m.key_of(11)), (None, None, Some(b)));
        // An ended key keeps its name until the sweep after next.
        assert_eq!(m.uuid_of(a), Some(10));
        m.sweep();
        assert_eq!(m.uuid_of(a), Some(10));
        m.sweep();
        assert_eq!(m.uuid_of(a), None);
        // A UUID deleted and written again gets a new key, never an old one.
        let (mut fresh, mut taken) = (HashMap::new(), 0);
        assert_eq!(m.key_for(10, &mut fresh, &mut taken), UUID_KEY_BASE + 2);
        m.write(dir.path()).unwrap();
        let back = UuidMap::read(dir.path()).unwrap();
        assert_eq!((back.key_of(11), back.uuid_of(b), back.len(), back.next), (Some(b), Some(11), 1, UUID_KEY_BASE + 2));
        // Damage is refused with the file's name.
        let path = dir.path().join(UUIDS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 9;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = UuidMap::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("uuids.bin") && e.contains("checksum"), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(UuidMap::read(dir.path()).unwrap().len(), 0);
    }
}
