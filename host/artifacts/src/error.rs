//! Why an artifact store call failed.

use std::io;

use crate::{ByteRange, Sha256};

/// Why an artifact store call failed. [`ArtifactError::NotFound`] is its own variant so that
/// callers answer 404 without looking inside; the client's mistakes (a bad key, a body too large
/// or with another hash, a range past the end) are distinct from the backend's failures.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The key or prefix breaks the name rule ([`crate::validate_key`]).
    #[error("invalid artifact name {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No object has that key.
    #[error("no artifact {key:?}")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The body was longer than the put's `max_size`; nothing was stored.
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body's sha256 is not the one the put expected; nothing was stored.
    #[error("the body's sha256 is {actual}, not the expected {expected}")]
    Sha256Mismatch {
        /// What the caller said.
        expected: Sha256,
        /// What the bytes hash to.
        actual: Sha256,
    },
    /// The range selects no byte of the object.
    #[error("the range {range:?} selects no byte of an object of {size} bytes")]
    RangeNotSatisfiable {
        /// The range asked for.
        range: ByteRange,
        /// The object's size.
        size: u64,
    },
    /// The body the caller streamed failed (a client that went away); nothing was stored.
    #[error("reading the body failed")]
    Body(#[source] io::Error),
    /// The directory backend's file system failed.
    #[error("{what}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The S3 backend's server or connection failed.
    #[error("the object store failed: {what}")]
    Backend {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configuration cannot make a store.
    #[error("artifacts configuration: {0}")]
    Config(String),
}

impl ArtifactError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
