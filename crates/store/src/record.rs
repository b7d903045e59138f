//! The records the write-ahead log carries, and their bytes.
//!
//! ```text
//! upsert: 1u8 | count u32 | dim u32 | count × (id u64 | dim × f32 | payload_len u32 | payload JSON)
//! delete: 2u8 | count u32 | count × id u64
//! ```
//! Little-endian. `payload_len` 0: no payload (a payload is a JSON object,
//! never empty text).

use crate::error::{Error, Result};
use std::sync::Arc;

/// One point of an upsert, as the collection keeps it (vector prepared for
/// the metric, payload as compact JSON text).
#[derive(Clone, Debug, PartialEq)]
pub struct PointWrite {
    pub id: u64,
    pub vector: Vec<f32>,
    pub payload: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Upsert(Vec<PointWrite>),
    Delete(Vec<u64>),
}

const UPSERT: u8 = 1;
const DELETE: u8 = 2;

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Upsert(points) => {
                let dim = points.first().map_or(0, |p| p.vector.len());
                let size: usize = points.iter().map(|p| 12 + 4 * dim + p.payload.as_ref().map_or(0, |s| s.len())).sum();
                let mut out = Vec::with_capacity(9 + size);
                out.push(UPSERT);
                out.extend_from_slice(&(points.len() as u32).to_le_bytes());
                out.extend_from_slice(&(dim as u32).to_le_bytes());
                for p in points {
                    debug_assert_eq!(p.vector.len(), dim);
                    out.extend_from_slice(&p.id.to_le_bytes());
                    for x in &p.vector {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    let payload = p.payload.as_deref().unwrap_or("");
                    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                    out.extend_from_slice(payload.as_bytes());
                }
                out
            }
            Record::Delete(ids) => {
                let mut out = Vec::with_capacity(5 + 8 * ids.len());
                out.push(DELETE);
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    out.extend_from_slice(&id.to_le_bytes());
                }
                out
            }
        }
    }

    /// Reads a record; `what` names the log file for the error.
    pub fn decode(bytes: &[u8], what: &std::path::Path) -> Result<Record> {
        let mut r = Reader { bytes, at: 0 };
        let bad = |reason: &str| Error::corrupt(what, format!("bad log record: {reason}"));
        match r.u8().ok_or_else(|| bad("empty"))? {
            UPSERT => {
                let count = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                let dim = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                let mut points = Vec::with_capacity(count.min(bytes.len() / 12 + 1));
                for _ in 0..count {
                    let id = r.u64().ok_or_else(|| bad("truncated"))?;
                    let raw = r.take(4 * dim).ok_or_else(|| bad("truncated"))?;
                    let vector = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                    let len = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                    let text = r.take(len).ok_or_else(|| bad("truncated"))?;
                    let payload = if len == 0 {
                        None
                    } else {
                        Some(Arc::from(std::str::from_utf8(text).map_err(|_| bad("payload is not UTF-8"))?))
                    };
                    points.push(PointWrite { id, vector, payload });
                }
                if r.at != bytes.len() {
                    return Err(bad("trailing bytes"));
                }
                Ok(Record::Upsert(points))
            }
            DELETE => {
                let count = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                let mut ids = Vec::with_capacity(count.min(bytes.len() / 8 + 1));
                for _ in 0..count {
                    ids.push(r.u64().ok_or_else(|| bad("truncated"))?);
                }
                if r.at != bytes.len() {
                    return Err(bad("trailing bytes"));
                }
                Ok(Record::Delete(ids))
            }
            kind => Err(bad(&format!("unknown kind {kind}"))),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let up = Record::Upsert(vec![
            PointWrite { id: 7, vector: vec![1.0, -2.5], payload: Some(Arc::from(r#"{"a":1}"#)) },
            PointWrite { id: u64::MAX >> 1, vector: vec![0.0, 3.0], payload: None },
        ]);
        let del = Record::Delete(vec![1, 2, 3]);
        let p = std::path::Path::new("x.log");
        for r in [up, del] {
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes, p).unwrap(), r);
            for cut in 0..bytes.len() {
                assert!(Record::decode(&bytes[..cut], p).is_err(), "cut at {cut}");
            }
        }
    }
}
