//! `GET /v1/events`: the job-change event stream as server-sent events (`docs/api.md`,
//! "Events").
//!
//! Each event is `event: job`, `id: <the event's id>`, `data: <the event's JSON>`. A client
//! resumes with `Last-Event-ID` (browsers send it when they reconnect) or `?after=<id>`: the
//! stream then starts with the stored events after that id; without either it starts at the
//! end of the stream (events from now on). Events are always read from the store, so every
//! replica's events come, in the store's order, none twice and none skipped; a change made on
//! this replica wakes the stream at once, and the store is polled (`poll_interval`) for the
//! changes of other replicas. Comments keep idle connections alive.
//!
//! With `follow=false` the route answers one page of stored events as JSON instead,
//! `{"items": [Event], "next": "<position>"}`, from `after` (or `Last-Event-ID`) or else from
//! the oldest kept event, at most `limit` (1 to 1000, default 100). A page shorter than `limit`
//! holds everything stored so far; pass `next` as `after` to read on (or to follow from there).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use omni_jobs::{JobError, JobService};
use omni_store::{EventFilter, StoreError};

use crate::types::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::auth::{Caller, ClientAddress};
use crate::{AppState, Problem};
use omni_core::Name;

/// The header a reconnecting client resumes with.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// Events read from the store at once.
const PAGE: usize = 256;
/// Events of a `follow=false` page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most events of a `follow=false` page.
pub const MAX_LIMIT: usize = 1000;

/// How the event stream behaves (`[events]` in `omni serve`'s configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How often an idle stream reads the store for events of other replicas (a change on this
    /// replica wakes it at once).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often an idle stream sends a comment, so that proxies keep the connection.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            poll_interval: Duration::from_secs(1),
            keep_alive: Duration::from_secs(15),
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", get(stream))
}

/// `GET /v1/events` query parameters, read as text and checked here (a wrong one answers a
/// problem naming it); the document shows what each must be.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only this domain's jobs (403 without `viewer` there).
    #[param(value_type = Option<crate::types::NameSchema>)]
    domain: Option<String>,
    /// Only this service's jobs.
    #[param(value_type = Option<crate::types::NameSchema>)]
    service: Option<String>,
    /// Only this task's jobs.
    #[param(value_type = Option<crate::types::NameSchema>)]
    task: Option<String>,
    /// Start after this event id or position (an event's `id` or a page's `next`; 400 for one
    /// this server did not give; empty is as if absent).
    after: Option<String>,
    /// `false`: answer one page of stored events as JSON instead of the stream.
    #[param(value_type = Option<bool>, default = true)]
    follow: Option<String>,
    /// At most this many events of a page (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A `follow=false` page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    /// The events, in stream order.
    pub items: Vec<Event>,
    /// Where to read on from (as `after`).
    pub next: String,
}

const NAME_RULE: &str = "must be lowercase letters, digits and '-', 1 to 63 long";

/// Job state changes of the domains the caller may read, as server-sent events (`event: job`,
/// `id:` the event's id, data an Event), from `after` or `Last-Event-ID` (or from now on); or,
/// with `follow=false`, one page of stored events. Comments keep idle streams open.
#[utoipa::path(
    operation_id = "listEvents",
    get,
    path = "/v1/events",
    tag = "events",
    params(
        EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (an EventSource sends it when it reconnects); wins over `after`"),
    ),
    responses(
        (status = 200, description = "The stream, or with `follow=false` a page", content(
            (String = "text/event-stream"),
            (EventList = "application/json"),
        )),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    address: ClientAddress,
    headers: HeaderMap,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| {
        Problem::bad_request(format!("the query is not valid: {}", e.body_text()), vec![])
    })?;
    let mut errors = Vec::new();
    let mut name = |path: &str, value: Option<String>| {
        value.filter(|v| {
            let ok = Name::is_valid(v);
            if !ok {
                errors.push(Problem::field(path, NAME_RULE));
            }
            ok
        })
    };
    let mut filter = EventFilter {
        domain: name("/query/domain", params.domain),
        domains: None,
        service: name("/query/service", params.service),
        task: name("/query/task", params.task),
    };
    let follow = match params.follow.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            errors.push(Problem::field("/query/follow", "must be true or false"));
            true
        }
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .unwrap_or_else(|| {
                errors.push(Problem::field(
                    "/query/limit",
                    format!("must be a number from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }),
    };
    // An empty id is no id: the SSE spec's way to say the client has none.
    let header = match headers.get(LAST_EVENT_ID).map(|v| v.to_str()) {
        None => None,
        Some(Ok(id)) if id.trim().is_empty() => None,
        Some(Ok(id)) => Some(id.trim().to_owned()),
        Some(Err(_)) => {
            errors.push(Problem::field(
                "/headers/last-event-id",
                "must be an event id of this server",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(Problem::bad_request(
            "some query parameters or headers are wrong",
            errors,
        ));
    }
    filter.domains = caller.readable(filter.domain.as_deref())?;
    // The header wins: it is what a reconnecting client was given last.
    let resume = match (header, params.after) {
        (Some(id), _) => Some((id, "/headers/last-event-id")),
        (None, Some(id)) if !id.is_empty() => Some((id, "/query/after")),
        (None, _) => None,
    };
    let jobs = state.jobs.clone();
    // Subscribed before the start is read: no change after it goes unnoticed.
    let wake = state.jobs.subscribe();
    let resume = match resume {
        Some((id, path)) => {
            // A read of nothing checks the id.
            match jobs.read_events(Some(&id), &filter, 0).await {
                Ok(_) => Some(id),
                Err(JobError::Store(StoreError::BadEventId(_))) => {
                    return Err(Problem::bad_request(
                        format!("{id:?} is not an event id of this server"),
                        vec![Problem::field(path, "must be an event id of this server")],
                    ));
                }
                Err(error) => return Err(Problem::from_jobs(error)),
            }
        }
        None => None,
    };
    if !follow {
        return Ok(page(&jobs, resume, &filter, limit).await?.into_response());
    }
    let permit = state.streams.open(&address.caller_key(&state, &caller))?;
    let cursor = match resume {
        Some(id) => id,
        None => jobs.events_head().await.map_err(Problem::from_jobs)?,
    };
    let follower = Follower {
        jobs,
        filter,
        cursor,
        buffer: VecDeque::new(),
        wake,
        poll: state.events.poll_interval,
    };
    Ok(
        Sse::new(state.streams.guard(follower.into_stream(), permit))
            .keep_alive(KeepAlive::new().interval(state.events.keep_alive))
            .into_response(),
    )
}

/// Up to `limit` stored events after `after` (from the oldest without it). The store may answer
/// a short page before its end (it bounds how much one read scans), so this reads on until a
/// read finds nothing or the page is full: a short page means caught up.
async fn page(
    jobs: &JobService,
    after: Option<String>,
    filter: &EventFilter,
    limit: usize,
) -> Result<Json<EventList>, Problem> {
    let mut items = Vec::new();
    let mut cursor = after;
    loop {
        let page = jobs
            .read_events(cursor.as_deref(), filter, limit - items.len())
            .await
            .map_err(Problem::from_jobs)?;
        let found = !page.items.is_empty();
        items.extend(page.items.into_iter().map(Event::from));
        cursor = Some(page.next);
        if !found || items.len() == limit {
            break;
        }
    }
    Ok(Json(EventList {
        items,
        next: cursor.unwrap_or_default(),
    }))
}

/// One client's place in the stream.
struct Follower {
    jobs: JobService,
    filter: EventFilter,
    /// Where the next read starts (an id, or a position the store gave).
    cursor: String,
    buffer: VecDeque<Event>,
    wake: broadcast::Receiver<omni_jobs::JobEvent>,
    poll: Duration,
}

impl Follower {
    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next().await;
            Some((Ok(event), follower))
        })
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                match SseEvent::default()
                    .event("job")
                    .id(event.id.clone())
                    .json_data(&event)
                {
                    Ok(sse) => return sse,
                    // An event always serializes; an id never holds a newline (ids are digits
                    // or uuids).
                    Err(error) => {
                        tracing::error!(event = %event.id, %error, "cannot send an event");
                        continue;
                    }
                }
            }
            match self
                .jobs
                .read_events(Some(&self.cursor), &self.filter, PAGE)
                .await
            {
                Ok(page) => {
                    self.cursor = page.next;
                    if !page.items.is_empty() {
                        self.buffer.extend(page.items.into_iter().map(Event::from));
                        continue;
                    }
                }
                // The store comes back by itself; the client keeps its place meanwhile.
                Err(error) => tracing::warn!(%error, "cannot read events for a stream"),
            }
            tokio::select! {
                _ = self.wake.recv() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            while self.wake.try_recv().is_ok() {}
        }
    }
}
