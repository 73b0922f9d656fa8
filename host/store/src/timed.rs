//! [`Timed`]: a [`Store`] that measures every call of the store it wraps, whatever its backend,
//! through the `metrics` facade (whoever installs a recorder exports the numbers).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    Created, Delivery, EventFilter, EventPage, IdempotencyKey, Job, JobId, JobPage, JobQuery,
    Lease, LogLine, LogPage, LogQuery, Result, StateChange, Step, Store, StoreError, Transition,
    Webhook,
};

/// Histogram of store calls, by `operation` (the [`Store`] method).
pub const OPERATION_SECONDS: &str = "omni_store_operation_duration_seconds";
/// Counter of store calls that found the store unavailable, by `operation`.
pub const UNAVAILABLE: &str = "omni_store_unavailable_total";

/// Registers the help texts of the metrics above with the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        OPERATION_SECONDS,
        metrics::Unit::Seconds,
        "Store calls made by this replica, by operation (the Store trait's method), whatever \
         their result."
    );
    metrics::describe_counter!(
        UNAVAILABLE,
        "Store calls made by this replica that found the store unavailable, by operation."
    );
}

/// The store it wraps, each call measured.
#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn Store>,
}

impl Timed {
    /// `inner`, measured.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Timed { inner }
    }
}

/// Awaits one call of `operation` and records how long it took.
async fn measure<T>(operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let result = call.await;
    record(operation, start.elapsed(), &result);
    result
}

fn record<T>(operation: &'static str, elapsed: Duration, result: &Result<T>) {
    metrics::histogram!(OPERATION_SECONDS, "operation" => operation).record(elapsed);
    if let Err(StoreError::Unavailable { .. }) = result {
        metrics::counter!(UNAVAILABLE, "operation" => operation).increment(1);
    }
}

#[async_trait]
impl Store for Timed {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn ping(&self) -> Result<()> {
        measure("ping", self.inner.ping()).await
    }

    async fn create_job(&self, job: &Job, key: Option<&IdempotencyKey>) -> Result<Created> {
        measure("create_job", self.inner.create_job(job, key)).await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        measure("get_job", self.inner.get_job(id)).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage> {
        measure("list_jobs", self.inner.list_jobs(query)).await
    }

    async fn transition(&self, id: JobId, transition: &Transition) -> Result<(Job, StateChange)> {
        measure("transition", self.inner.transition(id, transition)).await
    }

    async fn assign_engine(&self, id: JobId, engine: &str) -> Result<Job> {
        measure("assign_engine", self.inner.assign_engine(id, engine)).await
    }

    async fn update_steps(&self, id: JobId, steps: &[Step]) -> Result<Job> {
        measure("update_steps", self.inner.update_steps(id, steps)).await
    }

    async fn history(&self, id: JobId) -> Result<Vec<StateChange>> {
        measure("history", self.inner.history(id)).await
    }

    async fn purge_job(&self, id: JobId) -> Result<bool> {
        measure("purge_job", self.inner.purge_job(id)).await
    }

    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()> {
        measure("append_logs", self.inner.append_logs(id, lines)).await
    }

    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage> {
        measure("read_logs", self.inner.read_logs(id, query)).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        measure("acquire_lease", self.inner.acquire_lease(name, holder, ttl)).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        measure("release_lease", self.inner.release_lease(name, holder)).await
    }

    async fn put_webhook(&self, webhook: &Webhook) -> Result<()> {
        measure("put_webhook", self.inner.put_webhook(webhook)).await
    }

    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>> {
        measure("list_webhooks", self.inner.list_webhooks(domain)).await
    }

    async fn delete_webhook(&self, id: Uuid) -> Result<bool> {
        measure("delete_webhook", self.inner.delete_webhook(id)).await
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage> {
        measure("read_events", self.inner.read_events(after, filter, limit)).await
    }

    async fn events_head(&self) -> Result<String> {
        measure("events_head", self.inner.events_head()).await
    }

    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>> {
        measure("get_delivery", self.inner.get_delivery(webhook_id)).await
    }

    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        measure("put_delivery", self.inner.put_delivery(delivery)).await
    }
}
