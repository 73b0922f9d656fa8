//! [`Timed`]: a [`Store`] that measures every call of the store it wraps, whatever its backend,
//! through the `metrics` facade (whoever installs a recorder exports the numbers).
//!
//! Each capability's methods are listed once, as signatures, in a `timed!` invocation that
//! writes the measured delegation; the metric's `operation` label is the method's name.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    Artifact, ArtifactIndex, ArtifactPage, ArtifactQuery, Created, Delivery, Event, EventFilter,
    EventPage, EventStore, IdempotencyKey, Job, JobId, JobPage, JobQuery, JobStore, Lease,
    LeaseStore, LogLine, LogPage, LogQuery, LogStore, Rendering, Result, StateChange, Step, Store,
    StoreError, Transition, Upload, UploadIndex, Webhook, WebhookStore,
};

/// Histogram of store calls, by `operation` (the store trait's method).
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
}

/// Implements a capability for [`Timed`] from its methods' signatures: each method calls the
/// wrapped store's and is measured under its own name, so the `operation` label cannot drift
/// from the method it names, and a new capability is one more invocation below. The compiler
/// checks each list against its trait: a method missing here, or with another signature, does
/// not build.
macro_rules! timed {
    ($capability:ident {
        $(async fn $method:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*
    }) => {
        #[async_trait]
        impl $capability for Timed {
            $(
                async fn $method(&self $(, $arg: $ty)*) -> $ret {
                    measure(stringify!($method), self.inner.$method($($arg),*)).await
                }
            )*
        }
    };
}

timed!(JobStore {
    async fn create_job(&self, job: &Job, key: Option<&IdempotencyKey>) -> Result<Created>;
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage>;
    async fn transition(&self, id: JobId, transition: &Transition) -> Result<(Job, StateChange)>;
    async fn assign_engine(
        &self,
        id: JobId,
        engine: &str,
        rendering: Option<&Rendering>,
    ) -> Result<Job>;
    async fn update_steps(&self, id: JobId, steps: &[Step]) -> Result<Job>;
    async fn history(&self, id: JobId) -> Result<Vec<StateChange>>;
    async fn purge_job(&self, id: JobId) -> Result<bool>;
});

timed!(LogStore {
    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()>;
    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage>;
});

timed!(EventStore {
    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage>;
    async fn events_head(&self) -> Result<String>;
});

timed!(ArtifactIndex {
    async fn record_artifacts(&self, id: JobId, artifacts: &[Artifact]) -> Result<Event>;
    async fn list_artifacts(&self, id: JobId, query: &ArtifactQuery) -> Result<ArtifactPage>;
    async fn get_artifact(&self, id: JobId, name: &str) -> Result<Option<Artifact>>;
});

timed!(UploadIndex {
    async fn put_upload(&self, upload: &Upload) -> Result<Upload>;
    async fn get_upload(&self, domain: &str, sha256: &str) -> Result<Option<Upload>>;
    async fn list_uploads(&self, domain: &str) -> Result<Vec<Upload>>;
    async fn forget_uploads(&self, domain: &str, now: chrono::DateTime<chrono::Utc>) -> Result<u64>;
});

timed!(LeaseStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool>;
});

timed!(WebhookStore {
    async fn create_webhook(&self, webhook: &Webhook, max: usize) -> Result<bool>;
    async fn replace_secret(&self, id: Uuid, expected: &str, secret: &str) -> Result<bool>;
    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>>;
    async fn delete_webhook(&self, id: Uuid) -> Result<bool>;
    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>>;
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()>;
});
