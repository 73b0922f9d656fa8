//! The server as a function: [`serve`] runs everything `omni serve` runs — the plugin registry
//! and its watcher, the store, the engines, the scheduler, webhook delivery and the HTTP API —
//! on a listener it is given, until a shutdown future completes. The binary calls it with the
//! process's signals; tests that need a server but not a process call it in-process.

use std::sync::Arc;

use anyhow::Context as _;
use omni_api::AppState;
use omni_engine::Engine;
use omni_engine_kube::KubeEngine;
use omni_engine_local::LocalEngine;
use omni_jobs::JobService;
use omni_runtime::{Registry, Sandbox, SandboxConfig, Templates};
use omni_scheduler::Scheduler;
use omni_store::Store;
use omni_store_cassandra::CassandraStore;
use omni_store_embedded::EmbeddedStore;

use crate::config::{Config, EngineConfig, SelectedStore};

/// Who may call, from `config`'s `[auth]` (its users file read now).
///
/// # Errors
/// An unreadable users file, or users and tokens that are not valid.
pub fn auth(config: &Config) -> anyhow::Result<omni_api::Authenticator> {
    omni_api::Authenticator::new(&config.auth.resolve()?).context("invalid [auth] configuration")
}

/// Serves `config` on `listener` until `shutdown` completes, then stops taking requests, lets
/// the ones in flight finish, and returns. `config`'s paths must be absolute (see
/// [`Config::resolve_paths`]); its `listen` is not used (the listener is).
///
/// # Errors
/// What keeps the server from starting, with its cause: no auth on an address that is not
/// loopback, a store or engine that cannot be set up, a plugins directory that cannot be made or
/// watched; or the listener failing.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // On the heap: the server's state across its awaits is some 16 KiB, more than a caller's
    // stack should carry.
    Box::pin(run(config, listener, shutdown)).await
}

async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = auth(&config)?;
    let address = listener.local_addr()?;
    if !auth.is_enabled() && !address.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {address}: no users or tokens are configured ([auth]), and Omni serves without authentication only on a loopback address"
        );
    }
    let metrics = omni_api::metrics::Metrics::install().context("cannot install the metrics")?;
    std::fs::create_dir_all(&config.plugin_dir).with_context(|| {
        format!(
            "cannot create the plugins directory {}",
            config.plugin_dir.display()
        )
    })?;
    if !config.template_dir.is_dir() {
        tracing::warn!(dir = %config.template_dir.display(), "the templates directory does not exist; plugins will find no templates");
    }
    let templates = Arc::new(Templates::new(&config.template_dir));
    let sandbox = Sandbox::new(
        SandboxConfig {
            cache_dir: Some(config.data_dir.join("cache/components")),
            limits: config.plugins.limits.clone(),
            max_instances: config.plugins.max_instances,
            quick_compile: config.plugins.quick_compile,
        },
        templates,
    )?;
    // Every version loaded is kept, so a job renders with the one that accepted it.
    let registry = Arc::new(
        Registry::new(Arc::new(sandbox), &config.plugin_dir)
            .keeping_versions_in(config.data_dir.join("plugin-versions")),
    );
    let store: Arc<dyn Store> = Arc::new(omni_store::Timed::new(open_store(&config).await?));
    store
        .ping()
        .await
        .with_context(|| format!("the {} store does not answer", store.kind()))?;
    let _watch = registry
        .watch()
        .context("cannot watch the plugins directory")?;
    registry.rescan().await;
    let ready: Vec<String> = registry.list().into_iter().filter_map(|s| s.task).collect();
    tracing::info!(dir = %config.plugin_dir.display(), tasks = ?ready, "plugins loaded");
    tokio::spawn(rescan_on_sighup(Arc::clone(&registry)));

    let engines = open_engines(&config).await?;
    let artifacts = config
        .artifacts
        .build(&config.data_dir)
        .context("cannot open the artifact store ([artifacts])")?;
    tracing::info!(
        kind = artifacts.kind(),
        "artifacts kept in the {} store",
        artifacts.kind()
    );
    let job_ttl = match config.store.selected()? {
        SelectedStore::Cassandra(cassandra) => cassandra.job_ttl,
        SelectedStore::Embedded(embedded) => embedded.job_ttl,
    };
    // An upload a job uses is kept as long as the job's record, unless the file says.
    let mut uploads = config.uploads;
    uploads.keep_with_jobs.get_or_insert(job_ttl);
    let jobs = JobService::new(store, Arc::clone(&registry) as _, artifacts)
        .with_log_limits(config.logs)
        .with_upload_policy(uploads);
    let scheduler = Scheduler::new(jobs.clone(), engines.clone(), config.scheduler.clone())?;
    let _scheduler = scheduler.spawn();
    // Artifacts go with their jobs: a purge deletes them, and this deletes those of jobs the
    // store's retention removed (after `job_ttl`), and the uploads no job uses.
    let _artifacts_sweep = AbortOnDrop(tokio::spawn(
        jobs.clone()
            .sweep_artifacts_every(ARTIFACTS_SWEEP_INTERVAL, job_ttl),
    ));
    // This replica's kept plugin versions: those no stored job records go (at start, then
    // hourly).
    let _prune = AbortOnDrop(tokio::spawn(
        jobs.clone().prune_plugin_versions_every(PRUNE_INTERVAL),
    ));
    let webhooks = omni_webhooks::Webhooks::new(&config.webhooks, keyring(&config)?);
    let resealed = webhooks
        .reseal(&jobs)
        .await
        .context("cannot reseal the webhooks' secrets")?;
    if resealed.resealed > 0 || resealed.failed > 0 {
        tracing::info!(
            key = webhooks.keyring().current_id(),
            resealed = resealed.resealed,
            failed = resealed.failed,
            "webhook secrets resealed with the current key"
        );
    }
    let deliverer =
        omni_webhooks::Deliverer::new(jobs.clone(), config.webhooks.clone(), &webhooks)?;
    let _deliverer = deliverer.spawn();

    if auth.is_enabled() {
        tracing::info!("auth on: every /v1 request needs a user's password or a token");
    } else {
        tracing::warn!("auth off: no users or tokens are configured; every caller is an admin");
    }
    let streams = omni_api::Streams::new(config.http.max_streams_per_caller);
    let app = omni_api::router(AppState {
        jobs,
        registry,
        namespace: config.namespace.clone(),
        body_limit: config.body_limit_kib << 10,
        engines,
        events: config.events.stream(),
        auth: Arc::new(auth),
        metrics: Some(metrics),
        streams: streams.clone(),
        request_timeout: config.http.request_timeout,
        answer_limit: config.http.max_answer_kib << 10,
        webhooks,
    })
    // The web UI at `/` (its files under `/ui/`); every other path is the API's.
    .merge(omni_ui::routes());
    tracing::info!("omni listening on http://{}", listener.local_addr()?);
    crate::http::serve(listener, app, &config.http, shutdown, || streams.stop()).await;
    tracing::info!("omni stopped");
    Ok(())
}

/// The keys of webhook secrets: `[webhooks] secret_keys`, or without them a key made once in
/// the data directory (`webhook-secrets.key`, readable by its owner only) for the embedded
/// store, whose data is there too. Replicas sharing Cassandra must share keys: there, keys must
/// be configured.
///
/// # Errors
/// A configured key that is not one, a key file that cannot be read or made, or Cassandra
/// without keys.
pub fn keyring(config: &Config) -> anyhow::Result<omni_webhooks::Keyring> {
    if !config.webhooks.secret_keys.is_empty() {
        return Ok(omni_webhooks::Keyring::load(&config.webhooks.secret_keys)?);
    }
    match config.store.selected()? {
        SelectedStore::Cassandra(_) => anyhow::bail!(
            "[webhooks] secret_keys is required with the cassandra store: every replica seals and opens webhook secrets with the same keys (32 bytes as base64 or hex, e.g. from `head -c 32 /dev/urandom | base64`)"
        ),
        SelectedStore::Embedded(_) => Ok(omni_webhooks::Keyring::load_or_create(
            &config.data_dir.join(WEBHOOK_KEY_FILE),
        )?),
    }
}

/// The key file made in the data directory when no key is configured (embedded store).
pub const WEBHOOK_KEY_FILE: &str = "webhook-secrets.key";

/// The configured engines. One that cannot be reached now is not an error: its jobs wait, and
/// `/readyz` shows it.
async fn open_engines(config: &Config) -> anyhow::Result<Vec<Arc<dyn Engine>>> {
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    for engine in &config.engines {
        let engine: Arc<dyn Engine> = match engine {
            EngineConfig::Local(local) => {
                if local.unsandboxed {
                    tracing::warn!(
                        engine = local.name,
                        "unsandboxed = true: this engine runs every step as a plain process of the server's user, with no isolation"
                    );
                }
                Arc::new(LocalEngine::new(local, config.data_dir.join("jobs")))
            }
            EngineConfig::Kubernetes(kube) => Arc::new(
                KubeEngine::connect(kube)
                    .await
                    .with_context(|| format!("cannot set up engine {:?}", kube.name))?,
            ),
        };
        match engine.check().await {
            Ok(()) => {
                tracing::info!(engine = engine.name(), kind = engine.kind(), arches = ?engine.arches(), max_running = engine.max_running(), "engine ready");
            }
            Err(error) => {
                tracing::warn!(engine = engine.name(), %error, "engine not ready; its jobs wait");
            }
        }
        engines.push(engine);
    }
    Ok(engines)
}

/// How often the artifacts of expired jobs are looked for.
const ARTIFACTS_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often this replica prunes the plugin versions no job records.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A task stopped when the server stops.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The configured store, opened and checked.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.selected()? {
        SelectedStore::Cassandra(cassandra) => {
            let store = CassandraStore::connect(cassandra).await.with_context(|| {
                format!(
                    "cannot open the cassandra store at {}",
                    cassandra.contact_points.join(", ")
                )
            })?;
            tracing::info!(contact_points = ?cassandra.contact_points, keyspace = %cassandra.keyspace, "cassandra store open");
            Ok(Arc::new(store))
        }
        SelectedStore::Embedded(embedded) => {
            let dir = config.data_dir.join("store");
            let store = EmbeddedStore::open(&dir, embedded.clone())
                .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?;
            store.spawn_sweeper();
            tracing::info!(path = %store.path().display(), "embedded store open");
            Ok(Arc::new(store))
        }
    }
}

async fn rescan_on_sighup(registry: Arc<Registry>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: rescanning plugins");
        registry.rescan().await;
    }
}
