//! `GET /v1/jobs/{id}/logs` (`docs/api.md`, "Logs"): archived pages with a cursor, or, with
//! `Accept: text/event-stream` or `follow=true`, the same lines as server-sent events that replay
//! what is stored after the cursor, then stream live, and end with `event: end`.
//!
//! Events: `line` (data: the line's JSON; `id:` its `seq`, so an `EventSource` that reconnects
//! sends `Last-Event-ID` and resumes after it), `end` (data `{"state"}`, the job's final state)
//! and `lagged` (data `{"after"}`: the follower fell too far behind and was dropped; reconnect
//! with `after` set to it). A `Last-Event-ID` header takes the place of `after`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use omni_jobs::FollowEvent;
use omni_store::LogQuery;

use crate::types::LogLine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Caller, ClientAddress, Role};
use crate::{AppState, Problem};

/// The default page size.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest page size.
pub const MAX_LIMIT: usize = 10_000;
/// How often an idle follow stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query parameters, read as text and checked here (a wrong one answers a problem naming
/// it); the document shows what each must be.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Only this step's lines (400 if the job has no such step: see the job's `steps`).
    step: Option<String>,
    /// Only lines after this cursor (a page's `next` or a line's `seq`).
    #[param(pattern = "^[0-9]{1,19}$")]
    after: Option<String>,
    /// At most this many lines (default 1000; pages only).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
    /// Stream the lines as server-sent events (the default with `Accept: text/event-stream`).
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
}

/// A page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogList {
    /// The lines, in order.
    pub items: Vec<LogLine>,
    /// The cursor to pass as `after` for the next page; none when this one was the last.
    pub next: Option<String>,
}

fn cursor(value: &str, path: &str) -> Result<u64, Problem> {
    value.parse::<u64>().map_err(|_| {
        Problem::bad_request(
            format!("{value:?} is not a log cursor"),
            vec![Problem::field(
                path,
                "must be a cursor from a page's `next` or a line's `seq`",
            )],
        )
    })
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// A job's log: pages of lines in order, or, with `Accept: text/event-stream` or
/// `follow=true`, the same lines as server-sent events (`event: line`, `id:` the line's `seq`,
/// data the line's JSON) from `after` (or `Last-Event-ID`) or the start, live, ending with
/// `event: end` (data `{"state"}`) once the job has ended and every line was sent; `event:
/// lagged` (data `{"after"}`) drops a follower too far behind. Needs `viewer` in its domain.
#[utoipa::path(
    operation_id = "getJobLogs",
    get,
    path = "/v1/jobs/{id}/logs",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id (a v1 UUID)"),
        LogParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this line's `seq` (takes the place of `after`; an EventSource sends it when it reconnects)", pattern = "^[0-9]{1,19}$"),
    ),
    responses(
        (status = 200, description = "A page of lines, or their stream", content(
            (LogList = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    address: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let id = crate::jobs::parse_id(&id)?;
    crate::jobs::visible_job(&state, &caller, id, Role::Viewer).await?;
    let Query(params) = params.map_err(|e| {
        Problem::bad_request(format!("the query is not valid: {}", e.body_text()), vec![])
    })?;
    let mut after = params
        .after
        .as_deref()
        .map(|a| cursor(a, "/query/after"))
        .transpose()?;
    let follow = match params.follow.as_deref() {
        None => wants_events(&headers),
        Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return Err(Problem::bad_request(
                "follow must be true or false",
                vec![Problem::field("/query/follow", "must be true or false")],
            ));
        }
    };
    // For pages as for streams (the module's word: the header takes the place of `after`); it
    // was once read for streams only, and a bad one on a page went unnoticed.
    if let Some(last) = headers.get("last-event-id") {
        let last = last.to_str().unwrap_or_default();
        after = Some(cursor(last, "/headers/last-event-id")?);
    }
    if follow {
        let permit = state.streams.open(&address.caller_key(&state, &caller))?;
        let events = state
            .jobs
            .follow_logs(id, params.step, after)
            .await
            .map_err(Problem::from_jobs)?;
        let stream = events
            .flat_map(|event| futures::stream::iter(sse(event)))
            .map(Ok::<_, Infallible>);
        return Ok(Sse::new(state.streams.guard(stream, permit))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response());
    }
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                Problem::bad_request(
                    format!("limit {limit:?} is not a number from 1 to {MAX_LIMIT}"),
                    vec![Problem::field(
                        "/query/limit",
                        format!("must be a number from 1 to {MAX_LIMIT}"),
                    )],
                )
            })?,
    };
    let query = LogQuery {
        step: params.step,
        after,
        limit,
    };
    let page = state
        .jobs
        .read_logs(id, &query)
        .await
        .map_err(Problem::from_jobs)?;
    let seqs: Vec<u64> = page.items.iter().map(|line| line.seq).collect();
    let mut items: Vec<LogLine> = page.items.into_iter().map(LogLine::from).collect();
    let next = crate::cut_to_fit(&mut items, &seqs, state.answer_limit, page.next);
    Ok(Json(LogList {
        next: next.map(|n| n.to_string()),
        items,
    })
    .into_response())
}

/// The server-sent events of one follower item: one per line.
fn sse(event: Result<FollowEvent, omni_jobs::JobError>) -> Vec<Event> {
    match event {
        Ok(FollowEvent::Lines(lines)) => lines
            .iter()
            .map(|line| {
                Event::default()
                    .event("line")
                    .id(line.seq.to_string())
                    .json_data(LogLine::from(line.clone()))
                    .unwrap_or_else(|_| Event::default().event("line"))
            })
            .collect(),
        Ok(FollowEvent::End { state }) => vec![
            Event::default()
                .event("end")
                .data(json!({ "state": state }).to_string()),
        ],
        Ok(FollowEvent::Lagged { after }) => vec![
            Event::default()
                .event("lagged")
                .data(json!({ "after": after.map(|a| a.to_string()) }).to_string()),
        ],
        Err(error) => vec![
            Event::default()
                .event("error")
                .data(json!({ "detail": error.to_string() }).to_string()),
        ],
    }
}
