//! [`WebhookStore`] on redb: webhooks and their delivery state, one table each, keyed by the
//! webhook's id.

use async_trait::async_trait;
use omni_store::{Delivery, Result, Webhook, WebhookStore};
use redb::ReadableTable;
use uuid::Uuid;

use crate::EmbeddedStore;
use crate::tables::*;

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<()> {
        let webhook = webhook.clone();
        self.write(move |txn| {
            txn.open_table(WEBHOOKS)?
                .insert(webhook.id.as_u128(), encode(&webhook)?.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>> {
        let domain = domain.map(str::to_owned);
        self.read(move |txn| {
            let mut hooks: Vec<Webhook> = txn
                .open_table(WEBHOOKS)?
                .iter()?
                .map(|entry| decode(entry?.1.value()))
                .collect::<Result<_, OpError>>()?;
            hooks.retain(|hook| domain.is_none() || hook.domain == domain);
            hooks.sort_by_key(|hook| hook.created_at);
            Ok(hooks)
        })
        .await
    }

    async fn delete_webhook(&self, id: Uuid) -> Result<bool> {
        self.write(move |txn| {
            txn.open_table(DELIVERIES)?.remove(id.as_u128())?;
            Ok(txn.open_table(WEBHOOKS)?.remove(id.as_u128())?.is_some())
        })
        .await
    }

    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>> {
        self.read(move |txn| {
            txn.open_table(DELIVERIES)?
                .get(webhook_id.as_u128())?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        let delivery = delivery.clone();
        self.write(move |txn| {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let key = delivery.webhook_id.as_u128();
            let previous = deliveries
                .get(key)?
                .and_then(|stored| newer_record(stored.value()));
            deliveries.insert(
                key,
                encode_record(&delivery, previous.as_deref(), &[])?.as_slice(),
            )?;
            Ok(())
        })
        .await
    }
}
