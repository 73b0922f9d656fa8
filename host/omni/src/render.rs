//! `omni plugin render FILE.wasm --params p.json`: one plugin call, no server, like `kwctl run`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use omni_runtime::{JobContext, Plugin, PluginError, Sandbox, SandboxConfig, Templates};

use crate::EXIT_USAGE;

/// Flags of `omni plugin render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The plugin component.
    file: PathBuf,
    /// The job's params: a JSON file, or `-` for standard input.
    #[arg(long)]
    params: PathBuf,
    /// The templates root (one subdirectory per task).
    #[arg(long, default_value = "./templates", env = "OMNI_TEMPLATE_DIR")]
    template_dir: PathBuf,
    /// API arch of the job.
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Tenant domain of the job.
    #[arg(long, default_value = "default")]
    domain: String,
    /// Kubernetes namespace of the objects.
    #[arg(long, default_value = "omni-jobs")]
    namespace: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Yaml)]
    output: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Multi-document YAML, ready for `kubectl apply -f -`.
    Yaml,
    /// The API's render answer.
    Json,
}

pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let params = if args.params.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read params from standard input")?
    } else {
        std::fs::read_to_string(&args.params)
            .with_context(|| format!("cannot read {}", args.params.display()))?
    };
    let config = SandboxConfig {
        max_instances: 0,
        ..SandboxConfig::default()
    };
    let sandbox = Arc::new(Sandbox::new(
        config,
        Arc::new(Templates::new(&args.template_dir)),
    )?);
    let plugin = Plugin::load_quick(&sandbox, &args.file, &bytes)?;
    let id = uuid::Uuid::now_v1(&[0x01, 0, 0, 0, 0, 0]).to_string();
    let job = JobContext {
        name: format!("omni-{id}"),
        job_id: id,
        service: "cli".into(),
        domain: args.domain.clone(),
        namespace: args.namespace.clone(),
        arch: args.arch.clone(),
    };
    let rendered = match plugin.serialize_blocking(&job, &params) {
        Ok(rendered) => rendered,
        Err(PluginError::InvalidParams { plugin, errors }) => {
            eprintln!("omni: plugin {plugin} rejected the params:");
            for e in errors {
                eprintln!(
                    "  {}: {}",
                    if e.path.is_empty() { "/" } else { &e.path },
                    e.message
                );
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => serde_json::to_writer_pretty(&mut out, &rendered)?,
        Format::Yaml => write_yaml(&mut out, rendered.manifests.iter().map(|m| &m.body))?,
    }
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// Objects as multi-document YAML, each after a `---` line, ready for `kubectl apply -f -`
/// (`omni plugin render` and `omni plugins render`).
pub fn write_yaml<'a>(
    out: &mut impl std::io::Write,
    objects: impl IntoIterator<Item = &'a serde_json::Value>,
) -> anyhow::Result<()> {
    for object in objects {
        writeln!(out, "---")?;
        serde_norway::to_writer(&mut *out, object)?;
    }
    Ok(())
}
