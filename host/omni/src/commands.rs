//! The commands that talk to a server: `omni submit`, `omni jobs ...`, `omni logs`,
//! `omni events`, `omni plugins ...`. Human output is aligned tables (comfy-table) and plain log
//! lines, with the job's state coloured on a terminal; `--output json` prints what the API
//! answered (one object a line where things stream: log lines, events).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Client, EXIT_FAILED, Failure, Outcome, Output, Remote};

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

/// `omni logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The job's id.
    pub id: String,
    /// Keep printing lines as they come, until the job ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this step's lines.
    #[arg(long)]
    pub step: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// `omni events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// After the stored events, keep printing events as they happen (until interrupted).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this job's events.
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Only this domain's events.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only this service's events.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this task's events.
    #[arg(long)]
    pub task: Option<String>,
    /// Only the events after this one (an event's id, or a page's `next`).
    #[arg(long, value_name = "ID")]
    pub after: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

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

fn success() -> Outcome {
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
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

/// `omni submit`.
pub async fn submit(args: SubmitArgs) -> Outcome {
    let client = Client::new(&args.remote)?;
    let mut body = args.input.body()?;
    body["service"] = json!(args.service);
    body["task"] = json!(args.task);
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

/// Prints the job's log as server-sent events come, until `end`; resumes after a dropped
/// connection (or a `lagged` event) from the last line printed.
async fn follow(
    client: &Client,
    id: &str,
    step: Option<&str>,
    output: Output,
) -> Result<(), Failure> {
    let mut after: Option<String> = None;
    loop {
        let mut query = Vec::new();
        if let Some(step) = step {
            query.push(("step", step.to_owned()));
        }
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let request = client
            .request(Method::GET, &format!("/v1/jobs/{id}/logs"))
            .query(&query);
        let mut events = std::pin::pin!(client.events(request).await?);
        while let Some(event) = events.next().await {
            match event.event.as_str() {
                "line" => {
                    let line: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    match output {
                        Output::Json => println!("{line}"),
                        Output::Table => println!("{}", text(&line["line"])),
                    }
                    after = Some(event.id);
                }
                "end" => return Ok(()),
                "lagged" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    if let Some(resume) = data["after"].as_str() {
                        after = Some(resume.to_owned());
                    }
                    break;
                }
                "error" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    return Err(Failure::Other(anyhow::anyhow!(
                        "the server stopped the log: {}",
                        text(&data["detail"])
                    )));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `omni logs`.
pub async fn logs(args: LogsArgs) -> Outcome {
    let client = Client::new(&args.remote)?;
    if args.follow {
        follow(&client, &args.id, args.step.as_deref(), args.remote.output).await?;
        return success();
    }
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "10000".to_owned())];
        if let Some(step) = &args.step {
            query.push(("step", step.clone()));
        }
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let page = client
            .json(
                client
                    .request(Method::GET, &format!("/v1/jobs/{}/logs", args.id))
                    .query(&query),
            )
            .await?;
        for line in page["items"].as_array().into_iter().flatten() {
            match args.remote.output {
                Output::Json => println!("{line}"),
                Output::Table => println!("{}", text(&line["line"])),
            }
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return success(),
        }
    }
}

/// `omni jobs ...`.
pub async fn jobs(command: JobsCommand) -> Outcome {
    match command {
        JobsCommand::List(args) => list(args).await,
        JobsCommand::Get(args) => {
            let client = Client::new(&args.remote)?;
            let job = client.get(&format!("/v1/jobs/{}", args.id)).await?;
            match args.remote.output {
                Output::Json => print_json(&job),
                Output::Table => show_job(&job),
            }
            success()
        }
        JobsCommand::Cancel(args) => {
            let client = Client::new(&args.remote)?;
            let job = client
                .json(client.request(Method::DELETE, &format!("/v1/jobs/{}", args.id)))
                .await?;
            match args.remote.output {
                Output::Json => print_json(&job),
                Output::Table => println!("{} {}", text(&job["id"]), state(&job["state"])),
            }
            success()
        }
        JobsCommand::Purge(args) => {
            let client = Client::new(&args.remote)?;
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
    let client = Client::new(&args.remote)?;
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

/// Events read at once from the stored stream (the API's largest page).
const EVENT_PAGE: usize = 1000;

/// `omni events`: the stored events, page by page (`follow=false`), then with `-f` the live
/// stream from where the pages ended, reconnecting from the last event seen. The API filters by
/// domain, service and task; `--job` is filtered here (the stream has no job filter).
pub async fn events(args: EventsArgs) -> Outcome {
    let client = Client::new(&args.remote)?;
    let mut filters = Vec::new();
    for (name, value) in [
        ("domain", &args.domain),
        ("service", &args.service),
        ("task", &args.task),
    ] {
        if let Some(value) = value {
            filters.push((name, value.clone()));
        }
    }
    let mut rows = EventRows::new(args.remote.output, args.job.clone());
    let mut after = args.after.clone();
    loop {
        let mut query = filters.clone();
        query.push(("follow", "false".to_owned()));
        query.push(("limit", EVENT_PAGE.to_string()));
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let page = client
            .json(client.request(Method::GET, "/v1/events").query(&query))
            .await?;
        let items = page["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        rows.add(items);
        after = page["next"].as_str().map(str::to_owned).or(after);
        if items.len() < EVENT_PAGE {
            break;
        }
    }
    rows.flush();
    if !args.follow {
        return success();
    }
    loop {
        let mut query = filters.clone();
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let request = client.request(Method::GET, "/v1/events").query(&query);
        let mut stream = std::pin::pin!(client.events(request).await?);
        while let Some(event) = stream.next().await {
            if event.event != "job" {
                continue;
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            rows.add(std::slice::from_ref(&data));
            rows.flush();
            after = Some(event.id);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Events printed as they come: NDJSON, or rows whose columns keep the widths of the first
/// batch (the header and the stored events), so live rows line up under them.
struct EventRows {
    output: Output,
    job: Option<String>,
    pending: Vec<[String; 6]>,
    widths: Option<[usize; 5]>,
}

impl EventRows {
    const HEADER: [&'static str; 6] = ["TIME", "EVENT", "JOB", "TASK", "STATE", "MESSAGE"];

    fn new(output: Output, job: Option<String>) -> Self {
        EventRows {
            output,
            job,
            pending: Vec::new(),
            widths: None,
        }
    }

    fn add(&mut self, events: &[Value]) {
        for event in events {
            if self
                .job
                .as_ref()
                .is_some_and(|job| event["job_id"] != **job)
            {
                continue;
            }
            match self.output {
                Output::Json => println!("{event}"),
                Output::Table => self.pending.push([
                    text(&event["time"]),
                    text(&event["id"]),
                    text(&event["job_id"]),
                    text(&event["task"]),
                    text(&event["to"]),
                    text(&event["message"]),
                ]),
            }
        }
    }

    /// Prints the rows added since the last flush (the header first, the first time).
    fn flush(&mut self) {
        if self.output == Output::Json {
            return;
        }
        let widths = *self.widths.get_or_insert_with(|| {
            let mut widths = [0; 5];
            let header = Self::HEADER.map(str::to_owned);
            for row in std::iter::once(&header).chain(&self.pending) {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            println!("{}", line(&header, &widths, false));
            widths
        });
        for row in self.pending.drain(..) {
            println!("{}", line(&row, &widths, true));
        }
    }
}

/// One row: each cell padded to its column's width and two spaces (the last one as it is),
/// the state coloured on a terminal.
fn line(row: &[String; 6], widths: &[usize; 5], colour: bool) -> String {
    let mut out = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        let shown = if colour && i == 4 {
            state(&json!(cell))
        } else {
            cell.clone()
        };
        out.push_str(&shown);
        out.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 2));
    }
    out.push_str(&row[5]);
    out.trim_end().to_owned()
}
