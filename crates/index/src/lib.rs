//! The VectorWise engine: distance kernels, exact and HNSW search, and the
//! index file format. Knows nothing of HTTP.
//!
//! Vocabulary: a *point* is one stored vector; its *offset* (u32) is its
//! position in the index; its *id* (u64) is what users see. Today ids equal
//! offsets (the row in the input file), but the file stores them separately so
//! that user ids, deletes and segments can come without a format rewrite.

pub mod dataset;
pub mod distance;
pub mod error;
pub mod exact;
pub mod format;
mod fsutil;
pub mod hnsw;
mod index;
pub mod params;
pub mod topk;
pub mod vectors;
pub mod visited;

pub use error::{Error, Result};
pub use fsutil::write_atomic;
pub use index::{Index, IndexInfo};
pub use params::{Method, SearchParams};
pub use vectors::Matrix;

/// One search hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    /// External id of the point.
    pub id: u64,
    /// Exact squared L2 distance from the query.
    pub distance: f32,
}

/// Builds an HNSW index over `vectors` and writes it to `path` atomically.
/// Returns the build time in seconds (graph only, not the write).
pub fn build_index(
    vectors: &Matrix,
    path: &std::path::Path,
    opts: &hnsw::BuildOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<f64> {
    let start = std::time::Instant::now();
    let graph = hnsw::builder::build(vectors.as_slice(), vectors.dim(), opts, progress)?;
    let build_seconds = start.elapsed().as_secs_f64();
    format::write(
        path,
        &format::IndexParts { dim: vectors.dim(), vectors: vectors.as_slice(), ids: None, graph: &graph, build_seconds },
    )?;
    Ok(build_seconds)
}
