//! `omni plugins ...`: the loaded plugins, one plugin's schema, dry-run renders, reloads.

use clap::{Args, Subcommand};
use reqwest::Method;

use super::{JobInput, print_json, print_table, success, table, text};
use crate::client::{Client, Outcome, Output, Remote};

/// `omni plugins`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the loaded plugins.
    List(RemoteArgs),
    /// Show one plugin, with its params' JSON Schema.
    Get(TaskArgs),
    /// Render a job's manifests on the server without running anything (a dry run): YAML, or
    /// with -o json the API's answer.
    Render(RenderArgs),
    /// Rescan the plugins directory now.
    Reload(RemoteArgs),
    /// List the versions of a task's plugin the server keeps, the most recent first.
    Versions(TaskArgs),
    /// Make a kept version of a task's plugin the one serving it (new jobs use it; jobs made
    /// before keep theirs).
    Rollback(RollbackArgs),
}

/// Which version of a task's plugin: by the version it calls itself, or by its digest.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct PinArgs {
    /// The plugin version to use (`omni plugins versions TASK` lists those kept).
    #[arg(long, value_name = "VERSION")]
    pub plugin_version: Option<String>,
    /// The SHA-256 of the plugin component to use.
    #[arg(long, value_name = "SHA256")]
    pub plugin_digest: Option<String>,
}

impl PinArgs {
    /// The API's `plugin` object, when a version is named.
    pub fn body(&self) -> Option<serde_json::Value> {
        pin(
            self.plugin_version.as_deref(),
            self.plugin_digest.as_deref(),
        )
    }
}

/// The API's `plugin` object for a version or a digest.
fn pin(version: Option<&str>, digest: Option<&str>) -> Option<serde_json::Value> {
    match (version, digest) {
        (Some(version), _) => Some(serde_json::json!({"version": version})),
        (None, Some(digest)) => Some(serde_json::json!({"digest": digest})),
        (None, None) => None,
    }
}

/// `omni plugins rollback`: one of the two is required.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The task.
    pub task: String,
    /// The kept version to serve (`omni plugins versions TASK` lists them).
    #[arg(
        long,
        value_name = "VERSION",
        required_unless_present = "plugin_digest"
    )]
    pub plugin_version: Option<String>,
    /// The SHA-256 of the kept component to serve.
    #[arg(long, value_name = "SHA256", conflicts_with = "plugin_version")]
    pub plugin_digest: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// `omni plugins render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The task.
    pub task: String,
    #[command(flatten)]
    pub input: JobInput,
    #[command(flatten)]
    pub remote: Remote,
}

/// A command with nothing but the server.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    pub remote: Remote,
}

/// A command about one task.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task.
    pub task: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// `omni plugins ...`.
pub async fn plugins(command: PluginsCommand) -> Outcome {
    match command {
        PluginsCommand::List(args) => {
            let client = Client::new(&args.remote.server)?;
            let plugins = client.get("/v1/plugins").await?;
            if args.remote.output == Output::Json {
                print_json(&plugins);
                return success();
            }
            let mut rows = table(&["TASK", "VERSION", "STATUS", "ARCHES", "DESCRIPTION"]);
            for plugin in plugins.as_array().into_iter().flatten() {
                let arches: Vec<String> = plugin["arches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                let mut status = text(&plugin["status"]);
                if let Some(error) = plugin["error"].as_str() {
                    status = format!("{status}: {error}");
                }
                rows.add_row(vec![
                    text(&plugin["task"]),
                    text(&plugin["version"]),
                    status,
                    arches.join(","),
                    text(&plugin["description"]),
                ]);
            }
            print_table(&rows);
            success()
        }
        PluginsCommand::Get(args) => {
            let client = Client::new(&args.remote.server)?;
            let plugin = client.get(&format!("/v1/plugins/{}", args.task)).await?;
            print_json(&plugin);
            success()
        }
        PluginsCommand::Render(args) => {
            let client = Client::new(&args.remote.server)?;
            let request = client
                .request(Method::POST, &format!("/v1/plugins/{}/render", args.task))
                .json(&args.input.body()?);
            let rendered = client.json(request).await?;
            super::print_rendered(&rendered, args.remote.output)?;
            success()
        }
        PluginsCommand::Versions(args) => {
            let client = Client::new(&args.remote.server)?;
            let path = format!("/v1/plugins/{}/versions", args.task);
            let versions = client.get(&path).await?;
            if args.remote.output == Output::Json {
                print_json(&versions);
                return success();
            }
            let mut rows = table(&["VERSION", "DIGEST", "KEPT", "SERVING"]);
            for version in versions.as_array().into_iter().flatten() {
                rows.add_row(vec![
                    text(&version["version"]),
                    text(&version["digest"]),
                    text(&version["kept_at"]),
                    if version["serving"] == true {
                        "yes"
                    } else {
                        ""
                    }
                    .to_owned(),
                ]);
            }
            print_table(&rows);
            success()
        }
        PluginsCommand::Rollback(args) => {
            let pin = pin(
                args.plugin_version.as_deref(),
                args.plugin_digest.as_deref(),
            );
            let client = Client::new(&args.remote.server)?;
            let path = format!("/v1/plugins/{}/rollback", args.task);
            let serving = client
                .json(client.request(Method::POST, &path).json(&pin))
                .await?;
            match args.remote.output {
                Output::Json => print_json(&serving),
                Output::Table => println!(
                    "{} {} serves {}",
                    text(&serving["task"]),
                    text(&serving["version"]),
                    text(&serving["digest"])
                ),
            }
            success()
        }
        PluginsCommand::Reload(args) => {
            let client = Client::new(&args.remote.server)?;
            let answer = client
                .json(client.request(Method::POST, "/v1/plugins/reload"))
                .await?;
            if args.remote.output == Output::Json || !answer.is_null() {
                print_json(&answer);
            }
            success()
        }
    }
}
