//! `[auth]` as configured: users and tokens with their roles, and why an entry is refused
//! ([`AuthConfigError`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{EVERY_DOMAIN, Role};
use omni_core::Name;

/// `[auth]`: the users and tokens (`docs/api.md`, "Auth").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Users who sign in with a password (HTTP Basic).
    pub users: Vec<UserConfig>,
    /// Bearer tokens, for services.
    pub tokens: Vec<TokenConfig>,
    /// How wrong credentials are held back.
    pub throttle: super::ThrottleConfig,
}

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name of HTTP Basic.
    pub name: String,
    /// The password's argon2 hash in PHC form (`$argon2id$v=19$...`), as `omni passwd` prints.
    pub password_hash: String,
    /// Roles by domain (`*`: every domain).
    pub roles: BTreeMap<String, Role>,
}

/// One `[[auth.tokens]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (logs name the caller by it).
    pub name: String,
    /// The token's SHA-256 in hex, as `omni token` prints.
    pub sha256: String,
    /// Roles by domain (`*`: every domain).
    pub roles: BTreeMap<String, Role>,
}

/// Why the `[auth]` configuration is refused
/// ([`Authenticator::new`](super::Authenticator::new)). Each error names the entry at fault
/// (`user "ann"`, `token "ci"`).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A user or token name that is empty, or has `:` or control characters.
    #[error("{entry}: a name must be non-empty, without ':' or control characters")]
    BadName {
        /// The entry.
        entry: String,
    },
    /// An entry with no roles.
    #[error("{entry} has no roles; give it e.g. roles = {{ default = \"viewer\" }}")]
    NoRoles {
        /// The entry.
        entry: String,
    },
    /// A role's key that is neither a domain name nor `*`.
    #[error(
        "{entry}: {domain:?} is not a domain name (lowercase letters, digits and '-') or \"*\""
    )]
    BadDomain {
        /// The entry.
        entry: String,
        /// The key.
        domain: String,
    },
    /// A `password_hash` that is not a PHC hash string.
    #[error("{entry}: password_hash is not a PHC hash string; make one with `omni passwd`")]
    NotPhc {
        /// The entry.
        entry: String,
        /// The parser's error.
        #[source]
        source: argon2::password_hash::Error,
    },
    /// A `password_hash` of another algorithm than argon2.
    #[error("{entry}: password_hash uses {algorithm}, not argon2; make one with `omni passwd`")]
    NotArgon2 {
        /// The entry.
        entry: String,
        /// The hash's algorithm.
        algorithm: String,
    },
    /// Two users of one name.
    #[error("{entry} is configured twice")]
    DuplicateUser {
        /// The entry.
        entry: String,
    },
    /// A token named as another token or a user.
    #[error("{entry}: the name is taken by another token or user")]
    NameTaken {
        /// The entry.
        entry: String,
    },
    /// A token's `sha256` that is not 64 hex digits.
    #[error("{entry}: sha256 must be 64 hex digits; make a token with `omni token`")]
    BadTokenHash {
        /// The entry.
        entry: String,
        /// The decoder's error.
        #[source]
        source: hex::FromHexError,
    },
    /// Two entries with the same token.
    #[error("{entry}: the same token is configured twice")]
    DuplicateToken {
        /// The entry.
        entry: String,
    },
}

pub(super) fn check_name(entry: &str, name: &str) -> Result<(), AuthConfigError> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
        return Err(AuthConfigError::BadName {
            entry: entry.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn check_roles(
    entry: &str,
    roles: &BTreeMap<String, Role>,
) -> Result<(), AuthConfigError> {
    if roles.is_empty() {
        return Err(AuthConfigError::NoRoles {
            entry: entry.to_owned(),
        });
    }
    if let Some(domain) = roles
        .keys()
        .find(|domain| *domain != EVERY_DOMAIN && !Name::is_valid(domain))
    {
        return Err(AuthConfigError::BadDomain {
            entry: entry.to_owned(),
            domain: domain.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Authenticator, hash_password};
    use super::*;

    #[test]
    fn bad_configurations_are_refused_with_the_entry_named() {
        let user = |name: &str, hash: &str, roles: &[(&str, Role)]| UserConfig {
            name: name.into(),
            password_hash: hash.into(),
            roles: roles.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect(),
        };
        let hash = hash_password("pw").unwrap();
        let refused = |config: AuthConfig| Authenticator::new(&config).unwrap_err().to_string();
        let err = refused(AuthConfig {
            users: vec![user("ann", "plain", &[("a", Role::Viewer)])],
            tokens: vec![],
            throttle: Default::default(),
        });
        assert!(
            err.contains("user \"ann\"") && err.contains("omni passwd"),
            "{err}"
        );
        let err = refused(AuthConfig {
            users: vec![user("ann", &hash, &[])],
            tokens: vec![],
            throttle: Default::default(),
        });
        assert!(err.contains("no roles"), "{err}");
        let err = refused(AuthConfig {
            users: vec![user("ann", &hash, &[("Bad_Domain", Role::Viewer)])],
            tokens: vec![],
            throttle: Default::default(),
        });
        assert!(err.contains("not a domain name"), "{err}");
        let err = refused(AuthConfig {
            users: vec![
                user("ann", &hash, &[("a", Role::Viewer)]),
                user("ann", &hash, &[("a", Role::Viewer)]),
            ],
            tokens: vec![],
            throttle: Default::default(),
        });
        assert!(err.contains("twice"), "{err}");
        let err = refused(AuthConfig {
            users: vec![],
            tokens: vec![TokenConfig {
                name: "ci".into(),
                sha256: "abc".into(),
                roles: BTreeMap::from([("a".to_owned(), Role::Viewer)]),
            }],
            throttle: Default::default(),
        });
        assert!(err.contains("64 hex digits"), "{err}");
        let md5 = "$md5$abc";
        let err = refused(AuthConfig {
            users: vec![user("ann", md5, &[("a", Role::Viewer)])],
            tokens: vec![],
            throttle: Default::default(),
        });
        assert!(err.contains("password_hash"), "{err}");
    }
}
