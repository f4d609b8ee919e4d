//! The engine's error type, sorted by who is to blame: the caller's input,
//! corrupted files, the operating system, resource limits, or a bug of ours.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database, table or column name breaks the naming rules.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "database", "table" or "column".
        what: &'static str,
        /// The offending name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// The caller asked for something that does not exist.
    #[error("{what} {name:?} not found{hint}")]
    NotFound {
        /// "database", "table" or "column".
        what: &'static str,
        /// The missing name, qualified as `database.table` where it helps.
        name: String,
        /// Extra help, starting with "; " or empty.
        hint: String,
    },

    /// Input that is well-formed but not acceptable (bad batch shape, bad scan request).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A file on disk is not what it should be.
    #[error("{}: corruption at offset {offset}: {detail}{hint}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset where the damage was found.
        offset: u64,
        /// What was expected and what was found.
        detail: String,
        /// What the operator can do, starting with "; " or empty.
        hint: String,
    },

    /// A file was written by a newer Telemark than this one.
    #[error(
        "{}: {format} format version {found} is newer than the newest this build reads ({supported}); upgrade Telemark to open this data",
        file.display()
    )]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// "WAL", "segment" or "manifest".
        format: &'static str,
        /// The version in the file.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },

    /// An operating-system I/O call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An earlier fsync or background task failed; the database refuses writes
    /// until it is reopened, because the state of the files is unknown.
    #[error(
        "database is poisoned and refuses writes until reopened: {0}; data acknowledged before this error is safe, reopen the database to replay the WAL"
    )]
    Poisoned(String),

    /// The database was closed.
    #[error("database is closed")]
    Closed,

    /// Object storage (the cold tier) failed or refused a request.
    #[error("object storage: {0}")]
    ObjectStore(String),

    /// A limit was exceeded.
    #[error("resource limit exceeded: {0}")]
    ResourceLimit(String),

    /// An invariant of the engine does not hold: a bug in Telemark.
    #[error("internal error (a bug in Telemark, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// Wraps an `io::Error` with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A corruption error without a recovery hint.
    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption { file: file.into(), offset, detail: detail.into(), hint: String::new() }
    }

    /// True for errors caused by damaged files.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
