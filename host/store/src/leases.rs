//! [`LeaseStore`]: named leases, so that once-per-cluster work runs on one replica at a time.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Lease, Result};
// Only the docs name it (their `# Errors`).
#[cfg(doc)]
use crate::StoreError;

/// Named leases with one holder each, taken for a time and renewed by their holder.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug + 'static {
    /// Takes the lease `name` for `holder` for `ttl`, or renews it if `holder` has it. Returns
    /// the lease when `holder` has it now, `None` when someone else holds it and it has not
    /// lapsed. Two holders racing for a free lease: exactly one gets it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration)
    -> Result<Option<Lease>>;

    /// Gives up `name` if `holder` has it. Returns whether it did.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool>;
}
