//! The store's one error type. Each variant says whether it is the caller's
//! fault or the environment's, so the server maps it with one match.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in a request a problem lies (`points`, 3, `vector`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loc {
    Field(&'static str),
    Index(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused (bad vector, bad parameter, corrupt index file).
    #[error(transparent)]
    Index(vectorwise_index::Error),

    /// An I/O operation on `path` failed. Environment fault.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The disk holding `path` is full (ENOSPC / EDQUOT): the write was not
    /// applied. Environment fault; reads go on.
    #[error("no space left on the device holding {path}")]
    DiskFull { path: PathBuf },

    /// A merge was put off: the disk holding `path` has too little room
    /// for its output beside what writes need. Only the optimiser meets it
    /// (its `last_error`); writes go on.
    #[error("{what} put off: it writes about {need_mib} MiB and the disk holding {path} has {free_mib} MiB free, of which {reserve_mib} MiB stay for writes")]
    MergeNeedsRoom { path: PathBuf, what: String, need_mib: u64, free_mib: u64, reserve_mib: u64 },

    /// The log failed to sync earlier: what it holds past that point is
    /// unknown, so writes are refused until the server restarts (and
    /// replays what did reach the disk). Environment fault.
    #[error("the write-ahead log failed to sync and refuses writes until restart")]
    LogFailed,

    /// A store file is damaged or not ours. The collection does not open.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// No collection has this name. User error.
    #[error("collection `{0}` does not exist")]
    NotFound(String),

    /// The collection exists with other settings. User error.
    #[error("collection `{name}` already exists with other settings ({reason})")]
    Conflict { name: String, reason: String },

    /// A payload index on this key exists with another type. User error.
    #[error("`{field}` already has a payload index of type {existing}; delete it first")]
    IndexConflict { field: String, existing: &'static str },

    /// No payload index on this key. User error.
    #[error("`{0}` has no payload index")]
    IndexNotFound(String),

    /// A request field is invalid; `loc` names it. User error.
    #[error("{reason}")]
    Invalid { loc: Vec<Loc>, reason: String },

    /// A point's payload is larger than the collection allows. User error.
    #[error("payload of points[{index}] is {size} bytes; the limit is {limit}")]
    PayloadTooLarge { index: usize, size: usize, limit: usize },

    /// A search's hits would carry more payload bytes than the response may.
    /// User error: ask for fewer hits or vectors, or no payloads.
    #[error("the hits' payloads come to {bytes} bytes, over the response's limit of {limit}; ask for fewer hits or vectors, or no payloads")]
    ResponseTooLarge { bytes: usize, limit: usize },

    /// A snapshot archive is damaged, truncated or not one of ours: what is
    /// wrong, naming the file inside it. User error (the archive given).
    #[error("snapshot archive refused: {0}")]
    BadSnapshot(String),

    /// No snapshot of this name. User error.
    #[error("collection `{collection}` has no snapshot `{name}`")]
    SnapshotNotFound { collection: String, name: String },

    /// A snapshot of this name exists or is being written. User error.
    #[error("snapshot `{0}` already exists; choose another name or delete it first")]
    SnapshotExists(String),

    /// The collection keeps as many snapshots as allowed. User error:
    /// delete one first.
    #[error("collection `{collection}` already has {limit} snapshots, the most it may keep; delete one first")]
    TooManySnapshots { collection: String, limit: usize },

    /// An upsert waited too long for the optimiser to index the points
    /// written before it (the write stall: see
    /// [`crate::Collection::set_write_backlog`]). Nothing was written; retry.
    #[error("the optimiser is behind ({frozen} written points wait to be indexed, the limit is {limit}); nothing was written, retry shortly")]
    Backlogged { frozen: usize, limit: usize },

    /// The collection was dropped while the request ran.
    #[error("collection `{0}` was deleted")]
    Dropped(String),
}

impl Error {
    /// An I/O error on `path`; ENOSPC / EDQUOT become [`Error::DiskFull`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        // ENOSPC 28, EDQUOT 122 on Linux.
        if matches!(source.raw_os_error(), Some(28) | Some(122)) || source.kind() == std::io::ErrorKind::StorageFull {
            return Error::DiskFull { path };
        }
        Error::Io { path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), reason: reason.into() }
    }

    pub(crate) fn invalid(loc: Vec<Loc>, reason: impl Into<String>) -> Self {
        Error::Invalid { loc, reason: reason.into() }
    }
}

impl From<vectorwise_index::Error> for Error {
    fn from(e: vectorwise_index::Error) -> Self {
        match e {
            vectorwise_index::Error::Io { path, source } => Error::io(path, source),
            e => Error::Index(e),
        }
    }
}
