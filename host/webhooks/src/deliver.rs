//! The [`Deliverer`]: the `webhooks` lease, one delivery task per webhook, windows of events
//! grouped by job, retries with backoff, and the delivery state written back to the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use omni_jobs::{JobService, Lease};
use omni_store::{Delivery, Event, EventFilter, JobId, Webhook, WebhookStore};
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::guard::{AddressGuard, AddressRefused, GuardedResolver};
use crate::secrets::Keyring;
use crate::{
    DELIVERIES, EVENT_HEADER, EVENT_ID_HEADER, LEASE, NOT_ALLOWED, SAVE_EVERY, SIGNATURE_HEADER,
    UNREACHABLE, WEBHOOK_ID_HEADER, WebhookError, Webhooks, WebhooksConfig, sign, wants,
};

/// Delivers events to every webhook while this replica holds the `webhooks` lease. Cloning
/// shares it.
#[derive(Debug, Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: JobService,
    config: WebhooksConfig,
    replica: String,
    client: reqwest::Client,
    guard: AddressGuard,
    keyring: Arc<Keyring>,
    leading: AtomicBool,
}

/// The running deliverer; dropping it stops every delivery (what was in flight is sent again
/// by the next holder of the lease).
#[derive(Debug)]
pub struct DelivererHandle(tokio::task::JoinHandle<()>);

impl Drop for DelivererHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Deliverer {
    /// A deliverer for the webhooks in `jobs`' store, woken by `jobs`' changes, opening their
    /// secrets with `webhooks`' keys.
    ///
    /// # Errors
    /// [`WebhookError::Config`] for a zero timeout, window or concurrency;
    /// [`WebhookError::Client`] when the HTTP client cannot be built.
    pub fn new(
        jobs: JobService,
        config: WebhooksConfig,
        webhooks: &Webhooks,
    ) -> Result<Self, WebhookError> {
        if config.timeout.is_zero() || config.window == 0 || config.concurrency == 0 {
            return Err(WebhookError::Config(
                "timeout, window and concurrency must be above zero".into(),
            ));
        }
        if config.lease_ttl < Duration::from_secs(1) {
            return Err(WebhookError::Config("lease_ttl must be at least 1s".into()));
        }
        let guard = AddressGuard::new(&config.allow_addresses);
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // Every name is resolved through the guard when connecting (literal addresses are
            // checked before each request, in `deliver_one`).
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            // A proxy would be resolved instead of the destination, and reach what it likes.
            .no_proxy()
            // A receiver answers; it does not send deliveries elsewhere (nor past the guard's
            // literal check).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("omni-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Deliverer {
            inner: Arc::new(Inner {
                jobs,
                config,
                replica: format!("replica-{}", Uuid::new_v4().simple()),
                client,
                guard,
                keyring: Arc::new(webhooks.keyring().clone()),
                leading: AtomicBool::new(false),
            }),
        })
    }

    /// Whether this replica delivers now (holds the lease).
    pub fn is_leading(&self) -> bool {
        self.inner.leading.load(Ordering::Relaxed)
    }

    /// Starts delivering in the background: the lease, then one task per webhook.
    pub fn spawn(&self) -> DelivererHandle {
        let inner = Arc::clone(&self.inner);
        DelivererHandle(tokio::spawn(async move { inner.run().await }))
    }
}

impl Inner {
    fn webhooks(&self) -> Arc<dyn WebhookStore> {
        self.jobs.webhooks()
    }

    /// Holds or waits for the lease; delivers while holding it.
    async fn run(self: Arc<Self>) {
        let mut lease = Lease::new(
            self.jobs.leases(),
            LEASE,
            self.replica.clone(),
            self.config.lease_ttl,
        );
        loop {
            lease.acquire().await;
            self.leading.store(true, Ordering::Relaxed);
            self.lead(&mut lease).await;
            self.leading.store(false, Ordering::Relaxed);
            lease.release().await;
        }
    }

    /// Runs one delivery task per webhook until the lease is lost; dropping the tasks' set
    /// stops them all.
    async fn lead(self: &Arc<Self>, lease: &mut Lease) {
        let mut tasks = JoinSet::new();
        let mut running: HashMap<Uuid, (Webhook, AbortHandle)> = HashMap::new();
        loop {
            match self.webhooks().list_webhooks(None).await {
                Ok(hooks) => {
                    let current: HashMap<Uuid, Webhook> =
                        hooks.into_iter().map(|h| (h.id, h)).collect();
                    running.retain(|id, (hook, task)| {
                        // Deleted, or replaced with other settings: stop it (a replaced one
                        // starts again below, from its stored place).
                        let keep = current.get(id) == Some(hook);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for (id, hook) in current {
                        if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(id) {
                            let task = tasks.spawn(Arc::clone(self).deliver(hook.clone()));
                            slot.insert((hook, task));
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list the webhooks"),
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = tokio::time::sleep_until(lease.renew_at()) => {
                    if !lease.renew().await {
                        return;
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// Delivers `hook`'s events for as long as the task runs.
    async fn deliver(self: Arc<Self>, hook: Webhook) {
        // Opened once per task: a stored webhook that changes starts a new task.
        let hook = match self.keyring.open(hook.id, &hook.secret) {
            Ok(secret) => Webhook { secret, ..hook },
            Err(error) => {
                tracing::error!(webhook = %hook.id, %error, "cannot open a webhook's secret: its deliveries wait until its key is configured");
                return;
            }
        };
        let mut wake = self.jobs.subscribe();
        let mut delivery = loop {
            let found: Result<Delivery, Box<dyn std::error::Error + Send + Sync>> =
                match self.webhooks().get_delivery(hook.id).await {
                    Ok(Some(delivery)) => Ok(delivery),
                    // Stored without a place (not through `register`): from now on.
                    Ok(None) => match self.jobs.events_head().await {
                        Ok(head) => {
                            let delivery = Delivery::starting_at(hook.id, head);
                            self.webhooks()
                                .put_delivery(&delivery)
                                .await
                                .map(|()| delivery)
                                .map_err(Into::into)
                        }
                        Err(error) => Err(error.into()),
                    },
                    Err(error) => Err(error.into()),
                };
            match found {
                Ok(delivery) => break delivery,
                Err(error) => {
                    tracing::warn!(webhook = %hook.id, %error, "cannot read a webhook's delivery state");
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
        };
        let filter = EventFilter {
            domain: hook.domain.clone(),
            ..EventFilter::default()
        };
        // A place that only moved over events the webhook does not want is saved now and then,
        // not after every read.
        let mut saved_at = tokio::time::Instant::now();
        let mut unsaved = false;
        loop {
            let page = match self
                .jobs
                .read_events(
                    Some(&delivery.delivered_through),
                    &filter,
                    self.config.window,
                )
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(webhook = %hook.id, %error, "cannot read events");
                    tokio::time::sleep(self.config.poll_interval).await;
                    continue;
                }
            };
            let full = page.items.len() == self.config.window;
            let wanted: Vec<Event> = page
                .items
                .into_iter()
                .filter(|event| wants(&hook, event))
                .collect();
            let delivered_some = !wanted.is_empty();
            if delivered_some {
                let status = Arc::new(Mutex::new(delivery.clone()));
                self.deliver_window(&hook, wanted, &status).await;
                delivery = status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                delivery.attempts = 0;
            }
            unsaved |= page.next != delivery.delivered_through;
            delivery.delivered_through = page.next;
            if delivered_some || (unsaved && saved_at.elapsed() >= SAVE_EVERY) {
                self.save(&delivery).await;
                saved_at = tokio::time::Instant::now();
                unsaved = false;
            }
            if full {
                continue;
            }
            // Woken by a change on this replica, or by the poll for other replicas' changes.
            tokio::select! {
                _ = wake.recv() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
            while wake.try_recv().is_ok() {}
        }
    }

    /// Writes the delivery state, trying until the store takes it (the place must not be lost,
    /// or everything after the last saved one is sent again).
    async fn save(&self, delivery: &Delivery) {
        loop {
            match self.webhooks().put_delivery(delivery).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(webhook = %delivery.webhook_id, %error, "cannot save a webhook's delivery state");
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
        }
    }

    /// Delivers a window of events: grouped by job, the groups at once (up to `concurrency`),
    /// each group in order; returns when every event was answered with a 2xx.
    async fn deliver_window(
        &self,
        hook: &Webhook,
        events: Vec<Event>,
        status: &Arc<Mutex<Delivery>>,
    ) {
        let mut groups: Vec<Vec<Event>> = Vec::new();
        let mut index: HashMap<JobId, usize> = HashMap::new();
        for event in events {
            let at = *index.entry(event.job_id).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(event);
        }
        futures::stream::iter(groups)
            .for_each_concurrent(self.config.concurrency, |group| {
                let span = group.first().map_or_else(tracing::Span::none, |e| {
                    omni_jobs::job_span(e.job_id, &e.task, &e.domain)
                });
                async move {
                    for event in group {
                        self.deliver_one(hook, &event, status).await;
                    }
                }
                .instrument(span)
            })
            .await;
    }

    /// POSTs one event until it is answered with a 2xx, with backoff between attempts.
    async fn deliver_one(&self, hook: &Webhook, event: &Event, status: &Arc<Mutex<Delivery>>) {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                // An event read from the store always serializes; skip rather than stall.
                tracing::error!(event = %event.id, %error, "cannot encode an event");
                return;
            }
        };
        let signature = sign(hook.secret.as_bytes(), &body);
        let name = event.name();
        let mut attempt: u32 = 0;
        loop {
            // The tenant's error is generic for anything about the connection; the log has the
            // real one.
            let (outcome, error, cause) = match self
                .attempt(hook, event, name, &signature, &body)
                .await
            {
                Ok(()) => {
                    metrics::counter!(DELIVERIES, "outcome" => "delivered").increment(1);
                    let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
                    status.delivered += 1;
                    status.last_success_at = Some(Utc::now());
                    return;
                }
                Err(Failure::Refused(cause)) => ("refused", NOT_ALLOWED.to_owned(), cause),
                Err(Failure::Unreachable(cause)) => ("unreachable", UNREACHABLE.to_owned(), cause),
                Err(Failure::Timeout) => {
                    let error = format!("no answer within {:?}", self.config.timeout);
                    ("timeout", error.clone(), error)
                }
                Err(Failure::Rejected(answer)) => {
                    let error = format!("the receiver answered {answer}");
                    ("rejected", error.clone(), error)
                }
            };
            metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
            attempt = attempt.saturating_add(1);
            let snapshot = {
                let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
                status.attempts = status.attempts.max(attempt);
                status.last_error = Some(error.clone());
                status.last_error_at = Some(Utc::now());
                status.clone()
            };
            tracing::warn!(webhook = %hook.id, url = %hook.url, event = %event.id, attempt, error = %cause, "a delivery failed; retrying");
            // The failure is visible through the API while the retries go on (the place is the
            // window's start until the window is done).
            if let Err(error) = self.webhooks().put_delivery(&snapshot).await {
                tracing::warn!(webhook = %hook.id, %error, "cannot save a webhook's delivery state");
            }
            tokio::time::sleep(backoff(&self.config, attempt)).await;
        }
    }
}

/// Why one attempt did not deliver.
enum Failure {
    /// The destination is (or resolved only to) addresses webhooks may not reach.
    Refused(String),
    /// No connection, or it failed before an answer (refused, reset, TLS, name not found...).
    Unreachable(String),
    /// Connected, but no answer in time.
    Timeout,
    /// Answered with a status that is not 2xx.
    Rejected(reqwest::StatusCode),
}

impl Inner {
    /// One POST of `event` to `hook`: after the guard's check of a literal address, through the
    /// client whose resolver checks every name.
    async fn attempt(
        &self,
        hook: &Webhook,
        event: &Event,
        name: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), Failure> {
        let url = reqwest::Url::parse(&hook.url)
            .map_err(|error| Failure::Unreachable(format!("{}: {error}", hook.url)))?;
        if let Some(ip) = self.guard.refused_literal(&url) {
            let refused = AddressRefused {
                host: url.host_str().unwrap_or_default().to_owned(),
                addresses: vec![ip],
            };
            return Err(Failure::Refused(refused.to_string()));
        }
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &event.id)
            .header(EVENT_HEADER, name)
            .header(WEBHOOK_ID_HEADER, hook.id.to_string())
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => {
                // Read the answer so that the connection is kept for the next delivery.
                let _ = answer.bytes().await;
                Ok(())
            }
            Ok(answer) => Err(Failure::Rejected(answer.status())),
            Err(error) if refused(&error) => Err(Failure::Refused(error_chain(&error))),
            Err(error) if error.is_timeout() && !error.is_connect() => Err(Failure::Timeout),
            Err(error) => Err(Failure::Unreachable(error_chain(&error))),
        }
    }
}

/// Whether the guard's resolver refused `error`'s destination.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.is::<AddressRefused>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Full jitter: a random wait from zero to `min_backoff * 2^(attempt - 1)`, capped at
/// `max_backoff`, so that many failing deliveries do not retry in step.
fn backoff(config: &WebhooksConfig, attempt: u32) -> Duration {
    use rand::Rng;
    let doubled = config
        .min_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(30));
    let cap = doubled.min(config.max_backoff);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let config = WebhooksConfig {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..WebhooksConfig::default()
        };
        for attempt in 1..40 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(30))
                .min(Duration::from_secs(2));
            assert!(backoff(&config, attempt) <= cap);
        }
    }
}
