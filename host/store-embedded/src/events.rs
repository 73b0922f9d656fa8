//! [`EventStore`] on redb: events numbered by a counter taken in the transaction of the change
//! that makes them (see `tables`), read back by number.

use async_trait::async_trait;
use omni_store::{Event, EventFilter, EventPage, EventStore, Job, Result, StateChange, StoreError};
use redb::ReadableTable;

use crate::EmbeddedStore;
use crate::tables::*;

/// Records `change` of `job` in the event stream, inside the change's own transaction.
pub(crate) fn record_event(
    txn: &redb::WriteTransaction,
    job: &Job,
    change: &StateChange,
) -> Result<(), OpError> {
    append_event(txn, |id| Event::new(id, job, change)).map(drop)
}

/// Appends the event `make` makes of its id to the stream, inside the transaction of the
/// change it tells of; answers it.
pub(crate) fn append_event(
    txn: &redb::WriteTransaction,
    make: impl FnOnce(String) -> Event,
) -> Result<Event, OpError> {
    let mut meta = txn.open_table(META)?;
    let last = meta.get(EVENT_SEQ)?.map_or(0, |v| v.value());
    let number = last + 1;
    meta.insert(EVENT_SEQ, number)?;
    let event = make(number.to_string());
    txn.open_table(EVENTS)?
        .insert(number, encode(&event)?.as_slice())?;
    Ok(event)
}

/// An event id of this store: the event's number in decimal.
fn parse_event_id(id: &str) -> Result<u64, OpError> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OpError::Store(StoreError::BadEventId(id.to_owned())));
    }
    id.parse()
        .map_err(|_| OpError::Store(StoreError::BadEventId(id.to_owned())))
}

/// The most events one read looks at (matching or not), so a rare filter cannot make a read
/// walk the whole stream at once.
const EVENT_SCAN: usize = 16 * 1024;

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage> {
        let after = after
            .map(parse_event_id)
            .transpose()
            .map_err(OpError::into_store)?
            .unwrap_or(0);
        let filter = filter.clone();
        self.read(move |txn| {
            let mut items = Vec::new();
            let mut next = after;
            if after == u64::MAX || limit == 0 {
                return Ok(EventPage {
                    items,
                    next: next.to_string(),
                });
            }
            for entry in txn.open_table(EVENTS)?.range(after + 1..)?.take(EVENT_SCAN) {
                let (key, value) = entry?;
                next = key.value();
                let event: Event = decode(value.value())?;
                if filter.matches(&event) {
                    items.push(event);
                    if items.len() == limit {
                        break;
                    }
                }
            }
            Ok(EventPage {
                items,
                next: next.to_string(),
            })
        })
        .await
    }

    async fn events_head(&self) -> Result<String> {
        self.read(|txn| {
            let last = txn
                .open_table(META)?
                .get(EVENT_SEQ)?
                .map_or(0, |v| v.value());
            Ok(last.to_string())
        })
        .await
    }
}
