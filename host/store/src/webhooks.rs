//! [`WebhookStore`]: registered webhooks and each one's delivery state (how far into the event
//! stream it has been delivered), which goes with it.

use async_trait::async_trait;
use uuid::Uuid;

use crate::{Delivery, Result, Webhook};
// Only the docs name it (their `# Errors`).
#[cfg(doc)]
use crate::StoreError;

/// Webhooks and their delivery state.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a webhook (a new one, or replaces the one with its id).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_webhook(&self, webhook: &Webhook) -> Result<()>;

    /// Webhooks, all or those registered for `domain`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>>;

    /// Deletes a webhook and its delivery state. Returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn delete_webhook(&self, id: Uuid) -> Result<bool>;

    /// A webhook's delivery state, if it has one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>>;

    /// Stores a webhook's delivery state (replacing the one it had).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()>;
}
