//! [`LogStore`]: the lines a job's steps print, by `seq`.

use async_trait::async_trait;

use crate::{JobId, LogLine, LogPage, LogQuery, Result};
// Only the docs name it (their `# Errors`).
#[cfg(doc)]
use crate::StoreError;

/// A job's log: lines written in batches, read in pages by `seq`.
#[async_trait]
pub trait LogStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends lines to a job's log (one batch, one write). Lines carry their own `seq`;
    /// writing a line again with a `seq` already stored replaces it (so a collector that resumes
    /// after a crash cannot duplicate lines).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()>;

    /// A page of a job's log, by `seq`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage>;
}
