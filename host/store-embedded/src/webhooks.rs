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
    async fn create_webhook(&self, webhook: &Webhook, max: usize) -> Result<bool> {
        let webhook = webhook.clone();
        // One write transaction: redb runs them one at a time, so the count cannot change
        // between the check and the insert. A scan: webhooks are configuration (hundreds).
        self.write(move |txn| {
            let mut hooks = txn.open_table(WEBHOOKS)?;
            let key = webhook.id.as_u128();
            if hooks.get(key)?.is_some() {
                return Ok(true);
            }
            let mut same_domain = 0;
            for entry in hooks.iter()? {
                let stored: Webhook = decode(entry?.1.value())?;
                if stored.domain == webhook.domain {
                    same_domain += 1;
                }
            }
            if same_domain >= max {
                return Ok(false);
            }
            hooks.insert(key, encode(&webhook)?.as_slice())?;
            Ok(true)
        })
        .await
    }

    async fn replace_secret(&self, id: Uuid, expected: &str, secret: &str) -> Result<bool> {
        let (expected, secret) = (expected.to_owned(), secret.to_owned());
        self.write(move |txn| {
            let mut hooks = txn.open_table(WEBHOOKS)?;
            // As a JSON object, so that fields a newer server wrote are kept.
            let Some(mut stored) = hooks
                .get(id.as_u128())?
                .map(|v| decode::<serde_json::Map<String, serde_json::Value>>(v.value()))
                .transpose()?
            else {
                return Ok(false);
            };
            if stored.get("secret").and_then(serde_json::Value::as_str) != Some(expected.as_str()) {
                return Ok(false);
            }
            stored.insert("secret".to_owned(), secret.into());
            hooks.insert(id.as_u128(), encode(&stored)?.as_slice())?;
            Ok(true)
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
