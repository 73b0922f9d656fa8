//! `omni serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use omni::config::{Config, EngineConfig};

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
    // And the clusters' credentials: a kubeconfig kept under /etc or /opt would otherwise be
    // readable by every build where its mode lets anyone read it.
    own.extend(config.engines.iter().filter_map(|engine| match engine {
        EngineConfig::Kubernetes(kube) => kube.kubeconfig.clone(),
        EngineConfig::Local(_) => None,
    }));
    own.extend(
        std::env::var_os("KUBECONFIG")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|path| cwd.join(path)),
    );
    for engine in &mut config.engines {
        if let EngineConfig::Local(local) = engine {
            local.sandbox.hide.extend(own.iter().cloned());
        }
    }
    // Checked before anything starts, the address before it is bound (serve checks again).
    let auth = omni::auth(&config)?;
    if !auth.is_enabled() && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: no users or tokens are configured ([auth]), and Omni serves without authentication only on a loopback address",
            config.listen
        );
    }
    crate::logging::init(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        omni::serve(config, listener, shutdown()).await
    });
    // The background work (the scheduler, deliveries, log readers) stops with the runtime; a
    // blocking read in flight is not waited for beyond this.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served?;
    Ok(ExitCode::SUCCESS)
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
