//! `omni events`: the stored job-change events, then with `-f` the live stream.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::{state, success, text};
use crate::client::{Client, Outcome, Output, Remote};

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

/// Events read at once from the stored stream (the API's largest page).
const EVENT_PAGE: usize = 1000;

/// `omni events`: the stored events, page by page (`follow=false`), then with `-f` the live
/// stream from where the pages ended, reconnecting from the last event seen. The API filters by
/// domain, service and task; `--job` is filtered here (the stream has no job filter).
pub async fn events(args: EventsArgs) -> Outcome {
    let client = Client::new(&args.remote.server)?;
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
