//! `omni serve`'s configuration: a TOML file (`--config`), then environment variables
//! ([`Config::apply_env`], the one place they are read), then flags, each overriding the one
//! before. Every key is optional; an unknown key is an error.
//!
//! ```toml
//! # Relative paths (here, in the environment and in flags) are resolved against the directory
//! # `omni serve` starts in, once, at start.
//! listen = "127.0.0.1:8080"        # OMNI_LISTEN, --listen
//! plugin_dir = "./.omni/plugins"   # OMNI_PLUGIN_DIR, --plugin-dir
//! template_dir = "./templates"     # OMNI_TEMPLATE_DIR, --template-dir
//! data_dir = "./.omni/data"        # OMNI_DATA_DIR, --data-dir (compile cache under cache/)
//! namespace = "omni-jobs"          # the namespace dry runs render for (a job's comes from its engine)
//! body_limit_kib = 1024            # largest request body
//!
//! [auth]                         # no users and no tokens: auth off, allowed only on loopback
//! users_file = "/etc/omni/users/users.toml"   # OMNI_USERS_FILE; more [[users]] and [[tokens]] (a Secret)
//! [auth.throttle]                  # wrong passwords and tokens (docs/api.md, "Auth")
//! failures = 5                     # in a row, per user name and per client address, before 429s
//! max_block = "5m"                 # blocks double from 1s up to this
//! forget_after = "15m"             # failures are forgotten this long after the last one
//! [[auth.users]]                   # HTTP Basic
//! name = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # `omni passwd` prints it
//! roles = { openeuler = "submitter", "*" = "viewer" }     # viewer | submitter | admin; "*": every domain
//! [[auth.tokens]]                  # Authorization: Bearer <token>
//! name = "obs"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"   # `omni token` prints it
//! roles = { openeuler = "submitter" }
//!
//! [http]                         # connections (docs/api.md, "Conventions")
//! header_read_timeout = "10s"      # a request's head must arrive within this; idle connections close after it
//! request_timeout = "60s"          # a request that does not stream is answered within this, or 503
//! max_connections = 4096           # open at once; more wait to be accepted
//! max_connections_per_address = 512   # from one client address; more are answered 429 and closed
//! max_streams_per_caller = 128     # event and log streams per user or token (auth off: per address); then 429
//! max_answer_kib = 16384           # a job listing or page of log lines is cut short before this (with a cursor)
//! shutdown_timeout = "10s"         # on SIGTERM: streams end at once, requests in flight get this long
//!
//! [store]
//! kind = "embedded"                # OMNI_STORE_KIND: embedded | cassandra (without it: cassandra
//!                                  # when [store.cassandra] is there)
//! [store.embedded]               # one file under data_dir
//! job_ttl = "30d"                  # finished jobs (with history and logs) are removed after this
//! idempotency_ttl = "24h"          # how long an Idempotency-Key is remembered
//! event_ttl = "7d"                 # job-change events (GET /v1/events, webhooks) are kept this long
//! sweep_interval = "10m"           # how often expired records are removed
//! cache_bytes = 67108864           # the most memory its page cache takes
//!
//! [store.cassandra]              # kind = "cassandra" (OMNI_CASSANDRA_CONTACT_POINTS)
//! contact_points = ["10.0.0.5:9042", "10.0.0.6:9042"]
//! keyspace = "omni"                # OMNI_CASSANDRA_KEYSPACE; created if missing, with:
//! replication = { class = "NetworkTopologyStrategy", datacenters = { dc1 = 3 } }
//! job_ttl = "30d"
//! idempotency_ttl = "24h"
//! event_ttl = "7d"
//! event_settle = "2s"              # event readers stay this far behind now (other replicas' writes)
//!
//! [events]                       # GET /v1/events
//! ttl = "7d"                       # sets event_ttl of whichever store is used
//! poll_interval = "1s"             # an idle stream reads the store this often (other replicas' events)
//! keep_alive = "15s"               # comment lines on idle streams
//!
//! [webhooks]                     # delivery (one replica delivers, holding the "webhooks" lease)
//! timeout = "10s"                  # one delivery's deadline; a timeout is retried
//! min_backoff = "500ms"            # retries wait up to this, doubling each time (full jitter) ...
//! max_backoff = "5m"               # ... up to this, until the receiver answers 2xx
//! lease_ttl = "15s"
//! poll_interval = "1s"             # the store is read this often for other replicas' events
//! window = 512                     # events per webhook in flight (the most a restart sends again)
//! concurrency = 64                 # jobs whose events go out at once, per webhook
//! allow_addresses = []             # internal addresses deliveries may reach anyway (CIDR or one
//!                                  # address): loopback, private, link-local, unique-local,
//!                                  # IPv4-mapped and metadata addresses are refused otherwise
//! max_per_domain = 100             # webhooks one domain may have (409 beyond)
//! [[webhooks.secret_keys]]         # seal webhook secrets at rest (current key first; older ones
//! file = "/etc/omni/webhook-key-2" #   still open what they sealed, until the start that reseals)
//! [[webhooks.secret_keys]]         # 32 bytes as base64 or hex, inline (key = "...") or in a file;
//! key = "..."                      #   none: data_dir/webhook-secrets.key is made (embedded store only)
//!
//! [plugins]
//! max_instances = 256              # plugin instances running at once (0: no pooling)
//! quick_compile = true             # serve a new plugin from a quick compile while the optimized one builds
//! [plugins.limits.default]
//! timeout_ms = 1000                # every plugin call's deadline
//! memory_mib = 64                  # memory of one plugin instance
//! output_kib = 4096                # size of one plugin answer
//! [plugins.limits.tasks.iso]       # overrides for one task
//! memory_mib = 128
//!
//! [scheduler]
//! max_running_per_domain = { openeuler = 20 }   # jobs of a domain running at once (no limit if absent)
//! max_running_per_task = { iso = 4 }            # jobs of a task running at once
//! lease_ttl = "15s"                # one replica schedules, holding this lease; a dead one's jobs move within it
//! scan_interval = "2s"             # how often the store is searched for jobs submitted on other replicas
//! retry_after = "5s"               # an engine that could not be reached is left alone this long
//!
//! [logs]
//! max_line_bytes = 16384           # longer lines are stored in pieces of this size
//! max_job_bytes = 67108864         # most log stored per job (text + 64 bytes a line); then a marker line, and no more
//! max_job_lines = 1000000          # most lines stored per job; then a marker line, and no more
//! follower_batches = 256           # batches a live follower may fall behind before it is dropped
//!
//! [artifacts]                      # where jobs' artifacts are kept
//! kind = "directory"               # under the data directory (the default) | "s3" (keys below)
//! path = "artifacts"               # relative to data_dir unless absolute
//! # kind = "s3"
//! # endpoint = "http://127.0.0.1:8333"   # AWS itself without it
//! # bucket = "omni-artifacts"       # must exist
//! # region = "us-east-1"
//! # prefix = "prod"                 # keys under prod/ in the bucket
//! # allow_http = true               # plain http:// endpoints are refused without it
//! # credentials_file = "/etc/omni/s3-credentials"   # AWS shared credentials (INI); else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
//! # profile = "default"
//! # part_size_mib = 8               # multipart part size (5..=512)
//! # parts_in_flight = 2             # parts of one upload sent at once (1..=8)
//!
//! [uploads]                        # files sent to POST /v1/uploads for jobs (kept in [artifacts])
//! max_mib = 4096                   # the largest upload
//! ttl = "24h"                      # kept this long after it was last sent, while no job uses it
//! # keep_with_jobs = "30d"         # kept this long after a job using it was submitted (the store's job_ttl)
//!
//! [[engines]]                      # where jobs run; without any entry, one local engine as here
//! kind = "local"                   # the steps run as processes on this machine
//! name = "local"                   # recorded on the jobs it runs
//! arches = ["x86_64"]              # API arches it runs (this machine's by default)
//! max_running = 2                  # jobs at once
//! root = "./.omni/data/jobs"       # job directories (default data_dir/jobs); a job's volumes/output files become its artifacts when it ends
//! max_log_bytes = 67108864         # a job's log kept in its directory (log.jsonl) until cleanup, text + per-line bookkeeping; then a marker line
//! unsandboxed = false              # true: steps run as plain processes of the server's user (no isolation; a warning at start)
//! keep_finished = "30d"            # a job's directory is removed this long after it ended (keep equal to the store's job_ttl)
//! max_outputs = 100000             # most files a job may leave in its output to become artifacts (more: the job fails)
//! max_output_mib = 65536           # most MiB those files may have together (the same)
//! [engines.sandbox]                # the sandbox of every step (README, "The local engine's sandbox")
//! bwrap = "bwrap"                  # bubblewrap 0.8 or later
//! slirp4netns = "slirp4netns"      # user-mode networking, for network = "user" (1.2 or later)
//! network = "user"                 # what a step that asks for network gets: user (its own stack, no host loopback) | none (it fails) | host
//! first_uid = 100000               # a root server runs each job as its own uid from this range ...
//! uids = 1000                      # ... of this many (jobs running at once at most)
//! host_paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"]   # seen read-only
//! hide = []                        # more paths steps must not see (the server's own are hidden already)
//! [engines.sandbox.limits]         # every process of a step
//! memory_mib = 8192                # address space, when the step's resources name no memory
//! cpu_seconds = 14400              # CPU time
//! processes = 1024                 # processes and threads of the step
//! file_size_mib = 32768            # largest file written
//!
//! [[engines]]                      # a Kubernetes cluster (one entry per cluster)
//! kind = "kubernetes"
//! name = "arm-cluster"
//! arches = ["aarch64"]             # the rendered Jobs' nodeSelector picks the nodes
//! max_running = 200
//! kubeconfig = "/etc/omni/arm-cluster.kubeconfig"   # in-cluster (or KUBECONFIG, ~/.kube/config) without it
//! context = "omni"                 # the kubeconfig's current context without it
//! namespace = "omni-jobs"          # its jobs' objects are rendered for and go here
//! propagation = "background"       # how cancel deletes the Job's pods: background | foreground
//! max_log_streams = 256            # running steps' logs followed at once; beyond, they take turns
//! ```
//!
//! # Layout
//! - this file: [`Config`] and its small sections (`[plugins]`, `[events]`, `[[engines]]`),
//!   defaults, paths, loading.
//! - `auth`: `[auth]` ([`AuthSection`]) and its users file.
//! - `store`: `[store]` ([`StoreConfig`]) and which backend it selects.
//! - `env`: the environment's overrides ([`Config::apply_env`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use omni_engine_kube::KubeEngineConfig;
use omni_engine_local::LocalEngineConfig;
use omni_jobs::LogLimits;
use omni_runtime::LimitsConfig;
use omni_scheduler::SchedulerConfig;
use omni_webhooks::WebhooksConfig;
use serde::Deserialize;

mod auth;
mod env;
mod store;

pub use auth::AuthSection;
pub use store::{SelectedStore, StoreConfig, StoreKind, UnknownStoreKind};

/// The whole configuration after defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the API listens (`omni serve`'s listener; [`crate::serve`] is given one).
    pub listen: SocketAddr,
    /// The plugins directory (`*.wasm`), watched.
    pub plugin_dir: PathBuf,
    /// The tasks' templates, one directory per task.
    pub template_dir: PathBuf,
    /// Omni's own data: the embedded store, the compile cache, the local engine's jobs.
    pub data_dir: PathBuf,
    /// The namespace dry runs render for (a job's comes from its engine).
    pub namespace: String,
    /// The largest request body, in KiB.
    pub body_limit_kib: usize,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[plugins]`.
    pub plugins: PluginsConfig,
    /// `[[engines]]`: where jobs run; one local engine unless the file names others.
    pub engines: Vec<EngineConfig>,
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    /// `[logs]`: what stored logs keep to, and how far live followers may fall behind.
    pub logs: LogLimits,
    /// `[events]`.
    pub events: EventsConfig,
    /// `[webhooks]`.
    pub webhooks: WebhooksConfig,
    /// `[auth]`.
    pub auth: AuthSection,
    /// `[http]`: connections, timeouts, the stop.
    pub http: crate::http::HttpConfig,
    /// `[artifacts]`: where jobs' artifacts are kept (a directory under the data directory,
    /// or an S3-compatible object store).
    pub artifacts: omni_artifacts::ArtifactsConfig,
    /// `[uploads]`: the size limit of files sent for jobs, and how long they are kept.
    pub uploads: omni_jobs::UploadPolicy,
}
/// `[events]`: the event stream. `ttl` sets the store's `event_ttl` (embedded or Cassandra).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Sets the store's `event_ttl`.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<std::time::Duration>,
    /// How often an idle stream reads the store (other replicas' events).
    #[serde(with = "humantime_serde")]
    pub poll_interval: std::time::Duration,
    /// How often idle streams get a comment line.
    #[serde(with = "humantime_serde")]
    pub keep_alive: std::time::Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let stream = omni_api::EventsConfig::default();
        Self {
            ttl: None,
            poll_interval: stream.poll_interval,
            keep_alive: stream.keep_alive,
        }
    }
}

impl EventsConfig {
    /// The API's part.
    pub fn stream(&self) -> omni_api::EventsConfig {
        omni_api::EventsConfig {
            poll_interval: self.poll_interval,
            keep_alive: self.keep_alive,
        }
    }
}

/// One `[[engines]]` entry; `kind` says which.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EngineConfig {
    /// Processes on this machine.
    Local(LocalEngineConfig),
    /// A Kubernetes cluster.
    Kubernetes(KubeEngineConfig),
}
/// `[plugins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Plugin instances running at once (0: no pooling).
    pub max_instances: u32,
    /// Serve a new plugin from a quick compile while the optimized one builds.
    pub quick_compile: bool,
    /// `[plugins.limits]`: per-plugin call limits.
    pub limits: LimitsConfig,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            quick_compile: true,
            limits: LimitsConfig::default(),
        }
    }
}

/// The default directories of `omni serve`, relative to where it runs.
fn default_path(path: &str) -> PathBuf {
    PathBuf::from(path)
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
            engines: vec![EngineConfig::Local(LocalEngineConfig::new())],
            scheduler: SchedulerConfig::default(),
            logs: LogLimits::default(),
            events: EventsConfig::default(),
            webhooks: WebhooksConfig::default(),
            auth: AuthSection::default(),
            http: crate::http::HttpConfig::default(),
            artifacts: omni_artifacts::ArtifactsConfig::default(),
            uploads: omni_jobs::UploadPolicy::default(),
        }
    }
}

impl Config {
    /// Makes every path of the configuration absolute against `cwd`, the directory `omni serve`
    /// started in: the local engine runs each step in a directory of its own, where a relative
    /// path would name something else (`./.omni/data` was looked up inside the job).
    pub fn resolve_paths(&mut self, cwd: &Path) {
        let absolute = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = cwd.join(path.strip_prefix(".").unwrap_or(path));
            }
        };
        absolute(&mut self.plugin_dir);
        absolute(&mut self.template_dir);
        absolute(&mut self.data_dir);
        if let Some(file) = &mut self.auth.users_file {
            absolute(file);
        }
        for key in &mut self.webhooks.secret_keys {
            if let Some(file) = &mut key.file {
                absolute(file);
            }
        }
        // A directory store's relative path is under the data directory, not here.
        if let omni_artifacts::ArtifactsConfig::S3(s3) = &mut self.artifacts
            && let Some(file) = &mut s3.credentials_file
        {
            absolute(file);
        }
        for engine in &mut self.engines {
            match engine {
                EngineConfig::Local(local) => {
                    if let Some(root) = &mut local.root {
                        absolute(root);
                    }
                }
                EngineConfig::Kubernetes(kube) => {
                    if let Some(file) = &mut kube.kubeconfig {
                        absolute(file);
                    }
                }
            }
        }
    }

    /// Reads `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid configuration in {}", path.display()))?;
        if config.engines.is_empty() {
            anyhow::bail!(
                "invalid configuration in {}: `engines` is empty; name at least one engine (or leave the key out for one local engine)",
                path.display()
            );
        }
        Ok(config)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_resolved_against_the_start_directory_and_absolute_ones_kept() {
        let mut config: Config = toml::from_str(
            "data_dir = \"/srv/omni\"\n[auth]\nusers_file = \"users.toml\"\n[[engines]]\nkind = \"local\"\nroot = \"jobs\"\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/start"));
        assert_eq!(config.plugin_dir, PathBuf::from("/start/.omni/plugins"));
        assert_eq!(config.template_dir, PathBuf::from("/start/templates"));
        assert_eq!(config.data_dir, PathBuf::from("/srv/omni"));
        assert_eq!(
            config.auth.users_file,
            Some(PathBuf::from("/start/users.toml"))
        );
        let EngineConfig::Local(local) = &config.engines[0] else {
            panic!("{:?}", config.engines);
        };
        assert_eq!(local.root, Some(PathBuf::from("/start/jobs")));
    }

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
        assert!(config.store.cassandra.is_none());
        let err =
            toml::from_str::<Config>("[store.cassandra]\ncontact_point = [\"x:1\"]\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `contact_point`"),
            "{err}"
        );
    }

    /// The README's configuration reference is a file this parser takes, key for key.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("```toml\nlisten")
            .expect("the README's configuration block");
        let block = &readme[start + "```toml\n".len()..];
        let block = &block[..block.find("```").unwrap()];
        let config: Config = toml::from_str(block).unwrap();
        let cassandra = config.store.cassandra.unwrap();
        assert_eq!(cassandra.contact_points.len(), 2);
        assert_eq!(config.store.embedded.sweep_interval.as_secs(), 600);
        assert_eq!(config.store.embedded.event_ttl.as_secs(), 7 * 24 * 3600);
        assert_eq!(cassandra.event_settle.as_secs(), 2);
        assert_eq!(config.events.ttl.map(|t| t.as_secs()), Some(7 * 24 * 3600));
        assert_eq!(config.events.stream().keep_alive.as_secs(), 15);
        assert_eq!(config.webhooks.max_backoff.as_secs(), 300);
        assert_eq!(config.webhooks.window, 512);
        let err = toml::from_str::<Config>("[webhooks]\nmax_backof = \"1s\"\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_backof`"),
            "{err}"
        );
        let err = toml::from_str::<Config>("[events]\nttl = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
        // The example's user and token are real: the server takes them.
        assert_eq!(config.auth.users.len(), 1);
        let auth = omni_api::AuthConfig {
            users: config.auth.users.clone(),
            tokens: config.auth.tokens.clone(),
            throttle: Default::default(),
        };
        assert!(omni_api::Authenticator::new(&auth).unwrap().is_enabled());
        let err = toml::from_str::<Config>("[[auth.users]]\nname = \"a\"\nrole = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `role`"), "{err}");
    }

    /// deploy/kubernetes's configurations and the example's users are what the server takes.
    #[test]
    fn the_deploy_configurations_parse() {
        let deploy =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
        for file in ["base/omni.toml", "example/omni.toml"] {
            let config = Config::load(Some(&deploy.join(file))).unwrap();
            assert!(!config.listen.ip().is_loopback(), "{file}");
            assert!(config.store.cassandra.is_some(), "{file}");
            assert!(
                matches!(&config.engines[..], [EngineConfig::Kubernetes(_)]),
                "{file}"
            );
        }
        let users = AuthSection {
            users_file: Some(deploy.join("example/users.toml")),
            ..AuthSection::default()
        };
        let auth = omni_api::Authenticator::new(&users.resolve().unwrap()).unwrap();
        assert!(auth.is_enabled());
        // The example's webhook key is one the server takes (as the Secret mounts it).
        let key = omni_webhooks::SecretKeyConfig {
            key: None,
            file: Some(deploy.join("example/webhook-key")),
        };
        omni_webhooks::Keyring::load(&[key]).unwrap();
    }

    #[test]
    fn engines_default_to_one_local_engine_and_are_checked_by_kind() {
        let config = Config::default();
        assert!(
            matches!(&config.engines[..], [EngineConfig::Local(local)] if local.name == "local" && local.arches == [std::env::consts::ARCH])
        );
        let config: Config =
            toml::from_str("[[engines]]\nkind = \"local\"\nname = \"big\"\nmax_running = 8\n")
                .unwrap();
        assert!(
            matches!(&config.engines[..], [EngineConfig::Local(local)] if local.name == "big" && local.max_running == 8)
        );
        let err = toml::from_str::<Config>("[[engines]]\nkind = \"lokal\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown variant `lokal`"), "{err}");
        let err = toml::from_str::<Config>("[[engines]]\nkind = \"local\"\nmax_runing = 1\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_runing`"),
            "{err}"
        );
        let err = toml::from_str::<Config>("[scheduler]\nlease = \"1s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `lease`"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "engines = []\n").unwrap();
        let err = Config::load(Some(file.path())).unwrap_err();
        assert!(format!("{err:#}").contains("`engines` is empty"), "{err:#}");
    }
}
