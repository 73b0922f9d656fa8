//! # omni-webhooks: delivering job-change events to webhooks
//!
//! The store's event stream is the outbox: every job change is recorded there with the change
//! itself (see `omni-store`), before anything tries to deliver it. Each webhook keeps its place
//! in that stream, [`Delivery::delivered_through`], in the store; the [`Deliverer`] reads the
//! events after it, POSTs those the webhook wants, and moves the place on once they were all
//! answered with a 2xx. A restart (or another replica taking over) starts from the stored place,
//! so nothing is lost and at most the window that was in flight is sent again: delivery is at
//! least once, and receivers tell repeats by the event id header.
//!
//! Delivery happens once per cluster: the replica holding the `webhooks` lease delivers for
//! every webhook (as the `scheduler` lease does for scheduling). Per webhook, a window of
//! pending events is grouped by job; the groups go out concurrently (for throughput), each
//! group's events one after another (in order per job). A failed or timed-out attempt is
//! retried with exponential backoff and full jitter, capped at `max_backoff`, until the receiver
//! answers 2xx or the webhook is deleted: a receiver that is down for an hour gets everything
//! when it returns (events are kept for the store's event TTL). Attempts and the last error are
//! written to the delivery state, which the API shows.
//!
//! Each request: `POST` of the event's JSON, `Content-Type: application/json`,
//! `X-Omni-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>`,
//! `X-Omni-Event-Id`, `X-Omni-Event` (`job.succeeded`, ...), `X-Omni-Webhook-Id`.
//!
//! This crate knows the store, the job service (to be woken by its changes) and HTTP as a
//! client; nothing of the API's routes, plugins or engines.
//!
//! # Layout
//! - [`WebhooksConfig`]: `[webhooks]` in the configuration.
//! - [`sign`], [`verify`]: the signature.
//! - [`check`], [`wants`], [`register`]: what a webhook may be, what it gets,
//!   and how it is stored with its starting place.
//! - [`Deliverer`]: the lease, one delivery task per webhook, the retries; each job's events
//!   are delivered in its [`omni_jobs::job_span`], and every attempt is counted
//!   ([`DELIVERIES`], [`describe_metrics`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use omni_core::EventKind;
use omni_core::event::EVERY_EVENT;
use omni_jobs::{JobError, JobService, Lease};
use omni_store::{Delivery, Event, EventFilter, JobId, Webhook, WebhookStore};
use serde::Deserialize;
use sha2::Sha256;
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

/// Counter of delivery attempts, by `outcome`.
pub const DELIVERIES: &str = "omni_webhook_deliveries_total";

/// Registers the help text of [`DELIVERIES`] with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        DELIVERIES,
        "Webhook delivery attempts this replica made, by outcome (delivered: a 2xx answer; \
         rejected: another status; timeout; unreachable). All but delivered are retried."
    );
}

/// The lease whose holder delivers.
pub const LEASE: &str = "webhooks";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-omni-signature";
/// The header naming the event's id (receivers drop repeats by it).
pub const EVENT_ID_HEADER: &str = "x-omni-event-id";
/// The header naming the event (`job.succeeded`, ...).
pub const EVENT_HEADER: &str = "x-omni-event";
/// The header naming the webhook.
pub const WEBHOOK_ID_HEADER: &str = "x-omni-webhook-id";

/// The longest secret accepted, in bytes.
pub const MAX_SECRET: usize = 1024;
/// How often a place that moved only over events the webhook does not want is saved.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The longest URL accepted, in bytes.
pub const MAX_URL: usize = 2048;

/// `[webhooks]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// How long one delivery may take (connecting, sending, the answer) before it counts as
    /// failed and is retried.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The first retry waits up to this long; each further one up to twice as long...
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// ... but never longer than this.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long the delivery lease lasts unless renewed: the longest deliveries pause when the
    /// replica delivering dies.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the store is read for events when no change on this replica woke the
    /// delivery (events of other replicas), and the list of webhooks is read again.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Events of one webhook read and delivered at once (the most that a restart sends again).
    pub window: usize,
    /// Jobs whose events go out at once, per webhook.
    pub concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            window: 512,
            concurrency: 64,
        }
    }
}

/// Why the deliverer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A setting is out of range.
    #[error("invalid [webhooks] configuration: {0}")]
    Config(String),
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`: the signature header's value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

/// Whether `header` is the signature of `body` with `secret` (compared in constant time).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(digest) = hex::decode(hex_digest) else {
        return false;
    };
    mac(secret, body).verify_slice(&digest).is_ok()
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac
}

/// What is wrong with a webhook's URL, events and secret, as (JSON Pointer, message) pairs;
/// empty when nothing is.
pub fn check(url: &str, events: &[String], secret: &str) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    match url::Url::parse(url) {
        _ if url.len() > MAX_URL => {
            errors.push(("/url", format!("must be at most {MAX_URL} bytes long")));
        }
        Err(e) => errors.push(("/url", format!("is not a URL: {e}"))),
        Ok(parsed) => {
            if !matches!(parsed.scheme(), "http" | "https") {
                errors.push(("/url", "must be an http or https URL".to_owned()));
            } else if parsed.host_str().is_none_or(str::is_empty) {
                errors.push(("/url", "must name a host".to_owned()));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                errors.push((
                    "/url",
                    "must not hold credentials (user:password@); the signature authenticates \
                     deliveries"
                        .to_owned(),
                ));
            }
            if parsed.fragment().is_some() {
                errors.push(("/url", "must not have a fragment (#...)".to_owned()));
            }
        }
    }
    if events.is_empty() {
        errors.push((
            "/events",
            "must name at least one event, or \"*\"".to_owned(),
        ));
    } else if events.iter().any(|e| e == EVERY_EVENT) && events.len() > 1 {
        errors.push(("/events", format!("{EVERY_EVENT:?} stands alone")));
    } else {
        for event in events {
            if event != EVERY_EVENT && event.parse::<EventKind>().is_err() {
                let names: Vec<&str> = EventKind::names().collect();
                errors.push((
                    "/events",
                    format!(
                        "{event:?} is not an event; the events are {} or {EVERY_EVENT:?}",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    if secret.is_empty() {
        errors.push(("/secret", "must not be empty".to_owned()));
    } else if secret.len() > MAX_SECRET {
        errors.push((
            "/secret",
            format!("must be at most {MAX_SECRET} bytes long"),
        ));
    }
    errors
}

/// Whether `webhook` gets `event`: its domain (if it has one) and one of its events (or `*`).
pub fn wants(webhook: &Webhook, event: &Event) -> bool {
    webhook.domain.as_ref().is_none_or(|d| *d == event.domain)
        && webhook
            .events
            .iter()
            .any(|name| name == EVERY_EVENT || *name == event.name())
}

/// Stores a new webhook with its place in the event stream at the end of the stream now (it
/// gets the events from its registration on). The place is written first: a webhook never
/// exists without one.
///
/// # Errors
/// [`JobError::Store`] ([`omni_store::StoreError::Unavailable`]).
pub async fn register(jobs: &JobService, webhook: &Webhook) -> Result<Delivery, JobError> {
    let delivery = Delivery::starting_at(webhook.id, jobs.events_head().await?);
    let store = jobs.webhooks();
    store.put_delivery(&delivery).await?;
    store.put_webhook(webhook).await?;
    Ok(delivery)
}

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
    /// A deliverer for the webhooks in `jobs`' store, woken by `jobs`' changes.
    ///
    /// # Errors
    /// [`WebhookError::Config`] for a zero timeout, window or concurrency;
    /// [`WebhookError::Client`] when the HTTP client cannot be built.
    pub fn new(jobs: JobService, config: WebhooksConfig) -> Result<Self, WebhookError> {
        if config.timeout.is_zero() || config.window == 0 || config.concurrency == 0 {
            return Err(WebhookError::Config(
                "timeout, window and concurrency must be above zero".into(),
            ));
        }
        if config.lease_ttl < Duration::from_secs(1) {
            return Err(WebhookError::Config("lease_ttl must be at least 1s".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A receiver answers; it does not send deliveries elsewhere.
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
    fn store(&self) -> Arc<dyn WebhookStore> {
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
            match self.store().list_webhooks(None).await {
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
        let mut wake = self.jobs.subscribe();
        let mut delivery = loop {
            let found: Result<Delivery, Box<dyn std::error::Error + Send + Sync>> =
                match self.store().get_delivery(hook.id).await {
                    Ok(Some(delivery)) => Ok(delivery),
                    // Stored without a place (not through `register`): from now on.
                    Ok(None) => match self.jobs.events_head().await {
                        Ok(head) => {
                            let delivery = Delivery::starting_at(hook.id, head);
                            self.store()
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
            match self.store().put_delivery(delivery).await {
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
            let sent = self
                .client
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header(EVENT_ID_HEADER, &event.id)
                .header(EVENT_HEADER, name)
                .header(WEBHOOK_ID_HEADER, hook.id.to_string())
                .body(body.clone())
                .send()
                .await;
            let outcome = match &sent {
                Ok(answer) if answer.status().is_success() => "delivered",
                Ok(_) => "rejected",
                Err(error) if error.is_timeout() => "timeout",
                Err(_) => "unreachable",
            };
            metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
            let error = match sent {
                Ok(answer) if answer.status().is_success() => {
                    // Read the answer so that the connection is kept for the next delivery.
                    let _ = answer.bytes().await;
                    let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
                    status.delivered += 1;
                    status.last_success_at = Some(Utc::now());
                    return;
                }
                Ok(answer) => format!("the receiver answered {}", answer.status()),
                Err(error) if error.is_timeout() => {
                    format!("no answer within {:?}", self.config.timeout)
                }
                Err(error) => format!("cannot reach the receiver: {}", error_chain(&error)),
            };
            attempt = attempt.saturating_add(1);
            let snapshot = {
                let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
                status.attempts = status.attempts.max(attempt);
                status.last_error = Some(error.clone());
                status.last_error_at = Some(Utc::now());
                status.clone()
            };
            tracing::debug!(webhook = %hook.id, event = %event.id, attempt, %error, "a delivery failed; retrying");
            // The failure is visible through the API while the retries go on (the place is the
            // window's start until the window is done).
            if let Err(error) = self.store().put_delivery(&snapshot).await {
                tracing::warn!(webhook = %hook.id, %error, "cannot save a webhook's delivery state");
            }
            tokio::time::sleep(backoff(&self.config, attempt)).await;
        }
    }
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
    fn signatures_verify_and_tampering_fails() {
        let body = br#"{"id":"1"}"#;
        let header = sign(b"s3cret", body);
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert!(verify(b"s3cret", body, &header));
        assert!(!verify(b"other", body, &header));
        assert!(!verify(b"s3cret", br#"{"id":"2"}"#, &header));
        assert!(!verify(b"s3cret", body, &header[7..]));
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

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

    #[test]
    fn every_bad_class_of_webhook_is_named() {
        let events = vec!["job.succeeded".to_owned()];
        let path = |url: &str, events: &[String], secret: &str| {
            check(url, events, secret)
                .into_iter()
                .map(|(path, _)| path)
                .collect::<Vec<_>>()
        };
        assert!(path("https://ci.example.com/hook?x=1", &events, "s").is_empty());
        assert!(path("http://127.0.0.1:9000/h", &["*".to_owned()], "s").is_empty());
        assert_eq!(path("ftp://example.com/", &events, "s"), ["/url"]);
        assert_eq!(path("not a url", &events, "s"), ["/url"]);
        assert_eq!(path("https://user:pw@example.com/", &events, "s"), ["/url"]);
        assert_eq!(path("https://user@example.com/", &events, "s"), ["/url"]);
        assert_eq!(path("https://example.com/#x", &events, "s"), ["/url"]);
        assert_eq!(path("https://example.com/", &[], "s"), ["/events"]);
        assert_eq!(
            path("https://example.com/", &["job.done".to_owned()], "s"),
            ["/events"]
        );
        assert_eq!(
            path(
                "https://example.com/",
                &["*".to_owned(), "job.failed".to_owned()],
                "s"
            ),
            ["/events"]
        );
        assert_eq!(path("https://example.com/", &events, ""), ["/secret"]);
        assert_eq!(
            path("https://example.com/", &events, &"x".repeat(MAX_SECRET + 1)),
            ["/secret"]
        );
    }
}
