//! The small files beside a sealed segment's index file: its payloads and
//! its deleted set. Both written atomically and checksummed; both refused
//! with the file's name when damaged.
//!
//! ```text
//! payloads: "VWPAYLD1" | count u64 | (count + 1) × end offset u64 | JSON text … | xxh3-64 of all before
//! deleted:  "VWDELET1" | count u64 | count × offset u32 (ascending)   | xxh3-64 of all before
//! ```
//! Payload `i` is the bytes between end offsets `i` and `i + 1` of the text
//! (empty: no payload), in the segment's offset order.

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::io::Write;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

const PAYLOAD_MAGIC: &[u8; 8] = b"VWPAYLD1";
const DELETED_MAGIC: &[u8; 8] = b"VWDELET1";

/// Writes the payloads of a segment (offset order) to `path` atomically.
pub(crate) fn write_payloads<'a>(path: &Path, payloads: impl ExactSizeIterator<Item = Option<&'a str>> + Clone) -> Result<()> {
    vectorwise_index::write_atomic(path, |w| {
        let mut h = Xxh3::new();
        let mut put = |w: &mut dyn Write, b: &[u8]| -> std::io::Result<()> {
            h.update(b);
            w.write_all(b)
        };
        put(w, PAYLOAD_MAGIC)?;
        put(w, &(payloads.len() as u64).to_le_bytes())?;
        let mut end = 0u64;
        put(w, &end.to_le_bytes())?;
        for p in payloads.clone() {
            end += p.map_or(0, |s| s.len() as u64);
            put(w, &end.to_le_bytes())?;
        }
        for p in payloads {
            put(w, p.unwrap_or("").as_bytes())?;
        }
        let sum = h.digest();
        w.write_all(&sum.to_le_bytes())
    })?;
    Ok(())
}

/// A segment's payloads, read in place.
#[derive(Debug)]
pub(crate) struct Payloads {
    map: Option<Mmap>,
    count: usize,
    path: PathBuf,
}

impl Payloads {
    pub(crate) fn open(path: &Path) -> Result<Payloads> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
        if len < 8 + 8 + 8 + 8 {
            return Err(Error::corrupt(path, "payload file is truncated"));
        }
        // SAFETY: the segment's files are never modified in place (sealed
        // segments are immutable; a rewrite makes a new file), so the
        // mapping stays valid for the life of this handle.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if &map[..8] != PAYLOAD_MAGIC {
            return Err(Error::corrupt(path, "not a VectorWise payload file (bad magic)"));
        }
        let stored = u64::from_le_bytes(map[len - 8..].try_into().unwrap());
        if xxh3_64(&map[..len - 8]) != stored {
            return Err(Error::corrupt(path, "payload file checksum mismatch"));
        }
        let count = u64::from_le_bytes(map[8..16].try_into().unwrap()) as usize;
        let table_end = count.checked_add(1).and_then(|c| c.checked_mul(8)).and_then(|b| b.checked_add(16));
        let Some(table_end) = table_end.filter(|&e| e <= len - 8) else {
            return Err(Error::corrupt(path, "payload table runs past the end"));
        };
        let p = Payloads { map: Some(map), count, path: path.to_path_buf() };
        let text = len - 8 - table_end;
        let mut prev = 0;
        for i in 0..=count {
            let end = p.end(i);
            if end < prev || end > text as u64 {
                return Err(Error::corrupt(path, format!("payload {i} runs past the text")));
            }
            prev = end;
        }
        for i in 0..count {
            if std::str::from_utf8(p.bytes(i)).is_err() {
                return Err(Error::corrupt(path, format!("payload {i} is not UTF-8")));
            }
        }
        Ok(p)
    }

    /// No payloads at all (an imported index).
    /// Bytes of the file (0 without one).
    pub(crate) fn file_bytes(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    pub(crate) fn none(count: usize) -> Payloads {
        Payloads { map: None, count, path: PathBuf::new() }
    }

    fn end(&self, i: usize) -> u64 {
        let map = self.map.as_ref().expect("mapped");
        let at = 16 + 8 * i;
        u64::from_le_bytes(map[at..at + 8].try_into().unwrap())
    }

    fn bytes(&self, i: usize) -> &[u8] {
        let map = self.map.as_ref().expect("mapped");
        let text = 16 + 8 * (self.count + 1);
        &map[text + self.end(i) as usize..text + self.end(i + 1) as usize]
    }

    /// The payload of offset `i` (JSON text), if it has one.
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        if self.map.is_none() || i >= self.count {
            return None;
        }
        // Checked UTF-8 at open.
        std::str::from_utf8(self.bytes(i)).ok().filter(|s| !s.is_empty())
    }

    /// Refuses a payload file that does not hold one entry per point.
    pub(crate) fn check_count(&self, points: usize) -> Result<()> {
        if self.count != points {
            return Err(Error::corrupt(&self.path, format!("holds {} payloads for {points} points", self.count)));
        }
        Ok(())
    }

    /// The file's stored xxh3-64 (checked at open); 0 for no file.
    pub(crate) fn checksum(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| u64::from_le_bytes(m[m.len() - 8..].try_into().unwrap()))
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.map.as_ref().map(|_| self.path.as_path())
    }
}

/// Writes a deleted set (ascending offsets) to `path` atomically.
pub(crate) fn write_deleted(path: &Path, offsets: &[u32]) -> Result<()> {
    vectorwise_index::write_atomic(path, |w| {
        let mut buf = Vec::with_capacity(24 + 4 * offsets.len());
        buf.extend_from_slice(DELETED_MAGIC);
        buf.extend_from_slice(&(offsets.len() as u64).to_le_bytes());
        for o in offsets {
            buf.extend_from_slice(&o.to_le_bytes());
        }
        let sum = xxh3_64(&buf);
        buf.extend_from_slice(&sum.to_le_bytes());
        w.write_all(&buf)
    })?;
    Ok(())
}

/// Reads a deleted set; every offset must be below `count`.
pub(crate) fn read_deleted(path: &Path, count: usize) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 24 || &bytes[..8] != DELETED_MAGIC {
        return Err(Error::corrupt(path, "not a VectorWise deleted-set file"));
    }
    let n = bytes.len();
    if xxh3_64(&bytes[..n - 8]) != u64::from_le_bytes(bytes[n - 8..].try_into().unwrap()) {
        return Err(Error::corrupt(path, "deleted-set checksum mismatch"));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    if len.checked_mul(4).and_then(|b| b.checked_add(24)) != Some(n) {
        return Err(Error::corrupt(path, "deleted-set length does not match its count"));
    }
    let offsets: Vec<u32> = bytes[16..n - 8].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    if offsets.iter().any(|&o| o as usize >= count) || offsets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::corrupt(path, "deleted-set offsets out of range or order"));
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_and_deleted_sets_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let items = [Some(r#"{"a":1}"#), None, Some(r#"{"b":"é"}"#)];
        write_payloads(&path, items.iter().copied()).unwrap();
        let p = Payloads::open(&path).unwrap();
        assert_eq!((p.get(0), p.get(1), p.get(2), p.get(3)), (items[0], None, items[2], None));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Payloads::open(&path), Err(Error::Corrupt { .. })));

        let del = dir.path().join("d");
        write_deleted(&del, &[1, 5, 9]).unwrap();
        assert_eq!(read_deleted(&del, 10).unwrap(), vec![1, 5, 9]);
        assert!(read_deleted(&del, 9).is_err());
        let mut bytes = std::fs::read(&del).unwrap();
        bytes[17] ^= 1;
        std::fs::write(&del, &bytes).unwrap();
        assert!(matches!(read_deleted(&del, 10), Err(Error::Corrupt { .. })));
    }
}
