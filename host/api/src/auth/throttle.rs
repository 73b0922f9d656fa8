//! Throttling wrong credentials, per user name and per client address.
//!
//! A name or an address may fail `failures` times in a row ([`ThrottleConfig`], 5); every
//! failure after that blocks it for twice as long as the one before, from a second up to
//! `max_block` (5 minutes). While blocked, a sign-in is answered 429 with `Retry-After` before
//! any password is checked, so a flood of wrong passwords costs argon2 nothing and leaves the
//! password checks to real callers. Failures are forgotten `forget_after` (15 minutes) after the
//! last one, and a user's are forgotten when it signs in.
//!
//! A user who has signed in from an address before is not held back there by a block of its
//! name or of the address (otherwise anyone could lock a user out by failing on its name):
//! there, the failures of that name from that address count on their own, under the same rule.
//! What is checked first costs nothing and is never throttled: a valid token (tokens are random
//! and checked by one hash), credentials verified a moment ago (the remembered ones).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// `[auth.throttle]`: how wrong credentials are held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failures in a row of a name or an address before it is blocked.
    pub failures: u32,
    /// The longest block.
    #[serde(with = "humantime_serde")]
    pub max_block: Duration,
    /// Failures are forgotten this long after the last one.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            max_block: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}
/// Names and addresses followed at once; when full, the forgotten ones go, then all.
const MAX_ENTRIES: usize = 65_536;
/// Addresses a user is known to have signed in from.
const MAX_KNOWN_PER_USER: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
    /// A name at an address it signed in from.
    Known(String, IpAddr),
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    failures: HashMap<Key, Failures>,
    /// Where each user signed in from.
    known: HashMap<String, HashSet<IpAddr>>,
}

impl State {
    /// The key of `user` at `address` when it signed in from there before.
    fn known_key(&self, user: Option<&str>, address: Option<IpAddr>) -> Option<Key> {
        let (user, address) = (user?, address?);
        self.known
            .get(user)
            .is_some_and(|known| known.contains(&address))
            .then(|| Key::Known(user.to_owned(), address))
    }
}

/// The failures of sign-ins of one server.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    state: Mutex<State>,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
        }
    }

    /// How long a sign-in as `user` (none for a token) from `address` must wait, if it must.
    pub(crate) fn blocked(&self, user: Option<&str>, address: Option<IpAddr>) -> Option<Duration> {
        let state = self.state();
        let now = Instant::now();
        let wait = |key: Key| {
            state
                .failures
                .get(&key)
                .and_then(|f| f.blocked_until)
                .filter(|until| *until > now)
                .map(|until| until - now)
        };
        if let Some(known) = state.known_key(user, address) {
            return wait(known);
        }
        let by_user = user.and_then(|u| wait(Key::User(u.to_owned())));
        let by_address = address.and_then(|a| wait(Key::Address(a)));
        by_user.max(by_address)
    }

    /// A failed sign-in as `user` (none for a token) from `address`.
    pub(crate) fn failed(&self, user: Option<&str>, address: Option<IpAddr>) {
        let mut state = self.state();
        let now = Instant::now();
        if state.failures.len() >= MAX_ENTRIES {
            state
                .failures
                .retain(|_, f| now.duration_since(f.last) < self.config.forget_after);
            if state.failures.len() >= MAX_ENTRIES {
                tracing::warn!(
                    entries = MAX_ENTRIES,
                    "too many names and addresses failing to sign in; their failures are forgotten"
                );
                state.failures.clear();
            }
        }
        let known = state.known_key(user, address);
        let keys = user
            .map(|u| Key::User(u.to_owned()))
            .into_iter()
            .chain(address.map(Key::Address))
            .chain(known);
        for key in keys {
            let failures = state.failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
                blocked_until: None,
            });
            if now.duration_since(failures.last) >= self.config.forget_after {
                failures.count = 0;
                failures.blocked_until = None;
            }
            failures.count += 1;
            failures.last = now;
            if failures.count > self.config.failures {
                let doublings = (failures.count - self.config.failures - 1).min(16);
                let block = Duration::from_secs(1 << doublings).min(self.config.max_block);
                failures.blocked_until = Some(now + block);
            }
        }
    }

    /// `user` signed in from `address`: its failures are forgotten, and the address is known.
    pub(crate) fn signed_in(&self, user: &str, address: Option<IpAddr>) {
        let mut state = self.state();
        state.failures.remove(&Key::User(user.to_owned()));
        let Some(address) = address else { return };
        state.failures.remove(&Key::Known(user.to_owned(), address));
        if state.known.len() >= MAX_ENTRIES && !state.known.contains_key(user) {
            state.known.clear();
        }
        let known = state.known.entry(user.to_owned()).or_default();
        if known.len() >= MAX_KNOWN_PER_USER && !known.contains(&address) {
            known.clear();
        }
        known.insert(address);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREE_FAILURES: u32 = 5;
    const MAX_BLOCK: Duration = Duration::from_secs(300);
    const FORGET_AFTER: Duration = Duration::from_secs(900);

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_double_after_the_free_failures_and_are_forgotten() {
        let throttle = Throttle::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.blocked(Some("ann"), ip("10.0.0.1")), None);
            throttle.failed(Some("ann"), ip("10.0.0.1"));
        }
        assert_eq!(throttle.blocked(Some("ann"), ip("10.0.0.1")), None);
        throttle.failed(Some("ann"), ip("10.0.0.1"));
        assert_eq!(
            throttle.blocked(Some("ann"), ip("10.0.0.1")),
            Some(Duration::from_secs(1))
        );
        // The name is blocked from anywhere, the address for any name.
        assert!(throttle.blocked(Some("ann"), ip("10.0.0.2")).is_some());
        assert!(throttle.blocked(Some("bob"), ip("10.0.0.1")).is_some());
        assert!(throttle.blocked(None, ip("10.0.0.1")).is_some());
        assert_eq!(throttle.blocked(Some("bob"), ip("10.0.0.2")), None);
        throttle.failed(Some("ann"), ip("10.0.0.1"));
        assert_eq!(
            throttle.blocked(Some("ann"), ip("10.0.0.1")),
            Some(Duration::from_secs(2))
        );
        for _ in 0..30 {
            throttle.failed(Some("ann"), ip("10.0.0.1"));
        }
        assert_eq!(throttle.blocked(Some("ann"), None), Some(MAX_BLOCK));
        tokio::time::advance(MAX_BLOCK).await;
        assert_eq!(throttle.blocked(Some("ann"), ip("10.0.0.1")), None);
        tokio::time::advance(FORGET_AFTER).await;
        throttle.failed(Some("ann"), ip("10.0.0.1"));
        assert_eq!(
            throttle.blocked(Some("ann"), ip("10.0.0.1")),
            None,
            "forgotten: the count started again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_is_not_locked_out_where_it_signed_in_before() {
        let throttle = Throttle::default();
        throttle.signed_in("ann", ip("10.0.0.1"));
        for _ in 0..=FREE_FAILURES {
            throttle.failed(Some("ann"), ip("10.0.0.9"));
        }
        assert!(throttle.blocked(Some("ann"), ip("10.0.0.9")).is_some());
        assert_eq!(throttle.blocked(Some("ann"), ip("10.0.0.1")), None);
        // Failing from there counts on its own.
        for _ in 0..=FREE_FAILURES {
            throttle.failed(Some("ann"), ip("10.0.0.1"));
        }
        assert!(throttle.blocked(Some("ann"), ip("10.0.0.1")).is_some());
        throttle.signed_in("ann", ip("10.0.0.1"));
        assert_eq!(throttle.blocked(Some("ann"), ip("10.0.0.1")), None);
        assert_eq!(
            throttle.blocked(Some("ann"), ip("10.0.0.5")),
            None,
            "a sign-in forgets the name's failures"
        );
        assert!(throttle.blocked(Some("bob"), ip("10.0.0.9")).is_some());
    }
}
