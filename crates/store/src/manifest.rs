//! `manifest.json`: a collection's settings, its live sealed segments, and
//! the LSN its log must be replayed from. Replaced atomically at every
//! checkpoint; the one file that says what the collection is.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use vectorwise_index::Metric;

pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

/// What a collection is created with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    pub dimension: usize,
    pub metric: Metric,
    /// The mutable segment is sealed into an index once it holds this many points.
    pub seal_points: usize,
    /// Largest payload (compact JSON bytes) a point may carry.
    pub max_payload_bytes: usize,
}

pub const DEFAULT_SEAL_POINTS: usize = 10_000;
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 << 10;
pub const MAX_DIMENSION: usize = 65_536;

impl CollectionConfig {
    pub fn new(dimension: usize, metric: Metric) -> Self {
        CollectionConfig { dimension, metric, seal_points: DEFAULT_SEAL_POINTS, max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES }
    }

    pub fn check(&self) -> Result<()> {
        use crate::error::Loc;
        if !(1..=MAX_DIMENSION).contains(&self.dimension) {
            return Err(Error::invalid(vec![Loc::Field("dimension")], format!("must be between 1 and {MAX_DIMENSION}")));
        }
        if !(2..=10_000_000).contains(&self.seal_points) {
            return Err(Error::invalid(vec![Loc::Field("seal_points")], "must be between 2 and 10000000"));
        }
        if !(2..=(16 << 20)).contains(&self.max_payload_bytes) {
            return Err(Error::invalid(vec![Loc::Field("max_payload_bytes")], "must be between 2 and 16777216"));
        }
        Ok(())
    }
}

/// One sealed segment's files (names inside `segments/`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    pub id: u64,
    pub index: String,
    pub payloads: Option<String>,
    pub deleted: Option<String>,
    pub deleted_generation: u64,
    pub points: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub config: CollectionConfig,
    pub segments: Vec<SegmentEntry>,
    /// The declared payload indexes (absent in manifests written before
    /// they existed).
    #[serde(default)]
    pub payload_indexes: Vec<crate::payload_index::FieldSpec>,
    /// Replay the log from here: every record below is in the segments.
    pub wal_from: u64,
    pub next_segment: u64,
}

impl Manifest {
    pub fn new(config: CollectionConfig) -> Manifest {
        Manifest { format: FORMAT, config, segments: Vec::new(), payload_indexes: Vec::new(), wal_from: 1, next_segment: 1 }
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&path, format!("not a collection manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::corrupt(&path, format!("manifest format {} (this build reads {FORMAT})", m.format)));
        }
        m.config.check().map_err(|e| Error::corrupt(&path, format!("bad settings: {e}")))?;
        for s in &m.segments {
            for name in [Some(&s.index), s.payloads.as_ref(), s.deleted.as_ref()].into_iter().flatten() {
                if name.contains('/') || name.contains("..") || name.is_empty() {
                    return Err(Error::corrupt(&path, format!("bad segment file name `{name}`")));
                }
            }
        }
        Ok(m)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        vectorwise_index::write_atomic(&dir.join(MANIFEST), |w| w.write_all(&text))?;
        Ok(())
    }
}
