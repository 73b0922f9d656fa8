//! [`Name`]: the one rule for the names of services, tasks, domains and steps.
//!
//! A name is an RFC 1123 DNS label: lowercase letters, digits and `-`, 1 to 63 long, not
//! starting or ending with `-`. It becomes part of Kubernetes object names and labels, of
//! Cassandra partition keys and of URLs, so it is checked once, where it enters, and carried as
//! a [`Name`] from there.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A checked service, task, domain or step name (see the module's rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

/// A string that breaks [`Name`]'s rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} {rule}", rule = Name::RULE)]
pub struct InvalidName(pub String);

impl Name {
    /// The rule as a regular expression (JSON Schema `pattern`).
    pub const PATTERN: &'static str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
    /// The longest name.
    pub const MAX_LEN: usize = 63;
    /// The rule in words, for error messages.
    pub const RULE: &'static str = "must be lowercase letters, digits and '-', 1 to 63 long";

    /// Checks `name`.
    ///
    /// # Errors
    /// [`InvalidName`] when it breaks the rule.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        if Self::is_valid(&name) {
            Ok(Name(name))
        } else {
            Err(InvalidName(name))
        }
    }

    /// Whether `name` keeps the rule.
    pub fn is_valid(name: &str) -> bool {
        let b = name.as_bytes();
        !b.is_empty()
            && b.len() <= Self::MAX_LEN
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The rule as a JSON Schema (a string with [`Name::PATTERN`]).
    pub fn json_schema() -> serde_json::Value {
        serde_json::json!({
            "type": "string",
            "minLength": 1,
            "maxLength": Self::MAX_LEN,
            "pattern": Self::PATTERN,
        })
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Name::new(name).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Name {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl TryFrom<String> for Name {
    type Error = InvalidName;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::new(s)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_are_names_and_nothing_else_is() {
        for good in ["a", "obs", "srpm", "x-1", "0", &"a".repeat(63)] {
            assert!(Name::is_valid(good), "{good:?}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a b",
            "ä",
            &"a".repeat(64),
        ] {
            assert!(!Name::is_valid(bad), "{bad:?}");
            assert_eq!(Name::new(bad), Err(InvalidName(bad.to_owned())));
        }
    }

    #[test]
    fn names_are_checked_when_deserialized() {
        let name: Name = serde_json::from_str("\"obs\"").unwrap();
        assert_eq!(name, "obs");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"obs\"");
        let error = serde_json::from_str::<Name>("\"Obs\"").unwrap_err();
        assert!(error.to_string().contains(Name::RULE), "{error}");
    }

    #[test]
    fn the_schema_says_the_rule() {
        let schema = Name::json_schema();
        assert_eq!(schema["pattern"], Name::PATTERN);
        assert_eq!(schema["maxLength"], 63);
    }
}
