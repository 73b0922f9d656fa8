//! Who is calling, and what they may do (`docs/api.md`, "Auth").
//!
//! Callers authenticate with HTTP Basic (users with argon2 password hashes) or a bearer token
//! (kept in the configuration as its SHA-256: tokens are random, so a fast hash is as safe as a
//! slow one, and checking one costs nothing). Each user and token has roles per domain —
//! `viewer` reads, `submitter` also submits and cancels, `admin` may do everything, including
//! webhooks and purging — and `*` grants a role in every domain. Reloading plugins, which acts
//! on every domain at once, takes `admin` on `*`.
//!
//! What a caller may not see, it is not told exists: a job, log or webhook of a domain where the
//! caller has no role at all answers 404, as if there were none; one the caller may see but not
//! change answers 403. Lists and event streams hold only the domains the caller may read.
//!
//! With no users and no tokens configured, auth is off and every caller acts as an admin of
//! every domain; `omni serve` allows that only on a loopback address.
//!
//! # Layout
//! - this file: callers and their roles, checking credentials, password hashes and tokens.
//! - `config`: `[auth]` as configured ([`AuthConfig`]), and why an entry is refused.
//! - `throttle`: wrong credentials held back per user name and per client address (429).

mod config;
mod throttle;

pub use config::{AuthConfig, AuthConfigError, TokenConfig, UserConfig};
use config::{check_name, check_roles};
pub use throttle::ThrottleConfig;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::{AppState, Problem};

/// The domain key that grants a role in every domain.
pub const EVERY_DOMAIN: &str = "*";

/// What a caller may do in a domain; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read jobs, logs, events and plugins.
    Viewer,
    /// Also submit and cancel jobs.
    Submitter,
    /// Everything: also purge jobs, manage webhooks, reload plugins (on `*`).
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Admin => "admin",
        })
    }
}

/// An authenticated caller and its roles.
#[derive(Debug, Clone)]
pub struct Caller {
    name: Arc<str>,
    roles: Arc<BTreeMap<String, Role>>,
}

impl Caller {
    /// The caller when auth is off: an admin of every domain.
    pub fn anonymous() -> Self {
        Self {
            name: Arc::from("anonymous"),
            roles: Arc::new(BTreeMap::from([(EVERY_DOMAIN.to_owned(), Role::Admin)])),
        }
    }

    /// The user or token name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The caller's role in `domain` (its own, or on `*`, whichever is higher).
    pub fn role(&self, domain: &str) -> Option<Role> {
        self.roles
            .get(domain)
            .copied()
            .max(self.roles.get(EVERY_DOMAIN).copied())
    }

    /// 403 unless the caller has `role` (or more) in `domain`.
    pub fn require(&self, role: Role, domain: &str) -> Result<(), Problem> {
        if self.role(domain) >= Some(role) {
            return Ok(());
        }
        Err(self.forbidden(role, domain))
    }

    /// For something that lives in `domain`: `hidden` (the route's 404) when the caller has no
    /// role there at all, so it learns nothing of it; 403 when its role is below `role`.
    pub fn require_on(
        &self,
        role: Role,
        domain: &str,
        hidden: impl FnOnce() -> Problem,
    ) -> Result<(), Problem> {
        match self.role(domain) {
            None => Err(hidden()),
            Some(have) if have >= role => Ok(()),
            Some(_) => Err(self.forbidden(role, domain)),
        }
    }

    /// The domains where the caller has `role` (or more), as the allow-list a store query
    /// takes (`JobQuery::domains`, `EventFilter::domains`): `None` for every domain.
    pub fn domains(&self, role: Role) -> Option<BTreeSet<String>> {
        if self.roles.get(EVERY_DOMAIN).is_some_and(|r| *r >= role) {
            return None;
        }
        Some(
            self.roles
                .iter()
                .filter(|(_, r)| **r >= role)
                .map(|(d, _)| d.clone())
                .collect(),
        )
    }

    /// The allow-list of a read: 403 unless the caller may read in `domain` when a query names
    /// one (the query's own filter then limits it), else the domains it may read in.
    pub fn readable(&self, domain: Option<&str>) -> Result<Option<BTreeSet<String>>, Problem> {
        match domain {
            Some(domain) => {
                self.require(Role::Viewer, domain)?;
                Ok(None)
            }
            None => Ok(self.domains(Role::Viewer)),
        }
    }

    fn forbidden(&self, role: Role, domain: &str) -> Problem {
        let scope = if domain == EVERY_DOMAIN {
            "every domain".to_owned()
        } else {
            format!("domain {domain:?}")
        };
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{} needs the {role} role in {scope}", self.name),
        )
    }
}

/// A password could not be hashed ([`hash_password`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password")]
pub struct HashError(#[source] argon2::password_hash::Error);

/// At most this many password checks run at once: each takes argon2's memory (19 MiB) and tens
/// of milliseconds of a core, and a flood of wrong passwords must not take the server's memory.
const MAX_VERIFYING: usize = 4;
/// Verified Basic credentials remembered (as salted SHA-256), so that a client's every request
/// does not pay argon2 again; the cache is emptied when it is full.
const MAX_REMEMBERED: usize = 4096;

/// Checks credentials against the configured users and tokens.
#[derive(Debug)]
pub struct Authenticator {
    users: HashMap<String, User>,
    tokens: HashMap<[u8; 32], Caller>,
    verifying: Semaphore,
    /// Per-process salt of the remembered credentials' hashes.
    salt: [u8; 32],
    remembered: Mutex<HashMap<[u8; 32], Caller>>,
    throttle: throttle::Throttle,
}

#[derive(Debug)]
struct User {
    hash: String,
    caller: Caller,
}

impl Authenticator {
    /// Auth off: every caller is an admin of every domain.
    pub fn disabled() -> Self {
        Self::build(HashMap::new(), HashMap::new(), ThrottleConfig::default())
    }

    /// The configured users and tokens, each checked: names unique, hashes argon2 PHC strings,
    /// token hashes 64 hex digits, domains names or `*`, at least one role.
    ///
    /// # Errors
    /// The first entry that is not valid, and why.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let mut users = HashMap::new();
        for user in &config.users {
            let entry = format!("user {:?}", user.name);
            check_name(&entry, &user.name)?;
            check_roles(&entry, &user.roles)?;
            let hash = PasswordHash::new(&user.password_hash).map_err(|source| {
                AuthConfigError::NotPhc {
                    entry: entry.clone(),
                    source,
                }
            })?;
            if !hash.algorithm.as_str().starts_with("argon2") {
                return Err(AuthConfigError::NotArgon2 {
                    entry,
                    algorithm: hash.algorithm.to_string(),
                });
            }
            let caller = Caller {
                name: Arc::from(user.name.as_str()),
                roles: Arc::new(user.roles.clone()),
            };
            let user_entry = User {
                hash: user.password_hash.clone(),
                caller,
            };
            if users.insert(user.name.clone(), user_entry).is_some() {
                return Err(AuthConfigError::DuplicateUser { entry });
            }
        }
        let mut tokens = HashMap::new();
        let mut names = BTreeSet::new();
        for token in &config.tokens {
            let entry = format!("token {:?}", token.name);
            check_name(&entry, &token.name)?;
            check_roles(&entry, &token.roles)?;
            if !names.insert(token.name.as_str()) || users.contains_key(&token.name) {
                return Err(AuthConfigError::NameTaken { entry });
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(token.sha256.trim(), &mut digest).map_err(|source| {
                AuthConfigError::BadTokenHash {
                    entry: entry.clone(),
                    source,
                }
            })?;
            let caller = Caller {
                name: Arc::from(token.name.as_str()),
                roles: Arc::new(token.roles.clone()),
            };
            if tokens.insert(digest, caller).is_some() {
                return Err(AuthConfigError::DuplicateToken { entry });
            }
        }
        Ok(Self::build(users, tokens, config.throttle))
    }

    fn build(
        users: HashMap<String, User>,
        tokens: HashMap<[u8; 32], Caller>,
        throttle: ThrottleConfig,
    ) -> Self {
        Self {
            users,
            tokens,
            verifying: Semaphore::new(MAX_VERIFYING),
            salt: rand::random(),
            remembered: Mutex::new(HashMap::new()),
            throttle: throttle::Throttle::new(throttle),
        }
    }

    /// Whether any user or token is configured (auth is on).
    pub fn is_enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// The caller of a request with these headers from `address`; 401 without credentials or
    /// with wrong ones, 429 when the user name or the address failed too often (`throttle`).
    pub async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller, Problem> {
        if !self.is_enabled() {
            return Ok(Caller::anonymous());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "this server needs credentials: HTTP Basic or a bearer token",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let digest: [u8; 32] = Sha256::digest(credentials.as_bytes()).into();
            if let Some(caller) = self.tokens.get(&digest) {
                return Ok(caller.clone());
            }
            if let Some(wait) = self.throttle.blocked(None, address) {
                metrics::counter!(crate::metrics::SIGN_IN_THROTTLED).increment(1);
                return Err(throttled(wait));
            }
            return Err(self.failed(None, address, "token", || {
                unauthorized("the bearer token is not valid")
            }));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(unauthorized(format!(
                "the Authorization scheme {scheme:?} is not Basic or Bearer"
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| unauthorized("the Basic credentials are not base64 of user:password"))?;
        let Some((name, password)) = decoded.split_once(':') else {
            return Err(unauthorized(
                "the Basic credentials are not base64 of user:password",
            ));
        };
        self.check_password(name, password, address).await
    }

    /// Counts a failed sign-in (`kind`: `password` or `token`) and answers `wrong`, or 429 when
    /// this failure blocks the name or address.
    fn failed(
        &self,
        user: Option<&str>,
        address: Option<std::net::IpAddr>,
        kind: &'static str,
        wrong: impl FnOnce() -> Problem,
    ) -> Problem {
        metrics::counter!(crate::metrics::SIGN_IN_FAILURES, "credential" => kind).increment(1);
        self.throttle.failed(user, address);
        wrong()
    }

    async fn check_password(
        &self,
        name: &str,
        password: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller, Problem> {
        let wrong = || unauthorized("wrong user name or password");
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(name.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Some(caller) = self.remembered().get(&key) {
            return Ok(caller.clone());
        }
        if let Some(wait) = self.throttle.blocked(Some(name), address) {
            metrics::counter!(crate::metrics::SIGN_IN_THROTTLED).increment(1);
            return Err(throttled(wait));
        }
        let user = self.users.get(name);
        // An unknown user costs the same check as a known one, so timing does not tell which
        // names exist.
        let hash = user.map_or_else(|| dummy_hash().to_owned(), |user| user.hash.clone());
        let password = password.to_owned();
        let _permit = self.verifying.acquire().await.map_err(|_| wrong())?;
        let verified = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        match user {
            Some(user) if verified => {
                tracing::info!(user = name, address = ?address, "signed in");
                self.throttle.signed_in(name, address);
                let mut remembered = self.remembered();
                if remembered.len() >= MAX_REMEMBERED {
                    remembered.clear();
                }
                remembered.insert(key, user.caller.clone());
                Ok(user.caller.clone())
            }
            _ => Err(self.failed(Some(name), address, "password", wrong)),
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Caller>> {
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An argon2id hash of `password` with a random salt, in PHC form (`omni passwd`).
///
/// # Errors
/// argon2's, should it refuse the password or the salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(HashError)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(HashError)
}

/// A new random bearer token and its SHA-256 in hex, for the configuration (`omni token`).
pub fn new_token() -> (String, String) {
    let token = format!(
        "omni_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    (token, digest)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("omni: no such user").unwrap_or_default())
}

/// 429: the name or address failed too often; a sign-in may be tried after `wait`.
fn throttled(wait: std::time::Duration) -> Problem {
    let seconds = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX).max(1);
    let mut problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed sign-ins",
        format!(
            "too many wrong passwords or tokens for this user or from this address; try again in {seconds} s"
        ),
    );
    problem.retry_after = Some(seconds);
    problem
}

fn unauthorized(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        state
            .auth
            .authenticate(&parts.headers, client_address(parts))
            .await
    }
}

/// The address of the client of a request, as the server accepted its connection (`None`
/// where the router is called without one, as in tests that call it directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl ClientAddress {
    /// Who counts as one caller for per-caller limits: the signed-in user or token when auth is
    /// on, else the client's address.
    pub fn caller_key(self, state: &AppState, caller: &Caller) -> String {
        match self.0 {
            _ if state.auth.is_enabled() => caller.name().to_owned(),
            Some(address) => address.to_string(),
            None => caller.name().to_owned(),
        }
    }
}

impl<S: Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(parts)))
    }
}

fn client_address(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[(&str, Role)]) -> Caller {
        Caller {
            name: Arc::from("t"),
            roles: Arc::new(roles.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect()),
        }
    }

    #[test]
    fn roles_include_lower_ones_and_star_grants_everywhere() {
        let c = caller(&[("a", Role::Submitter), ("*", Role::Viewer)]);
        assert_eq!(c.role("a"), Some(Role::Submitter));
        assert_eq!(c.role("b"), Some(Role::Viewer));
        assert!(c.require(Role::Viewer, "a").is_ok());
        assert!(c.require(Role::Submitter, "a").is_ok());
        assert_eq!(c.require(Role::Admin, "a").unwrap_err().status, 403);
        assert_eq!(c.require(Role::Submitter, "b").unwrap_err().status, 403);
        assert_eq!(c.domains(Role::Viewer), None);
        assert_eq!(
            c.domains(Role::Submitter),
            Some(BTreeSet::from(["a".to_owned()]))
        );
        let only = caller(&[("a", Role::Viewer)]);
        let hidden = only
            .require_on(Role::Viewer, "b", || Problem::no_such_job("x"))
            .unwrap_err();
        assert_eq!(hidden.status, 404);
        let forbidden = only
            .require_on(Role::Submitter, "a", || Problem::no_such_job("x"))
            .unwrap_err();
        assert_eq!(forbidden.status, 403);
    }

    #[tokio::test]
    async fn basic_and_bearer_credentials_are_checked() {
        let (token, digest) = new_token();
        let auth = Authenticator::new(&AuthConfig {
            users: vec![UserConfig {
                name: "ann".into(),
                password_hash: hash_password("s3cret").unwrap(),
                roles: BTreeMap::from([("a".to_owned(), Role::Submitter)]),
            }],
            tokens: vec![TokenConfig {
                name: "ci".into(),
                sha256: digest,
                roles: BTreeMap::from([("*".to_owned(), Role::Viewer)]),
            }],
            throttle: Default::default(),
        })
        .unwrap();
        let with = |value: String| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        let basic = |user: &str, password: &str| {
            with(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ))
        };
        for _ in 0..2 {
            // The second time from the remembered credentials.
            let ann = auth
                .authenticate(&basic("ann", "s3cret"), None)
                .await
                .unwrap();
            assert_eq!(ann.name(), "ann");
            assert_eq!(ann.role("a"), Some(Role::Submitter));
        }
        let ci = auth
            .authenticate(&with(format!("Bearer {token}")), None)
            .await
            .unwrap();
        assert_eq!(ci.name(), "ci");
        for headers in [
            axum::http::HeaderMap::new(),
            basic("ann", "wrong"),
            basic("bob", "s3cret"),
            with("Bearer nope".into()),
            with("Basic !!!".into()),
            with("Digest x".into()),
            with(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("no-colon")
            )),
        ] {
            let problem = auth.authenticate(&headers, None).await.unwrap_err();
            assert_eq!(problem.status, 401, "{headers:?}: {problem:?}");
        }
        assert!(
            Authenticator::disabled()
                .authenticate(&axum::http::HeaderMap::new(), None)
                .await
                .is_ok()
        );
    }
}
