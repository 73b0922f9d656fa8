//! [`EventStore`]: the job-change event stream, read on from a position. Events are written by
//! the [`JobStore`](crate::JobStore) changes that make them, in the same write where the backend
//! can, so this capability only reads.

use async_trait::async_trait;

use crate::{EventFilter, EventPage, Result};
// Only the docs name it (their `# Errors`).
#[cfg(doc)]
use crate::StoreError;

/// The event stream: every job change once, in stream order, for as long as the event TTL.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// Events after `after` (an id or a position from [`EventPage::next`], or from the oldest
    /// kept event when `None`) that match `filter`, at most `limit`, in stream order. Reading on
    /// from `next` yields every later event exactly once, also when several replicas record
    /// events at once; events expire after the store's event TTL.
    ///
    /// # Errors
    /// [`StoreError::BadEventId`] when `after` is not an id of this store;
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage>;

    /// The position of the end of the stream now: reading after it yields only events recorded
    /// from now on (and, on a store whose writers may lag, those that may still appear).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn events_head(&self) -> Result<String>;
}
