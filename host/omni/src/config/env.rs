//! The environment's overrides of the configuration: the one place they are read.

use std::path::PathBuf;

use anyhow::Context as _;
use omni_store_cassandra::CassandraConfig;

use super::{Config, StoreConfig};

impl Config {
    /// Applies the environment's overrides (`var` reads a variable): the one place they are
    /// read, each named in README's "Configuration" table.
    ///
    /// | variable | overrides |
    /// |---|---|
    /// | `OMNI_LISTEN` | `listen` |
    /// | `OMNI_PLUGIN_DIR` | `plugin_dir` |
    /// | `OMNI_TEMPLATE_DIR` | `template_dir` |
    /// | `OMNI_DATA_DIR` | `data_dir` |
    /// | `OMNI_USERS_FILE` | `[auth] users_file` |
    /// | `OMNI_STORE_KIND` | `[store] kind` |
    /// | `OMNI_CASSANDRA_CONTACT_POINTS` | `[store.cassandra] contact_points` (comma-separated) |
    /// | `OMNI_CASSANDRA_KEYSPACE` | `[store.cassandra] keyspace` |
    ///
    /// An empty variable is as an absent one.
    ///
    /// # Errors
    /// A value that does not parse, naming the variable.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(listen) = var("OMNI_LISTEN") {
            self.listen = listen
                .parse()
                .with_context(|| format!("OMNI_LISTEN={listen:?} is not an address:port"))?;
        }
        for (name, path) in [
            ("OMNI_PLUGIN_DIR", &mut self.plugin_dir),
            ("OMNI_TEMPLATE_DIR", &mut self.template_dir),
            ("OMNI_DATA_DIR", &mut self.data_dir),
        ] {
            if let Some(value) = var(name) {
                *path = PathBuf::from(value);
            }
        }
        if let Some(file) = var("OMNI_USERS_FILE") {
            self.auth.users_file = Some(PathBuf::from(file));
        }
        if let Some(kind) = var("OMNI_STORE_KIND") {
            self.store.kind = Some(kind.parse().context("OMNI_STORE_KIND")?);
        }
        self.store.apply_env(&var);
        Ok(())
    }
}

impl StoreConfig {
    /// `OMNI_CASSANDRA_CONTACT_POINTS` (comma-separated `host:port`s) and
    /// `OMNI_CASSANDRA_KEYSPACE` override `[store.cassandra]`; the first makes the section (so,
    /// without a `kind`, the store is Cassandra).
    fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        if let Some(points) = var("OMNI_CASSANDRA_CONTACT_POINTS").filter(|p| !p.trim().is_empty())
        {
            let points: Vec<String> = points
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            match &mut self.cassandra {
                Some(cassandra) => cassandra.contact_points = points,
                None => self.cassandra = Some(CassandraConfig::new(points)),
            }
        }
        if let (Some(keyspace), Some(cassandra)) =
            (var("OMNI_CASSANDRA_KEYSPACE"), &mut self.cassandra)
        {
            cassandra.keyspace = keyspace;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SelectedStore;

    #[test]
    fn environment_turns_cassandra_on_and_overrides_it() {
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                "OMNI_CASSANDRA_CONTACT_POINTS" => Some("10.0.0.5:9042, 10.0.0.6:9042".into()),
                "OMNI_CASSANDRA_KEYSPACE" => Some("omni_prod".into()),
                "OMNI_LISTEN" => Some("0.0.0.0:9000".into()),
                "OMNI_DATA_DIR" => Some("/var/lib/omni".into()),
                "OMNI_TEMPLATE_DIR" => Some(String::new()),
                _ => None,
            })
            .unwrap();
        let SelectedStore::Cassandra(cassandra) = config.store.selected().unwrap() else {
            panic!("contact points in the environment choose Cassandra");
        };
        assert_eq!(cassandra.contact_points, ["10.0.0.5:9042", "10.0.0.6:9042"]);
        assert_eq!(cassandra.keyspace, "omni_prod");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/omni"));
        // Empty is absent.
        assert_eq!(config.template_dir, Config::default().template_dir);
        let err = Config::default()
            .apply_env(|name| (name == "OMNI_LISTEN").then(|| "localhost".into()))
            .unwrap_err();
        assert!(err.to_string().contains("OMNI_LISTEN"), "{err}");
    }
}
