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
//! Where a delivery may go is checked when connecting ([`AddressGuard`], `guard`): loopback,
//! private, link-local, unique-local, metadata and the other internal ranges are refused unless
//! `[webhooks] allow_addresses` allows them. The webhook's owner (a tenant) sees only a generic
//! error for a refused or failed connection ([`NOT_ALLOWED`], [`UNREACHABLE`]); the server's log
//! has the real one.
//!
//! Secrets are stored sealed ([`Keyring`], `secrets`): ChaCha20-Poly1305 under the operator's
//! current key, with the key's id beside it, so that keys rotate by configuring a new one first
//! while the old ones still open what they sealed, and [`Webhooks::reseal`] (run at every start)
//! moves every stored secret to the current key.
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
//! - [`AddressGuard`] (`guard`): which addresses deliveries may reach, and the resolver that
//!   enforces it when connecting.
//! - [`check`], [`Webhooks::check_destination`], [`wants`], [`Webhooks::register`]: what a
//!   webhook may be, what it gets, and how it is stored with its starting place (at most
//!   `max_per_domain` per domain, its secret sealed).
//! - [`Keyring`] (`secrets`): sealing and opening secrets, the keys from the configuration.
//! - [`Deliverer`] (`deliver`): the lease, one delivery task per webhook, the retries; each job's events
//!   are delivered in its [`omni_jobs::job_span`], and every attempt is counted
//!   ([`DELIVERIES`], [`describe_metrics`]).

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use omni_core::EventKind;
use omni_core::event::EVERY_EVENT;
use omni_jobs::{JobError, JobService};
use omni_store::{Delivery, Event, Webhook};
use serde::{Deserialize, Deserializer};
use sha2::Sha256;

mod deliver;
mod guard;
mod secrets;
pub use deliver::{Deliverer, DelivererHandle};
pub use guard::{AddressGuard, AddressRefused};
pub use secrets::{Keyring, SEALED, SecretError, SecretKeyConfig};

/// The delivery error a webhook's owner sees when its destination is an address webhooks may
/// not reach (the log says which).
pub const NOT_ALLOWED: &str = "the destination address is not allowed";
/// The delivery error a webhook's owner sees when the connection failed (refused, reset, no
/// route, TLS, a name that does not resolve...; the log says which).
pub const UNREACHABLE: &str = "the destination refused the connection or could not be reached";

/// Counter of delivery attempts, by `outcome`.
pub const DELIVERIES: &str = "omni_webhook_deliveries_total";

/// Registers the help text of [`DELIVERIES`] with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        DELIVERIES,
        "Webhook delivery attempts this replica made, by outcome (delivered: a 2xx answer; \
         rejected: another status; timeout; unreachable; refused: an address webhooks may not \
         reach). All but delivered are retried."
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
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(10);

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
    /// Addresses deliveries may reach although they are in a refused range (loopback, private,
    /// link-local, ...; see [`AddressGuard`]): CIDR ranges or single addresses. None by default.
    #[serde(deserialize_with = "ranges")]
    pub allow_addresses: Vec<IpNet>,
    /// The most webhooks one domain may have (those without a domain count as one more
    /// domain's); registering another answers 409.
    pub max_per_domain: usize,
    /// The keys webhook secrets are sealed with, the current one first (the others only open
    /// what they sealed, until [`Webhooks::reseal`] has moved it). None: the server makes one.
    pub secret_keys: Vec<SecretKeyConfig>,
}

/// `allow_addresses`: each a CIDR range (`10.0.0.0/8`) or one address (`127.0.0.1`).
fn ranges<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{text:?} is neither an address nor a CIDR range (10.0.0.0/8, fd00::/8)"
                    ))
                })
        })
        .collect()
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
            allow_addresses: Vec::new(),
            max_per_domain: 100,
            secret_keys: Vec::new(),
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

/// Why a webhook was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Its domain has as many webhooks as `[webhooks] max_per_domain` allows.
    #[error("domain {domain} has {limit} webhooks already, the most it may have; delete one first")]
    TooMany {
        /// The domain (`*` for webhooks without one).
        domain: String,
        /// `max_per_domain`.
        limit: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Jobs(#[from] JobError),
}

/// What registration needs beyond the webhook itself: which destinations are refused early,
/// how many webhooks a domain may have, and the keys secrets are sealed with (which the
/// [`Deliverer`] opens them with). Cloning shares it.
#[derive(Debug, Clone)]
pub struct Webhooks {
    guard: AddressGuard,
    max_per_domain: usize,
    keyring: std::sync::Arc<Keyring>,
}

impl Default for Webhooks {
    /// The default settings with a key of this process only ([`Keyring::ephemeral`]).
    fn default() -> Self {
        Webhooks::new(&WebhooksConfig::default(), Keyring::ephemeral())
    }
}

/// What [`Webhooks::reseal`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Secrets moved to the current key (or sealed for the first time).
    pub resealed: usize,
    /// Secrets that do not open with any configured key (left as they are; logged).
    pub failed: usize,
}

impl Webhooks {
    /// Registration under `config`'s `allow_addresses` and `max_per_domain`, sealing secrets
    /// with `keyring`.
    pub fn new(config: &WebhooksConfig, keyring: Keyring) -> Self {
        Webhooks {
            guard: AddressGuard::new(&config.allow_addresses),
            max_per_domain: config.max_per_domain,
            keyring: std::sync::Arc::new(keyring),
        }
    }

    /// The keys secrets are sealed and opened with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals every stored secret that is not sealed with the current key (sealed with an older
    /// one, or stored in plain text before secrets were sealed): after it, the older keys can
    /// be removed from the configuration. A secret that opens with no configured key is left
    /// as it is and logged (its webhook's deliveries wait).
    ///
    /// Each secret is replaced by compare-and-set against the one read: a webhook deleted
    /// meanwhile stays deleted, and one whose secret another replica resealed first is left to
    /// that replica's.
    ///
    /// # Errors
    /// [`JobError::Store`] when the store fails.
    pub async fn reseal(&self, jobs: &JobService) -> Result<Resealed, JobError> {
        let store = jobs.webhooks();
        let mut done = Resealed::default();
        for hook in store.list_webhooks(None).await? {
            if !self.keyring.needs_reseal(&hook.secret) {
                continue;
            }
            match self.keyring.open(hook.id, &hook.secret) {
                Ok(secret) => {
                    let sealed = self.keyring.seal(hook.id, &secret);
                    if store.replace_secret(hook.id, &hook.secret, &sealed).await? {
                        done.resealed += 1;
                    }
                }
                Err(error) => {
                    tracing::error!(webhook = %hook.id, %error, "cannot reseal a webhook's secret");
                    done.failed += 1;
                }
            }
        }
        Ok(done)
    }

    /// Stores a new webhook, its secret (given in plain text) sealed with the current key, with
    /// its place in the event stream at the end of the stream now (it gets the events from its
    /// registration on). The place is written first: a webhook never exists without one.
    ///
    /// The cap is the store's: of registrations of one domain racing on several replicas, at
    /// most `max_per_domain` are stored ([`omni_store::WebhookStore::create_webhook`]).
    ///
    /// # Errors
    /// [`RegisterError::TooMany`] when the domain has `max_per_domain` webhooks already;
    /// [`RegisterError::Jobs`] ([`omni_store::StoreError::Unavailable`]).
    pub async fn register(
        &self,
        jobs: &JobService,
        webhook: &Webhook,
    ) -> Result<Delivery, RegisterError> {
        let store = jobs.webhooks();
        let delivery = Delivery::starting_at(webhook.id, jobs.events_head().await?);
        store
            .put_delivery(&delivery)
            .await
            .map_err(JobError::from)?;
        let sealed = Webhook {
            secret: self.keyring.seal(webhook.id, &webhook.secret),
            ..webhook.clone()
        };
        if !store
            .create_webhook(&sealed, self.max_per_domain)
            .await
            .map_err(JobError::from)?
        {
            // The place written above goes with the webhook that was not stored (a delete of
            // a webhook that does not exist deletes its delivery state).
            store
                .delete_webhook(webhook.id)
                .await
                .map_err(JobError::from)?;
            return Err(RegisterError::TooMany {
                domain: webhook.domain.clone().unwrap_or_else(|| "*".to_owned()),
                limit: self.max_per_domain,
            });
        }
        Ok(delivery)
    }

    /// Why `url` may not be registered although it is a well-formed URL: its host is a literal
    /// address deliveries may not reach. A name is resolved only when delivering (where every
    /// destination is checked again), so this is an early answer, not the guarantee.
    pub fn check_destination(&self, url: &str) -> Option<String> {
        let parsed = url::Url::parse(url).ok()?;
        self.guard.refused_literal(&parsed).map(|ip| {
            format!(
                "{ip} is an address webhooks may not reach (loopback, private, link-local or \
                 another internal range); the operator can allow it in [webhooks] allow_addresses"
            )
        })
    }
}

/// Whether `webhook` gets `event`: its domain (if it has one) and one of its events (or `*`).
pub fn wants(webhook: &Webhook, event: &Event) -> bool {
    webhook.domain.as_ref().is_none_or(|d| *d == event.domain)
        && webhook
            .events
            .iter()
            .any(|name| name == EVERY_EVENT || *name == event.name())
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
