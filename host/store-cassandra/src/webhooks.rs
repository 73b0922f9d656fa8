//! [`WebhookStore`] on Cassandra: `webhooks` and its copy by domain (`webhooks_by_domain`),
//! kept together by logged batches, and each webhook's delivery state (`webhook_deliveries`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use scylla::statement::batch::{Batch, BatchType};
use uuid::Uuid;

use omni_store::{Delivery, Result, Webhook, WebhookStore, record};

use crate::CassandraStore;
use crate::cql::{corrupt, unavailable};

type WebhookRow = (
    Uuid,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

impl CassandraStore {
    async fn webhook_domain(&self, id: Uuid) -> Result<Option<Option<String>>> {
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.webhook_domain, (id,))
            .await
            .map_err(|e| unavailable("reading a webhook", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading a webhook", e))?;
        let row: Option<(Option<String>,)> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("webhook {id}: {e}")))?;
        Ok(row.map(|(domain,)| domain))
    }
}

#[async_trait]
impl WebhookStore for CassandraStore {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<()> {
        let old = self.webhook_domain(webhook.id).await?.flatten();
        let st = &self.inner.st;
        let main = (
            webhook.id,
            webhook.domain.as_deref(),
            webhook.url.as_str(),
            &webhook.events,
            webhook.secret.as_str(),
            webhook.created_at,
        );
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(self.inner.consistency);
        batch.append_statement(st.insert_webhook.clone());
        let stale = old.filter(|o| Some(o) != webhook.domain.as_ref());
        let result = match (&webhook.domain, &stale) {
            (Some(domain), stale) => {
                let by_domain = (
                    domain.as_str(),
                    webhook.id,
                    webhook.url.as_str(),
                    &webhook.events,
                    webhook.secret.as_str(),
                    webhook.created_at,
                );
                batch.append_statement(st.insert_webhook_by_domain.clone());
                match stale {
                    Some(stale) => {
                        batch.append_statement(st.delete_webhook_by_domain.clone());
                        self.inner
                            .session
                            .batch(&batch, (main, by_domain, (stale.as_str(), webhook.id)))
                            .await
                    }
                    None => self.inner.session.batch(&batch, (main, by_domain)).await,
                }
            }
            (None, Some(stale)) => {
                batch.append_statement(st.delete_webhook_by_domain.clone());
                self.inner
                    .session
                    .batch(&batch, (main, (stale.as_str(), webhook.id)))
                    .await
            }
            (None, None) => self.inner.session.batch(&batch, (main,)).await,
        };
        result.map_err(|e| unavailable("writing a webhook", e))?;
        Ok(())
    }

    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>> {
        let st = &self.inner.st;
        let pager = match domain {
            Some(domain) => {
                self.inner
                    .session
                    .execute_iter(st.list_webhooks_by_domain.clone(), (domain,))
                    .await
            }
            // All of them: a scan, fine for what is configuration (hundreds, not millions).
            None => {
                self.inner
                    .session
                    .execute_iter(st.list_webhooks.clone(), ())
                    .await
            }
        }
        .map_err(|e| unavailable("listing webhooks", e))?;
        let mut hooks: Vec<Webhook> = pager
            .rows_stream::<WebhookRow>()
            .map_err(|e| corrupt(format!("webhooks: {e}")))?
            .map_err(|e| unavailable("listing webhooks", e))
            .and_then(|(id, domain, url, events, secret, created_at)| async move {
                Ok(Webhook {
                    id,
                    domain,
                    url: url.unwrap_or_default(),
                    events: events.unwrap_or_default(),
                    secret: secret.unwrap_or_default(),
                    created_at: created_at
                        .ok_or_else(|| corrupt(format!("webhook {id}: no created_at")))?,
                })
            })
            .try_collect()
            .await?;
        hooks.sort_by_key(|hook| (hook.created_at, hook.id));
        Ok(hooks)
    }

    async fn delete_webhook(&self, id: Uuid) -> Result<bool> {
        self.inner
            .session
            .execute_unpaged(&self.inner.st.delete_delivery, (id,))
            .await
            .map_err(|e| unavailable("deleting a webhook's delivery state", e))?;
        let Some(domain) = self.webhook_domain(id).await? else {
            return Ok(false);
        };
        let st = &self.inner.st;
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(self.inner.consistency);
        batch.append_statement(st.delete_webhook.clone());
        let result = match &domain {
            Some(domain) => {
                batch.append_statement(st.delete_webhook_by_domain.clone());
                self.inner
                    .session
                    .batch(&batch, ((id,), (domain.as_str(), id)))
                    .await
            }
            None => self.inner.session.batch(&batch, ((id,),)).await,
        };
        result.map_err(|e| unavailable("deleting a webhook", e))?;
        Ok(true)
    }
    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>> {
        match self.stored_delivery(webhook_id).await? {
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| corrupt(format!("delivery of webhook {webhook_id}: {e}"))),
            None => Ok(None),
        }
    }

    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        // Written over the stored state when that is of a newer format, keeping its fields.
        let previous = self
            .stored_delivery(delivery.webhook_id)
            .await?
            .filter(|text| record::is_newer(text));
        let text = record::encode(delivery, previous.as_deref(), &[])
            .map_err(|e| corrupt(format!("cannot encode a delivery state: {e}")))?;
        self.inner
            .session
            .execute_unpaged(&self.inner.st.put_delivery, (delivery.webhook_id, text))
            .await
            .map_err(|e| unavailable("writing a webhook's delivery state", e))?;
        Ok(())
    }
}

impl CassandraStore {
    /// The stored delivery state of a webhook, as written.
    async fn stored_delivery(&self, webhook_id: Uuid) -> Result<Option<String>> {
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.get_delivery, (webhook_id,))
            .await
            .map_err(|e| unavailable("reading a webhook's delivery state", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading a webhook's delivery state", e))?;
        let row: Option<(Option<String>,)> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("delivery of webhook {webhook_id}: {e}")))?;
        Ok(row.and_then(|(text,)| text))
    }
}
