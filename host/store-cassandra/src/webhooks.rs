//! [`WebhookStore`] on Cassandra: `webhooks` and its copy by domain (`webhooks_by_domain`),
//! each webhook's delivery state (`webhook_deliveries`), and the cap per domain.
//!
//! The cap is a count in each `webhooks_by_domain` partition (`webhook_count`, static), changed
//! only by conditional batches of that partition that insert or delete a row with it (`IF NOT
//! EXISTS` / `IF EXISTS` on the row, `IF webhook_count = ?` on the count): Paxos orders them,
//! so of creates racing for the last places at most the cap's number apply, and a delete
//! frees one place once. Webhooks for every domain live in the partition [`EVERY_DOMAIN`]. A
//! partition written by an older server has no count: it is counted once (compare-and-set from
//! null) before its first change, after copying the webhooks for every domain, which the older
//! server kept in `webhooks` only, into their partition.
//!
//! A webhook is written to `webhooks` before it takes its place (and, when the domain turned
//! out to be full, deleted from it again), and deleted from `webhooks` after it gave its place
//! back: a replica that dies in between leaves a webhook that is listed and can be deleted,
//! never a place taken by a webhook nobody sees. Every write to both tables is a lightweight
//! transaction, so that Paxos orders a secret's compare-and-set after a delete (a plain write
//! with a skewed clock could bring a deleted row back).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use omni_store::{Delivery, Result, Webhook, WebhookStore, record};

use crate::CassandraStore;
use crate::cql::{corrupt, lwt, lwt_batch, unavailable};

/// The `webhooks_by_domain` partition of the webhooks for every domain: no domain is named so
/// (a domain is a DNS label).
const EVERY_DOMAIN: &str = "*";

/// The partition of `webhooks_by_domain` a webhook of `domain` lives in.
fn partition(domain: Option<&str>) -> &str {
    domain.unwrap_or(EVERY_DOMAIN)
}

type WebhookRow = (
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

impl CassandraStore {
    /// The domain of a stored webhook (`Some(None)` for one without), `None` when there is none.
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

    /// The webhooks `partition` counts, counting it first if an older server wrote it.
    async fn counted(&self, partition: &str) -> Result<i32> {
        loop {
            let rows = self
                .inner
                .session
                .execute_unpaged(&self.inner.st.webhook_count, (partition,))
                .await
                .map_err(|e| unavailable("reading a webhook count", e))?
                .into_rows_result()
                .map_err(|e| unavailable("reading a webhook count", e))?;
            let row: Option<(Option<i32>,)> = rows
                .maybe_first_row()
                .map_err(|e| corrupt(format!("webhook count of {partition}: {e}")))?;
            match row.and_then(|(count,)| count) {
                Some(count) => return Ok(count),
                None => self.count(partition).await?,
            }
        }
    }

    /// Sets the count of a partition that has none (new, or written by an older server) to the
    /// webhooks in it. While it has none, no create or delete of this server changes the
    /// partition (they all wait for the count), so the rows counted are the rows there.
    async fn count(&self, partition: &str) -> Result<()> {
        let st = &self.inner.st;
        if partition == EVERY_DOMAIN {
            // An older server kept these in `webhooks` only.
            let legacy = self.list_webhooks(None).await?;
            for hook in legacy.iter().filter(|hook| hook.domain.is_none()) {
                let values = (
                    hook.url.as_str(),
                    &hook.events,
                    hook.secret.as_str(),
                    hook.created_at,
                    EVERY_DOMAIN,
                    hook.id,
                );
                let copied = lwt(
                    &self.inner.session,
                    &st.copy_webhook_by_domain,
                    values,
                    "copying a webhook for every domain",
                )
                .await?;
                if !copied.applied && !copied.retried {
                    // Counted meanwhile, by another replica.
                    return Ok(());
                }
            }
        }
        let rows = self
            .inner
            .session
            .execute_unpaged(&st.webhook_ids_by_domain, (partition,))
            .await
            .map_err(|e| unavailable("counting webhooks", e))?
            .into_rows_result()
            .map_err(|e| unavailable("counting webhooks", e))?;
        let mut count = 0_i32;
        for row in rows
            .rows::<(Option<Uuid>,)>()
            .map_err(|e| corrupt(format!("webhooks of {partition}: {e}")))?
        {
            let (id,) = row.map_err(|e| corrupt(format!("webhooks of {partition}: {e}")))?;
            // A partition whose rows are all deleted still has its static count: a row without id.
            count += i32::from(id.is_some());
        }
        // Not applied: another replica counted first, the same rows.
        lwt(
            &self.inner.session,
            &st.set_webhook_count,
            (count, partition, None::<i32>),
            "counting webhooks",
        )
        .await?;
        Ok(())
    }

    /// Whether `id` has its row (and so its place) in `partition`.
    async fn in_partition(&self, partition: &str, id: Uuid) -> Result<bool> {
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.webhook_in_domain, (partition, id))
            .await
            .map_err(|e| unavailable("reading a webhook", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading a webhook", e))?;
        Ok(rows.rows_num() > 0)
    }

    /// A conditional batch of `change` (a row of a partition) and the compare-and-set of the
    /// partition's count.
    fn counted_batch(&self, change: &PreparedStatement) -> Batch {
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(change.clone());
        batch.append_statement(self.inner.st.set_webhook_count.clone());
        batch.set_consistency(self.inner.consistency);
        batch.set_is_idempotent(false);
        batch
    }

    /// Takes a place in the webhook's partition unless it has `max` taken. Returns whether the
    /// webhook has its place.
    async fn take_place(&self, webhook: &Webhook, max: usize) -> Result<bool> {
        let key = partition(webhook.domain.as_deref());
        let batch = self.counted_batch(&self.inner.st.insert_webhook_by_domain);
        let mut count = self.counted(key).await?;
        loop {
            if usize::try_from(count).unwrap_or(0) >= max {
                return Ok(false);
            }
            let row = (
                key,
                webhook.id,
                webhook.url.as_str(),
                &webhook.events,
                webhook.secret.as_str(),
                webhook.created_at,
            );
            let taken = lwt_batch(
                &self.inner.session,
                &batch,
                (row, (count + 1, key, count)),
                "registering a webhook",
            )
            .await?;
            if taken.applied || self.in_partition(key, webhook.id).await? {
                return Ok(true);
            }
            // Another replica's create or delete changed the count first.
            count = self.counted(key).await?;
        }
    }

    /// Gives the place of webhook `id` in `partition` back, if it has one there.
    async fn give_place_back(&self, key: &str, id: Uuid) -> Result<()> {
        let batch = self.counted_batch(&self.inner.st.delete_webhook_by_domain);
        let mut count = self.counted(key).await?;
        loop {
            // Rows an older server wrote during an upgrade are not counted: never below zero.
            let less = (count - 1).max(0);
            let freed = lwt_batch(
                &self.inner.session,
                &batch,
                ((key, id), (less, key, count)),
                "deleting a webhook",
            )
            .await?;
            if freed.applied || !self.in_partition(key, id).await? {
                return Ok(());
            }
            count = self.counted(key).await?;
        }
    }
}

#[async_trait]
impl WebhookStore for CassandraStore {
    async fn create_webhook(&self, webhook: &Webhook, max: usize) -> Result<bool> {
        let key = partition(webhook.domain.as_deref());
        if usize::try_from(self.counted(key).await?).unwrap_or(0) >= max {
            // Full already: nothing written.
            return Ok(false);
        }
        let row = (
            webhook.id,
            webhook.domain.as_deref(),
            webhook.url.as_str(),
            &webhook.events,
            webhook.secret.as_str(),
            webhook.created_at,
        );
        let inserted = lwt(
            &self.inner.session,
            &self.inner.st.insert_webhook,
            row,
            "writing a webhook",
        )
        .await?;
        if self.take_place(webhook, max).await? {
            return Ok(true);
        }
        if inserted.applied || inserted.retried {
            // Full after all (creates on other replicas took the last places): written by this
            // call, so deleted by it.
            lwt(
                &self.inner.session,
                &self.inner.st.delete_webhook,
                (webhook.id,),
                "deleting a webhook over the cap",
            )
            .await?;
        }
        Ok(false)
    }

    async fn replace_secret(&self, id: Uuid, expected: &str, secret: &str) -> Result<bool> {
        let Some(domain) = self.webhook_domain(id).await? else {
            return Ok(false);
        };
        let st = &self.inner.st;
        let answer = lwt(
            &self.inner.session,
            &st.replace_secret,
            (secret, id, expected),
            "replacing a webhook's secret",
        )
        .await?;
        let replaced = answer.applied || (answer.retried && answer.text("secret") == Some(secret));
        if !replaced {
            return Ok(false);
        }
        // The copy follows; a webhook deleted meanwhile has none (`IF EXISTS`).
        lwt(
            &self.inner.session,
            &st.replace_secret_by_domain,
            (secret, partition(domain.as_deref()), id),
            "replacing a webhook's secret",
        )
        .await?;
        Ok(true)
    }

    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>> {
        let st = &self.inner.st;
        let pager = match domain {
            // Not a domain: the partition of the webhooks for every domain.
            Some(EVERY_DOMAIN) => return Ok(Vec::new()),
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
            .try_filter_map(|(id, domain, url, events, secret, created_at)| async move {
                // A partition whose webhooks are all deleted keeps its count: a row without id.
                let Some(id) = id else { return Ok(None) };
                Ok(Some(Webhook {
                    id,
                    domain,
                    url: url.unwrap_or_default(),
                    events: events.unwrap_or_default(),
                    secret: secret.unwrap_or_default(),
                    created_at: created_at
                        .ok_or_else(|| corrupt(format!("webhook {id}: no created_at")))?,
                }))
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
        // The place first, then the row: a replica that dies in between leaves the webhook
        // listed, to be deleted again, not a place nobody can free.
        self.give_place_back(partition(domain.as_deref()), id)
            .await?;
        let deleted = lwt(
            &self.inner.session,
            &self.inner.st.delete_webhook,
            (id,),
            "deleting a webhook",
        )
        .await?;
        Ok(deleted.applied || deleted.retried)
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
