//! `omni logs`: a job's log, page by page, or followed as it is written.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::{success, text};
use crate::client::{Client, Failure, Outcome, Output, Remote};

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

/// Prints the job's log as server-sent events come, until `end`; resumes after a dropped
/// connection (or a `lagged` event) from the last line printed.
pub(super) async fn follow(
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
    let client = Client::new(&args.remote.server)?;
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
