//! `omni serve`'s configuration: a TOML file (`--config`), then environment variables, then
//! flags, each overriding the one before. Every key is optional; an unknown key is an error.
//!
//! ```toml
//! listen = "127.0.0.1:8080"        # OMNI_LISTEN, --listen
//! plugin_dir = "./.omni/plugins"   # OMNI_PLUGIN_DIR, --plugin-dir
//! template_dir = "./templates"     # OMNI_TEMPLATE_DIR, --template-dir
//! data_dir = "./.omni/data"        # OMNI_DATA_DIR, --data-dir (compile cache under cache/)
//! namespace = "omni-jobs"          # Kubernetes namespace of the jobs' objects
//! body_limit_kib = 1024            # largest request body
//!
//! [store.embedded]               # the default store: one file under data_dir
//! job_ttl = "30d"                  # finished jobs (with history and logs) are removed after this
//! idempotency_ttl = "24h"          # how long an Idempotency-Key is remembered
//! sweep_interval = "10m"           # how often expired records are removed
//!
//! [plugins]
//! max_instances = 256              # plugin instances running at once (0: no pooling)
//! [plugins.limits.default]
//! timeout_ms = 1000                # every plugin call's deadline
//! memory_mib = 64                  # memory of one plugin instance
//! output_kib = 4096                # size of one plugin answer
//! [plugins.limits.tasks.iso]       # overrides for one task
//! memory_mib = 128
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use omni_runtime::LimitsConfig;
use omni_store_embedded::EmbeddedConfig;
use serde::Deserialize;

use crate::default_path;

/// The whole configuration after defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub plugin_dir: PathBuf,
    pub template_dir: PathBuf,
    pub data_dir: PathBuf,
    pub namespace: String,
    pub body_limit_kib: usize,
    pub store: StoreConfig,
    pub plugins: PluginsConfig,
}

/// `[store]`: which backend keeps jobs and logs, and its settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub embedded: EmbeddedConfig,
}

/// `[plugins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    pub max_instances: u32,
    pub limits: LimitsConfig,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugin_dir: default_path("./.omni/plugins"),
            template_dir: default_path("./templates"),
            data_dir: default_path("./.omni/data"),
            namespace: "omni-jobs".to_owned(),
            body_limit_kib: 1024,
            store: StoreConfig::default(),
            plugins: PluginsConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid configuration in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_errors() {
        let config: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[plugins.limits.tasks.iso]\nmemory_mib = 128\n",
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.plugin_dir, PathBuf::from("./.omni/plugins"));
        assert_eq!(config.plugins.limits.for_task("iso").memory, 128 << 20);
        let err = toml::from_str::<Config>("listne = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `listne`"), "{err}");
        let err = toml::from_str::<Config>("[plugins.limits.default]\ntimeout = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
        let err = toml::from_str::<Config>("[store.embedded]\njob_tll = \"1d\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `job_tll`"), "{err}");
        let err = toml::from_str::<Config>("[store.embedded]\njob_ttl = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("job_ttl"), "{err}");
        let config: Config = toml::from_str("[store.embedded]\njob_ttl = \"7d\"\n").unwrap();
        assert_eq!(config.store.embedded.job_ttl.as_secs(), 7 * 24 * 3600);
    }
}
