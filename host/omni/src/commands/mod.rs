//! The commands that talk to a server: `omni submit`, `omni jobs ...`, `omni logs`,
//! `omni artifacts ...`, `omni events`, `omni plugins ...`. Human output is aligned tables (comfy-table) and plain log
//! lines, with the job's state coloured on a terminal; `--output json` prints what the API
//! answered (one object a line where things stream: log lines, events).
//!
//! # Layout
//! - this file: what the commands share: a job's params ([`JobInput`]), tables, states.
//! - `jobs`: `omni submit` and `omni jobs ...`.
//! - `logs`: `omni logs`, and following a job's log (`omni submit -f` too).
//! - `artifacts`: `omni artifacts list` and `get`.
//! - `events`: `omni events`.
//! - `plugins`: `omni plugins ...`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::{Map, Value, json};

use crate::client::{Failure, Outcome};

mod artifacts;
mod events;
mod jobs;
mod logs;
mod plugins;
mod uploads;

pub use artifacts::{ArtifactsCommand, artifacts};
pub use events::{EventsArgs, events};
pub use jobs::{JobsCommand, SubmitArgs, jobs, submit};
pub use logs::{LogsArgs, logs};
pub use plugins::{PluginsCommand, plugins};

/// A job's params and where it runs, as `omni submit` and `omni plugins render` take them.
#[derive(Debug, Args)]
pub struct JobInput {
    /// A parameter, `key=value`; the value is read as JSON when it is JSON (`lines=10`,
    /// `packages=["bash"]`), else as a string. Repeatable; overrides --params-file.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// A JSON object of parameters (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// The CPU architecture to build for [server's default: x86_64].
    #[arg(long)]
    pub arch: Option<String>,
    /// The tenant [server's default: default].
    #[arg(long)]
    pub domain: Option<String>,
}

fn success() -> Outcome {
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// An API's Rendered answer: its objects as YAML documents, or the answer as JSON.
fn print_rendered(rendered: &Value, output: crate::client::Output) -> Result<(), Failure> {
    match output {
        crate::client::Output::Json => print_json(rendered),
        crate::client::Output::Table => {
            let objects = rendered["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| &m["body"]);
            crate::render::write_yaml(&mut std::io::stdout().lock(), objects)?;
        }
    }
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// A table without trailing spaces.
fn print_table(table: &Table) {
    println!("{}", table.trim_fmt());
}

/// A job's state, coloured when stdout is a terminal.
fn state(value: &Value) -> String {
    let text = value.as_str().unwrap_or("?");
    if !std::io::stdout().is_terminal() {
        return text.to_owned();
    }
    let colour = match text {
        "succeeded" => AnsiColor::Green,
        "failed" => AnsiColor::Red,
        "cancelled" => AnsiColor::Yellow,
        "running" => AnsiColor::Cyan,
        _ => return text.to_owned(),
    };
    let style = Style::new().fg_color(Some(colour.into()));
    format!("{style}{text}{style:#}")
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl JobInput {
    /// The params: the file's object, then each `--param` over it.
    fn params(&self) -> Result<Value, Failure> {
        let mut params = match &self.params_file {
            None => Map::new(),
            Some(path) => {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(path)
                }
                .map_err(|e| usage(&format!("cannot read {}: {e}", path.display())))?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(map)) => map,
                    Ok(_) => {
                        return Err(usage(&format!("{} is not a JSON object", path.display())));
                    }
                    Err(e) => return Err(usage(&format!("{} is not JSON: {e}", path.display()))),
                }
            }
        };
        for param in &self.params {
            let Some((key, value)) = param.split_once('=') else {
                return Err(usage(&format!("--param {param:?} is not KEY=VALUE")));
            };
            if key.is_empty() {
                return Err(usage(&format!("--param {param:?} has no key")));
            }
            let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
            params.insert(key.to_owned(), value);
        }
        Ok(Value::Object(params))
    }

    /// The body of a submission or a render: `params`, and `arch` and `domain` when given.
    fn body(&self) -> Result<Value, Failure> {
        let mut body = json!({"params": self.params()?});
        if let Some(arch) = &self.arch {
            body["arch"] = json!(arch);
        }
        if let Some(domain) = &self.domain {
            body["domain"] = json!(domain);
        }
        Ok(body)
    }
}

/// A mistake in the command line itself, found after clap: exit code 2.
fn usage(message: &str) -> Failure {
    Failure::Problem {
        status: reqwest::StatusCode::BAD_REQUEST,
        body: json!({"title": "bad command line", "detail": message}),
    }
}
