//! `[store]`: which backend keeps jobs and logs, and each backend's settings.

use omni_store_cassandra::CassandraConfig;
use omni_store_embedded::EmbeddedConfig;
use serde::Deserialize;

/// `[store]`: which backend keeps jobs and logs (`kind`, as `[[engines]]` say theirs), and each
/// backend's settings.
///
/// Without `kind`, the store is Cassandra when `[store.cassandra]` is there (the configurations
/// written before `kind` existed), else the embedded one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which backend; see the type's docs for the default.
    pub kind: Option<StoreKind>,
    /// `[store.embedded]`.
    pub embedded: EmbeddedConfig,
    /// `[store.cassandra]`.
    pub cassandra: Option<CassandraConfig>,
}

/// The store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One file under the data directory, for one server.
    Embedded,
    /// Cassandra or ScyllaDB, for several replicas.
    Cassandra,
}

/// A store kind that is not one of [`StoreKind`]'s (`OMNI_STORE_KIND`).
#[derive(Debug, thiserror::Error)]
#[error("unknown store kind {0:?} (embedded or cassandra)")]
pub struct UnknownStoreKind(pub String);

impl std::str::FromStr for StoreKind {
    type Err = UnknownStoreKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embedded" => Ok(StoreKind::Embedded),
            "cassandra" => Ok(StoreKind::Cassandra),
            other => Err(UnknownStoreKind(other.to_owned())),
        }
    }
}

impl StoreConfig {
    /// The store to open, with its settings.
    ///
    /// # Errors
    /// When `kind = "cassandra"` names no contact points (in `[store.cassandra]` or the
    /// environment).
    pub fn selected(&self) -> anyhow::Result<SelectedStore<'_>> {
        let kind = self.kind.unwrap_or(if self.cassandra.is_some() {
            StoreKind::Cassandra
        } else {
            StoreKind::Embedded
        });
        match (kind, &self.cassandra) {
            (StoreKind::Embedded, _) => Ok(SelectedStore::Embedded(&self.embedded)),
            (StoreKind::Cassandra, Some(cassandra)) => Ok(SelectedStore::Cassandra(cassandra)),
            (StoreKind::Cassandra, None) => anyhow::bail!(
                "[store] kind = \"cassandra\" needs [store.cassandra] with contact_points (or \
                 OMNI_CASSANDRA_CONTACT_POINTS)"
            ),
        }
    }

    /// Sets the event TTL of both backends' settings (from `[events] ttl`).
    pub fn set_event_ttl(&mut self, ttl: std::time::Duration) {
        self.embedded.event_ttl = ttl;
        if let Some(cassandra) = &mut self.cassandra {
            cassandra.event_ttl = ttl;
        }
    }
}

/// The backend [`StoreConfig::selected`] chose, with its settings.
#[derive(Debug)]
pub enum SelectedStore<'a> {
    /// The embedded store.
    Embedded(&'a EmbeddedConfig),
    /// Cassandra.
    Cassandra(&'a CassandraConfig),
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn the_store_is_chosen_by_kind_or_by_the_section_that_is_there() {
        let embedded: Config = toml::from_str("").unwrap();
        assert!(matches!(
            embedded.store.selected().unwrap(),
            SelectedStore::Embedded(_)
        ));
        // Written before `kind` existed: the section chooses.
        let old: Config = toml::from_str(
            "[store.cassandra]
contact_points = [\"a:9042\"]
",
        )
        .unwrap();
        assert!(matches!(
            old.store.selected().unwrap(),
            SelectedStore::Cassandra(_)
        ));
        let explicit: Config = toml::from_str(
            "[store]\nkind = \"embedded\"\n[store.cassandra]\ncontact_points = [\"a:9042\"]\n",
        )
        .unwrap();
        assert!(matches!(
            explicit.store.selected().unwrap(),
            SelectedStore::Embedded(_)
        ));
        let missing: Config = toml::from_str("[store]\nkind = \"cassandra\"\n").unwrap();
        let err = missing.store.selected().unwrap_err();
        assert!(err.to_string().contains("[store.cassandra]"), "{err}");
        let err = toml::from_str::<Config>("[store]\nkind = \"redis\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown variant `redis`"), "{err}");
        let mut env = Config::default();
        let err = env
            .apply_env(|name| (name == "OMNI_STORE_KIND").then(|| "redis".into()))
            .unwrap_err();
        assert!(err.to_string().contains("OMNI_STORE_KIND"), "{err}");
    }
}
