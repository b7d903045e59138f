//! The records the write-ahead log carries, and their bytes.
//!
//! ```text
//! upsert:       1u8 | count u32 | dim u32 | count × (id u64 | dim × f32 | payload_len u32 | payload JSON)
//! delete:       2u8 | count u32 | count × id u64
//! upsert-uuids: 3u8 | count u32 | dim u32 | count × (id u64 | [uuid u128 if id ≥ 2^63] | dim × f32 | payload_len u32 | payload JSON)
//! ```
//! Little-endian. `payload_len` 0: no payload (a payload is a JSON object,
//! never empty text). `id` is the point's key ([`crate::ids`]): a user's
//! integer id below 2^63, or from 2^63 on the key given to a UUID, which the
//! record carries beside it (kind 3, written only when a point has a UUID,
//! so logs of integer ids read as before).

use crate::error::{Error, Result};
use crate::bytes::Reader;
use std::sync::Arc;

/// One point of an upsert, as the collection keeps it (vector prepared for
/// the metric, payload as compact JSON text).
#[derive(Clone, Debug, PartialEq)]
pub struct PointWrite {
    /// The key ([`crate::ids`]); for a UUID, given under the write lock.
    pub id: u64,
    /// The UUID the key stands for (keys from 2^63 on).
    pub uuid: Option<u128>,
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
const UPSERT_UUIDS: u8 = 3;

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Upsert(points) => {
                let dim = points.first().map_or(0, |p| p.vector.len());
                let size: usize = points.iter().map(|p| 28 + 4 * dim + p.payload.as_ref().map_or(0, |s| s.len())).sum();
                let mut out = Vec::with_capacity(9 + size);
                let uuids = points.iter().any(|p| p.uuid.is_some());
                out.push(if uuids { UPSERT_UUIDS } else { UPSERT });
                out.extend_from_slice(&(points.len() as u32).to_le_bytes());
                out.extend_from_slice(&(dim as u32).to_le_bytes());
                for p in points {
                    debug_assert_eq!(p.vector.len(), dim);
                    out.extend_from_slice(&p.id.to_le_bytes());
                    if uuids && crate::ids::is_uuid_key(p.id) {
                        out.extend_from_slice(&p.uuid.unwrap_or(0).to_le_bytes());
                    }
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
        let mut r = Reader::new(bytes);
        let bad = |reason: &str| Error::corrupt(what, format!("bad log record: {reason}"));
        match r.u8().ok_or_else(|| bad("empty"))? {
            kind @ (UPSERT | UPSERT_UUIDS) => {
                let count = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                let dim = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                let mut points = Vec::with_capacity(count.min(bytes.len() / 12 + 1));
                for _ in 0..count {
                    let id = r.u64().ok_or_else(|| bad("truncated"))?;
                    let uuid = if crate::ids::is_uuid_key(id) {
                        if kind != UPSERT_UUIDS {
                            return Err(bad("a UUID's key without its UUID"));
                        }
                        Some(r.u128().ok_or_else(|| bad("truncated"))?)
                    } else {
                        None
                    };
                    let raw = r.take(4 * dim).ok_or_else(|| bad("truncated"))?;
                    let vector = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                    let len = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                    let text = r.take(len).ok_or_else(|| bad("truncated"))?;
                    let payload = if len == 0 {
                        None
                    } else {
                        Some(Arc::from(std::str::from_utf8(text).map_err(|_| bad("payload is not UTF-8"))?))
                    };
                    points.push(PointWrite { id, uuid, vector, payload });
                }
                if !r.done() {
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
                if !r.done() {
                    return Err(bad("trailing bytes"));
                }
                Ok(Record::Delete(ids))
            }
            kind => Err(bad(&format!("unknown kind {kind}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let up = Record::Upsert(vec![
            PointWrite { id: 7, uuid: None, vector: vec![1.0, -2.5], payload: Some(Arc::from(r#"{"a":1}"#)) },
            PointWrite { id: u64::MAX >> 1, uuid: None, vector: vec![0.0, 3.0], payload: None },
        ]);
        let with_uuids = Record::Upsert(vec![
            PointWrite { id: 7, uuid: None, vector: vec![1.0, -2.5], payload: None },
            PointWrite { id: 1 << 63, uuid: Some(0x1234_5678_9abc_def0_1122_3344_5566_7788), vector: vec![0.5, 3.0], payload: Some(Arc::from("{}")) },
        ]);
        let del = Record::Delete(vec![1, 2, 3, 1 << 63]);
        let p = std::path::Path::new("x.log");
        assert_eq!(up.encode()[0], UPSERT, "integer ids keep the first kind");
        assert_eq!(with_uuids.encode()[0], UPSERT_UUIDS);
        for r in [up, with_uuids, del] {
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes, p).unwrap(), r);
            for cut in 0..bytes.len() {
                assert!(Record::decode(&bytes[..cut], p).is_err(), "cut at {cut}");
            }
        }
        // A UUID's key in a record of the first kind has no UUID beside it.
        let bytes = Record::Upsert(vec![PointWrite { id: 1 << 63, uuid: None, vector: vec![1.0], payload: None }]).encode();
        assert_eq!(bytes[0], UPSERT);
        assert!(Record::decode(&bytes, p).unwrap_err().to_string().contains("without its UUID"));
    }
}
