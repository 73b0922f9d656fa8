//! [`EventStore`] on Cassandra: the job-change event stream in hour buckets
//! (`events_by_hour`), ids that are time-based uuids, and readers that stay the settle time
//! behind now so that no event another replica is still writing is passed.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use scylla::value::CqlTimeuuid;
use uuid::Uuid;

use omni_store::{
    Event, EventFilter, EventPage, EventStore, Job, Result, StateChange, StoreError, id_time,
};

use crate::cql::{corrupt, timeuuid, unavailable};
use crate::{CassandraStore, is_timeuuid, to_json};

/// Rows per read of an hour of events.
const EVENT_PAGE_ROWS: usize = 1000;
/// The most events one `read_events` looks at (matching or not).
const EVENT_SCAN_ROWS: usize = 16 * 1000;
/// Attempts at writing one event before it is given up (and logged).
const EVENT_WRITE_ATTEMPTS: usize = 5;

impl CassandraStore {
    /// A new event of `change`: its id, made now (write it at once: see
    /// [`CassandraStore::record_event`]), and the values of `insert_event`.
    pub(crate) fn new_event(&self, job: &Job, change: &StateChange) -> Result<(Uuid, EventRow)> {
        self.new_event_of(|id| Event::new(id, job, change))
            .map(|(id, row, _)| (id, row))
    }

    /// A new event that `make` makes of its id (see [`CassandraStore::new_event`]), with it.
    fn new_event_of(&self, make: impl FnOnce(String) -> Event) -> Result<(Uuid, EventRow, Event)> {
        let id = omni_store::new_job_id();
        let event = make(id.to_string());
        let text = to_json(&event)?;
        let hour = hour_of(id_time(id).unwrap_or_else(Utc::now));
        Ok((id, (hour, timeuuid(id), text, self.inner.event_ttl), event))
    }

    /// Records a change in the event stream, right after the change itself was stored (the
    /// change is a compare-and-set on the job's partition; the event lives in another
    /// partition, so it cannot be part of it). The event's id is made just before it is
    /// written; when the write took longer than half the settle time, readers may already have
    /// passed that id, so the event is written again under a new one (a reader may then get it
    /// twice, never not at all). When the store cannot be written, the event is logged and lost:
    /// the change itself is made and stays made.
    pub(crate) async fn record_event(&self, job: &Job, change: &StateChange) {
        self.record_event_after(job, change, 1).await;
    }

    /// [`CassandraStore::record_event`], its first `attempt`s already made.
    pub(crate) async fn record_event_after(&self, job: &Job, change: &StateChange, attempt: usize) {
        if let Err(error) = self
            .write_event(job, |id| Event::new(id, job, change), attempt)
            .await
        {
            tracing::error!(job = %job.id, to = %change.to, %error, "an event could not be recorded; readers will not see it");
        }
    }

    /// Writes the event `make` makes of its id as [`CassandraStore::record_event`] says, its
    /// first `attempt`s already made; answers the event written, or the last error.
    pub(crate) async fn write_event(
        &self,
        job: &Job,
        make: impl Fn(String) -> Event,
        attempt: usize,
    ) -> Result<Event> {
        let half_settle = self.inner.event_settle / 2;
        let mut last = None;
        for attempt in attempt..=EVENT_WRITE_ATTEMPTS {
            let started = Utc::now();
            let (id, row, event) = self.new_event_of(&make)?;
            let written = self
                .inner
                .session
                .execute_unpaged(&self.inner.st.insert_event, row)
                .await;
            match written {
                Ok(_) if Utc::now() - started <= half_settle => return Ok(event),
                Ok(_) => {
                    tracing::warn!(job = %job.id, event = %id, attempt, "an event took longer than half the settle time to write; writing it again under a new id");
                }
                Err(error) => {
                    tracing::warn!(job = %job.id, %error, attempt, "cannot write an event");
                    last = Some(unavailable("writing an event", error));
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable {
            message: "an event took longer than half the settle time to write, every time".into(),
            source: None,
        }))
    }
}

/// The values of `insert_event`: hour bucket, id, the event as JSON, TTL.
type EventRow = (DateTime<Utc>, CqlTimeuuid, String, i32);

#[async_trait]
impl EventStore for CassandraStore {
    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage> {
        let now = Utc::now();
        let start = match after {
            Some(after) => parse_event_id(after)?,
            None => position_at(now - TimeDelta::seconds(i64::from(self.inner.event_ttl))),
        };
        // Events younger than the settle time may still be written by another replica: stay
        // behind them, so none is passed before it is there.
        let visible_until = (now - self.inner.event_settle).trunc_subsecs(3);
        let upper = position_at(visible_until);
        let mut cursor = start;
        let mut items = Vec::new();
        let Some(start_time) = id_time(start) else {
            return Err(StoreError::BadEventId(start.to_string()));
        };
        if start_time >= visible_until || limit == 0 {
            return Ok(EventPage {
                items,
                next: start.to_string(),
            });
        }
        let scan_limit = i32::try_from(EVENT_PAGE_ROWS).unwrap_or(i32::MAX);
        let mut scanned = 0;
        let mut hour = hour_of(start_time);
        let last_hour = hour_of(visible_until);
        while hour <= last_hour {
            loop {
                let rows = self
                    .inner
                    .session
                    .execute_unpaged(
                        &self.inner.st.read_events,
                        (hour, timeuuid(cursor), timeuuid(upper), scan_limit),
                    )
                    .await
                    .map_err(|e| unavailable("reading events", e))?
                    .into_rows_result()
                    .map_err(|e| unavailable("reading events", e))?;
                let mut count = 0;
                for row in rows
                    .rows::<(CqlTimeuuid, Option<String>)>()
                    .map_err(|e| corrupt(format!("events_by_hour: {e}")))?
                {
                    let (id, event) = row.map_err(|e| corrupt(format!("events_by_hour: {e}")))?;
                    count += 1;
                    scanned += 1;
                    cursor = id.into();
                    let Some(event) = event else { continue };
                    let event: Event = serde_json::from_str(&event)
                        .map_err(|e| corrupt(format!("event {cursor}: {e}")))?;
                    if filter.matches(&event) {
                        items.push(event);
                        if items.len() == limit {
                            return Ok(EventPage {
                                items,
                                next: cursor.to_string(),
                            });
                        }
                    }
                }
                if scanned >= EVENT_SCAN_ROWS {
                    return Ok(EventPage {
                        items,
                        next: cursor.to_string(),
                    });
                }
                if count < EVENT_PAGE_ROWS {
                    break;
                }
            }
            hour += TimeDelta::hours(1);
        }
        // Everything before `upper` has been looked at.
        Ok(EventPage {
            items,
            next: upper.to_string(),
        })
    }

    async fn events_head(&self) -> Result<String> {
        Ok(position_at(Utc::now() - self.inner.event_settle).to_string())
    }
}

/// An event id of this store: a time-based uuid.
fn parse_event_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id)
        .ok()
        .filter(|id| is_timeuuid(*id) && id_time(*id).is_some())
        .filter(|_| id.len() == 36)
        .ok_or_else(|| StoreError::BadEventId(id.to_owned()))
}

/// The position just before every id of `time` (Cassandra's `minTimeuuid`): its clock is `time`
/// and the rest of its bytes are the smallest Cassandra orders (0x80, signed -128), so `id >
/// position` holds for every id made at or after `time`, `id < position` for every one before.
fn position_at(time: DateTime<Utc>) -> Uuid {
    let ticks = u64::try_from(
        time.timestamp_micros()
            .saturating_mul(10)
            .saturating_add(0x01B2_1DD2_1381_4000),
    )
    .unwrap_or(0);
    let timestamp = uuid::Timestamp::from_gregorian_time(ticks, 0x0080);
    Uuid::new_v1(timestamp, &[0x80; 6])
}

/// The start of the hour `time` is in: the partition of the events made in it.
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    let secs = time.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).unwrap_or(time)
}
