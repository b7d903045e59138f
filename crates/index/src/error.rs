//! The engine's one error type. Each variant says whether it is the caller's
//! fault (bad input, bad file) or an internal fault, so the server can map it
//! to a status with one exhaustive match.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed. Internal fault or environment problem.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An index or vector file is not what it claims to be (bad magic, version,
    /// size, checksum, truncated, or structurally inconsistent). User error:
    /// the file must be rebuilt.
    #[error("{path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },

    /// A vector file has a format we do not read (wrong dtype, order, shape).
    #[error("{path}: unsupported vector file: {reason}")]
    UnsupportedFile { path: PathBuf, reason: String },

    /// A query or data vector has the wrong number of dimensions. User error.
    #[error("dimension mismatch: expected {expected}, got {actual}")]
    DimensionMismatch { expected: usize, actual: usize },

    /// A parameter is outside its valid range. User error.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },

    /// A vector contains NaN or infinity. User error.
    #[error("vector {index} contains a non-finite value")]
    NonFinite { index: usize },

    /// A vector is all zeros where the metric needs a direction (`cosine`).
    /// User error.
    #[error("vector {index} is the zero vector, which has no direction under the cosine metric")]
    ZeroVector { index: usize },

    /// A vector's values are so large that distances would overflow f32
    /// (squared norm at least [`crate::metric::MAX_NORM_SQUARED`]). User error.
    #[error("vector {index} is too large: its squared norm must stay below 1e34; scale the vectors down")]
    TooLarge { index: usize },

    /// A non-zero vector's values are so small that distances would
    /// underflow f32 (squared norm under [`crate::metric::MIN_NORM_SQUARED`]
    /// under `l2` or `ip`). User error.
    #[error("vector {index} is too small: a non-zero vector's squared norm must be at least 1e-20 under l2 and ip; scale the vectors up, or use cosine")]
    TooSmall { index: usize },

    /// A build was asked to stop ([`crate::Cancel`]); nothing was written
    /// at its path.
    #[error("the build was cancelled")]
    Cancelled,

    /// Two points were given the same id. User error.
    #[error("duplicate id {id} (rows {first} and {second})")]
    DuplicateId { id: u64, first: usize, second: usize },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::CorruptFile { path: path.into(), reason: reason.into() }
    }
}
