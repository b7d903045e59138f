//! VectorWise collections: points with ids and payloads, written through a
//! write-ahead log into segments, searched as one. Knows nothing of HTTP.
//! See ARCHITECTURE.md, "Collections: the write path".

mod bytes;
mod collection;
pub mod error;
mod files;
pub mod ids;
pub mod filter;
pub mod manifest;
mod optimiser;
pub mod payload_index;
pub mod record;
mod segment;
pub mod state;
pub mod snapshot;
mod store;
pub mod wal;

pub use collection::{
    prepare_points, Collection, CollectionStats, DEFAULT_WRITE_BACKLOG, FilterReport, Found, NewPoint, OptimiserStats, SearchOptions, SearchOutcome, SegmentStats,
    StoredPoint,
};
pub use ids::PointId;
pub use filter::{Condition, Filter, KeyPath, MatchValue, NumRange};
pub use payload_index::{FieldSpec, FieldType, MAX_PAYLOAD_CHECKS};
pub use error::{Error, Loc, Result};
pub use manifest::CollectionConfig;
pub use state::StateId;
pub use snapshot::{SnapshotInfo, SnapshotSummary};
pub use store::{DEFAULT_MAX_SNAPSHOTS, Store, valid_name};
pub use wal::SyncMode;
