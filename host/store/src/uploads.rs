//! [`UploadIndex`]: the records of files submitted for jobs to use (uploads), by domain and
//! sha256, each with the time it expires. The bytes are not here: they are in the artifact
//! store (`omni-artifacts`), under `uploads/<domain>/<sha256>`, and a sweep deletes the bytes of
//! uploads no record keeps.

use async_trait::async_trait;

use crate::{Result, Upload};
// Only the docs name it (their `# Errors`).
#[cfg(doc)]
use crate::StoreError;

/// How long a record is kept after it expires, so that a sweep never deletes the bytes of an
/// upload a submission found alive a moment before: a record is read (with its expiry in the
/// past) for this long, then forgotten.
pub const UPLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Uploads by domain and sha256. A record's expiry only grows: of two writes, the later
/// expiry wins, whatever the order they arrive in.
#[async_trait]
pub trait UploadIndex: Send + Sync + std::fmt::Debug + 'static {
    /// Records `upload`, or keeps the one recorded longer: the record answered has the later
    /// of the two expiries and the earlier creation time.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_upload(&self, upload: &Upload) -> Result<Upload>;

    /// The upload of `domain` with that sha256, while its record is kept (until
    /// [`UPLOAD_GRACE`] after it expires: the caller compares `expires_at` with the time).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get_upload(&self, domain: &str, sha256: &str) -> Result<Option<Upload>>;

    /// Every kept record of `domain`'s uploads, by sha256 (for the sweep: the bytes of the
    /// others may go).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn list_uploads(&self, domain: &str) -> Result<Vec<Upload>>;

    /// Forgets the records of `domain` that expired more than [`UPLOAD_GRACE`] before `now`,
    /// and answers how many (a backend whose records expire by themselves answers 0).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn forget_uploads(&self, domain: &str, now: chrono::DateTime<chrono::Utc>)
    -> Result<u64>;
}
