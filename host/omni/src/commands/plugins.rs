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
            let client = Client::new(&args.remote)?;
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
            let client = Client::new(&args.remote)?;
            let plugin = client.get(&format!("/v1/plugins/{}", args.task)).await?;
            print_json(&plugin);
            success()
        }
        PluginsCommand::Render(args) => {
            let client = Client::new(&args.remote)?;
            let request = client
                .request(Method::POST, &format!("/v1/plugins/{}/render", args.task))
                .json(&args.input.body()?);
            let rendered = client.json(request).await?;
            match args.remote.output {
                Output::Json => print_json(&rendered),
                Output::Table => {
                    let objects = rendered["manifests"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| &m["body"]);
                    crate::render::write_yaml(&mut std::io::stdout().lock(), objects)?;
                }
            }
            success()
        }
        PluginsCommand::Reload(args) => {
            let client = Client::new(&args.remote)?;
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
