//! `omni serve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
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

/// Flags of `omni serve`; each overrides the configuration file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "OMNI_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; env: OMNI_LISTEN].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Directory of plugin components (*.wasm), watched for changes [default: ./.omni/plugins;
    /// env: OMNI_PLUGIN_DIR].
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Directory of the tasks' templates, one subdirectory per task [default: ./templates; env:
    /// OMNI_TEMPLATE_DIR].
    #[arg(long)]
    template_dir: Option<PathBuf>,
    /// Directory of Omni's own data (the embedded store, the compile cache) [default:
    /// ./.omni/data; env: OMNI_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How log lines are written to stderr (`RUST_LOG` filters them).
    #[arg(long, env = "OMNI_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::logging::LogFormat,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref())?;
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.plugin_dir {
        config.plugin_dir = v;
    }
    if let Some(v) = args.template_dir {
        config.template_dir = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(ttl) = config.events.ttl {
        config.store.set_event_ttl(ttl);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    config.resolve_paths(&cwd);
    // A job's sandbox must not see the server's own files where they lie below the host paths
    // it shows (a configuration under /etc, a data directory under /opt).
    let mut own = vec![
        config.data_dir.clone(),
        config.plugin_dir.clone(),
        config.template_dir.clone(),
    ];
    own.extend(args.config.as_ref().map(|c| cwd.join(c)));
    own.extend(config.auth.users_file.clone());
    for engine in &mut config.engines {
        if let EngineConfig::Local(local) = engine {
            local.sandbox.hide.extend(own.iter().cloned());
        }
    }
    let auth = omni_api::Authenticator::new(&config.auth.resolve()?)
        .map_err(|e| anyhow::anyhow!("invalid [auth] configuration: {e}"))?;
    crate::logging::init(args.log_format);
    if !auth.is_enabled() && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: no users or tokens are configured ([auth]), and Omni serves without authentication only on a loopback address",
            config.listen
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config, auth))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, auth: omni_api::Authenticator) -> anyhow::Result<()> {
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
    let registry = Arc::new(Registry::new(Arc::new(sandbox), &config.plugin_dir));
    let store: Arc<dyn Store> = Arc::new(omni_store::Timed::new(open_store(&config).await?));
    store
        .ping()
        .await
        .with_context(|| format!("the {} store does not answer", store.kind()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let _watch = registry
        .watch()
        .context("cannot watch the plugins directory")?;
    registry.rescan().await;
    let ready: Vec<String> = registry.list().into_iter().filter_map(|s| s.task).collect();
    tracing::info!(dir = %config.plugin_dir.display(), tasks = ?ready, "plugins loaded");
    tokio::spawn(rescan_on_sighup(Arc::clone(&registry)));

    let engines = open_engines(&config).await?;
    let jobs = JobService::new(store, Arc::clone(&registry) as _).with_log_limits(config.logs);
    let scheduler = Scheduler::new(jobs.clone(), engines.clone(), config.scheduler.clone())?;
    let _scheduler = scheduler.spawn();
    let deliverer = omni_webhooks::Deliverer::new(jobs.clone(), config.webhooks.clone())?;
    let _deliverer = deliverer.spawn();

    if auth.is_enabled() {
        tracing::info!("auth on: every /v1 request needs a user's password or a token");
    } else {
        tracing::warn!("auth off: no users or tokens are configured; every caller is an admin");
    }
    let app = omni_api::router(AppState {
        jobs,
        registry,
        namespace: config.namespace.clone(),
        body_limit: config.body_limit_kib << 10,
        engines,
        events: config.events.stream(),
        auth: Arc::new(auth),
        metrics: Some(metrics),
    });
    tracing::info!("omni listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    tracing::info!("omni stopped");
    Ok(())
}

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

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
    }
    tracing::info!("shutting down");
}
