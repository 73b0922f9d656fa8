//! `omni submit` and `omni jobs ...`: submitting a job (and waiting for it), listing, showing,
//! cancelling and purging jobs, rendering one again and showing its provenance.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::logs::follow;
use super::{JobInput, print_json, print_table, state, success, table, text};
use crate::client::{Client, EXIT_FAILED, Failure, Outcome, Output, Remote};

/// `omni submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task type (a loaded plugin's task, e.g. srpm).
    pub task: String,
    #[command(flatten)]
    pub input: JobInput,
    /// The service asking.
    #[arg(long, default_value = "cli")]
    pub service: String,
    /// A key that makes retrying this submission safe (the same job comes back).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub pin: super::plugins::PinArgs,
    /// A source file to send to the server's uploads and name in `params.sources`, as
    /// `{"upload": <sha256>, "mode": <its mode>}` (tasks whose params take `sources`: srpm,
    /// rpm); any size. `PATH`, or `NAME=PATH` for another name. Repeatable.
    #[arg(long = "source", value_name = "[NAME=]PATH")]
    pub sources: Vec<super::uploads::SourceArg>,
    /// Wait for the job to end; the exit code says how it ended.
    #[arg(long)]
    pub wait: bool,
    /// Print the job's log as it runs, until it ends (implies --wait).
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// `omni jobs`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job.
    Get(JobArgs),
    /// Cancel a job that has not ended.
    Cancel(JobArgs),
    /// Delete a job's record and its logs (cancelling it first).
    Purge(JobArgs),
    /// Render a job's objects again by the plugin version and templates it records: byte for
    /// byte what its engine was given (YAML; -o json for the API's answer).
    Render(JobArgs),
    /// A job's provenance: an in-toto statement with a SLSA provenance predicate (JSON).
    Provenance(JobArgs),
}

/// `omni jobs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this service's jobs.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this task's jobs.
    #[arg(long)]
    pub task: Option<String>,
    /// Only this domain's jobs.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only jobs in this state.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub remote: Remote,
}

/// A command about one job.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id.
    pub id: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// `omni submit`.
pub async fn submit(args: SubmitArgs) -> Outcome {
    let client = Client::new(&args.remote.server)?;
    let mut body = args.input.body()?;
    if !args.sources.is_empty() {
        let domain = args.input.domain.as_deref().unwrap_or("default");
        super::uploads::add_sources(&client, domain, &args.sources, &mut body["params"]).await?;
    }
    body["service"] = json!(args.service);
    body["task"] = json!(args.task);
    if let Some(pin) = args.pin.body() {
        body["plugin"] = pin;
    }
    let mut request = client.request(Method::POST, "/v1/jobs").json(&body);
    if let Some(key) = &args.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let job = client.json(request).await?;
    let id = text(&job["id"]);
    if !(args.wait || args.follow) {
        match args.remote.output {
            Output::Json => print_json(&job),
            Output::Table => println!("{id}"),
        }
        return success();
    }
    if args.remote.output == Output::Table {
        eprintln!("submitted {id}");
    }
    if args.follow {
        follow(&client, &id, None, args.remote.output).await?;
    }
    let job = wait(&client, &id).await?;
    match args.remote.output {
        Output::Json => print_json(&job),
        Output::Table => {
            // Why it failed or was cancelled (a job that succeeded says nothing more).
            let message = job["message"]
                .as_str()
                .filter(|_| job["state"] != "succeeded")
                .map(|m| format!(": {m}"));
            println!(
                "{id} {}{}",
                state(&job["state"]),
                message.unwrap_or_default()
            );
        }
    }
    Ok(exit_for(&job))
}

/// 0 when the job succeeded, 1 when it failed or was cancelled.
fn exit_for(job: &Value) -> ExitCode {
    if job["state"] == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// Polls the job until it ends, with a line on a terminal's stderr that shows its state and
/// the current step.
async fn wait(client: &Client, id: &str) -> Result<Value, Failure> {
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut delay = Duration::from_millis(200);
    loop {
        let job = client.get(&format!("/v1/jobs/{id}")).await?;
        let state = job["state"].as_str().unwrap_or("?");
        if let Some(bar) = &spinner {
            let step = job["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["state"] == "running")
                .map(|s| format!(", step {}", text(&s["name"])));
            bar.set_message(format!("{id}: {state}{}", step.unwrap_or_default()));
        }
        if ["succeeded", "failed", "cancelled"].contains(&state) {
            if let Some(bar) = spinner {
                bar.finish_and_clear();
            }
            return Ok(job);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// `omni jobs ...`.
pub async fn jobs(command: JobsCommand) -> Outcome {
    match command {
        JobsCommand::List(args) => list(args).await,
        JobsCommand::Get(args) => {
            let client = Client::new(&args.remote.server)?;
            let job = client.get(&format!("/v1/jobs/{}", args.id)).await?;
            match args.remote.output {
                Output::Json => print_json(&job),
                Output::Table => show_job(&job),
            }
            success()
        }
        JobsCommand::Cancel(args) => {
            let client = Client::new(&args.remote.server)?;
            let job = client
                .json(client.request(Method::DELETE, &format!("/v1/jobs/{}", args.id)))
                .await?;
            match args.remote.output {
                Output::Json => print_json(&job),
                Output::Table => println!("{} {}", text(&job["id"]), state(&job["state"])),
            }
            success()
        }
        JobsCommand::Render(args) => {
            let client = Client::new(&args.remote.server)?;
            let rendered = client.get(&format!("/v1/jobs/{}/render", args.id)).await?;
            super::print_rendered(&rendered, args.remote.output)?;
            success()
        }
        JobsCommand::Provenance(args) => {
            let client = Client::new(&args.remote.server)?;
            print_json(
                &client
                    .get(&format!("/v1/jobs/{}/provenance", args.id))
                    .await?,
            );
            success()
        }
        JobsCommand::Purge(args) => {
            let client = Client::new(&args.remote.server)?;
            client
                .send(
                    client
                        .request(Method::DELETE, &format!("/v1/jobs/{}", args.id))
                        .query(&[("purge", "true")]),
                )
                .await?;
            if args.remote.output == Output::Json {
                print_json(&json!({"id": args.id, "purged": true}));
            }
            success()
        }
    }
}

async fn list(args: ListArgs) -> Outcome {
    let client = Client::new(&args.remote.server)?;
    let mut query = vec![("limit", args.limit.to_string())];
    for (name, value) in [
        ("service", &args.service),
        ("task", &args.task),
        ("domain", &args.domain),
        ("state", &args.state),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let page = client
        .json(client.request(Method::GET, "/v1/jobs").query(&query))
        .await?;
    if args.remote.output == Output::Json {
        print_json(&page);
        return success();
    }
    let mut rows = table(&[
        "ID", "TASK", "DOMAIN", "ARCH", "STATE", "CREATED", "MESSAGE",
    ]);
    for job in page["items"].as_array().into_iter().flatten() {
        let mut message = text(&job["message"]);
        if message.chars().count() > 60 {
            message = message.chars().take(59).collect::<String>() + "…";
        }
        rows.add_row(vec![
            text(&job["id"]),
            text(&job["task"]),
            text(&job["domain"]),
            text(&job["arch"]),
            state(&job["state"]),
            text(&job["created_at"]),
            message,
        ]);
    }
    print_table(&rows);
    success()
}

fn show_job(job: &Value) {
    let mut rows = table(&["FIELD", "VALUE"]);
    for field in [
        "id",
        "service",
        "task",
        "domain",
        "arch",
        "engine",
        "message",
        "created_at",
        "started_at",
        "finished_at",
    ] {
        rows.add_row(vec![field.to_owned(), text(&job[field])]);
    }
    rows.add_row(vec!["state".to_owned(), state(&job["state"])]);
    let plugin = &job["plugin"];
    rows.add_row(vec![
        "plugin".to_owned(),
        format!("{} {}", text(&plugin["task"]), text(&plugin["version"])),
    ]);
    for step in job["steps"].as_array().into_iter().flatten() {
        rows.add_row(vec![
            format!("step {}", text(&step["name"])),
            state(&step["state"]),
        ]);
    }
    print_table(&rows);
}
