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
    /// Stores a new webhook unless its domain (or, for one without a domain, the webhooks for
    /// every domain, which count as one more domain) has `max` webhooks already. Returns
    /// whether it was stored. Atomic against every other create and delete of the same domain,
    /// on every replica: of registrations racing for the last places, at most `max` are
    /// stored. A webhook whose id is stored already is left as it is (ids are fresh; a repeat is
    /// the caller's own retry) and counts as stored.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn create_webhook(&self, webhook: &Webhook, max: usize) -> Result<bool>;

    /// Replaces a webhook's secret with `secret` if the webhook still exists and its secret is
    /// still `expected` (a compare-and-set). Returns whether it did: a webhook deleted (or
    /// changed) since `expected` was read stays as it is, deleted.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn replace_secret(&self, id: Uuid, expected: &str, secret: &str) -> Result<bool>;

    /// Webhooks, all or those registered for `domain`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>>;

    /// Deletes a webhook and its delivery state (the delivery state also when there is no such
    /// webhook), freeing its place in its domain's [`create_webhook`](WebhookStore::create_webhook)
    /// cap. Returns whether the webhook existed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
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
