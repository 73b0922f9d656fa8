//! The server-sent event streams (`GET /v1/events`, a followed log) as the server keeps them:
//! how many one caller may hold open at once, and how every one of them ends when the server
//! stops.
//!
//! A stream is opened with [`Streams::open`], which counts it against its caller (the signed-in
//! user or token; with auth off, the client's address) and answers 429 beyond the cap, and is
//! then wrapped by [`Streams::guard`]: when [`Streams::stop`] is called (the server was asked to
//! stop) it sends a last `event: shutdown` and ends, so that a stop is not held up by clients
//! that never leave. A client reconnects to another replica, or to this one when it is back,
//! with `Last-Event-ID` and misses nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use crate::Problem;

/// The streams one caller may hold open unless configured: the benchmarks' 100 log followers
/// fit under it.
pub const DEFAULT_MAX_PER_CALLER: usize = 128;

/// What the last event of a stream ended by a stop says.
const STOPPING: &str =
    r#"{"detail":"the server is stopping; reconnect with Last-Event-ID to resume"}"#;

/// The open streams of this server, by caller, and the signal that ends them.
#[derive(Debug, Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_per_caller: usize,
    open: Mutex<HashMap<String, usize>>,
    stop: watch::Sender<bool>,
}

impl Default for Streams {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PER_CALLER)
    }
}

impl Streams {
    /// At most `max_per_caller` streams open at once per caller.
    pub fn new(max_per_caller: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_per_caller,
                open: Mutex::new(HashMap::new()),
                stop: watch::Sender::new(false),
            }),
        }
    }

    /// Ends every open stream (each with `event: shutdown`) and every stream opened from now on.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// How many streams `caller` holds open.
    pub fn open_by(&self, caller: &str) -> usize {
        let open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.get(caller).copied().unwrap_or(0)
    }

    /// Counts a stream against `caller`: 429 when it holds the most already. The stream holds
    /// the permit; dropping it (the client left, the stream ended) frees the place.
    pub(crate) fn open(&self, caller: &str) -> Result<Permit, Problem> {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(caller.to_owned()).or_insert(0);
        if *count >= self.inner.max_per_caller {
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many streams",
                format!(
                    "{caller} has {count} event streams open, the most one caller may ([http] max_streams_per_caller); close one first",
                ),
            );
            problem.retry_after = Some(1);
            return Err(problem);
        }
        *count += 1;
        Ok(Permit {
            streams: self.clone(),
            caller: caller.to_owned(),
        })
    }

    /// `stream`, holding `permit`, ended by [`Streams::stop`] with `event: shutdown`.
    pub(crate) fn guard<S>(
        &self,
        stream: S,
        permit: Permit,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static
    where
        S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
    {
        let mut stop = self.inner.stop.subscribe();
        let stopped = Box::pin(async move {
            // An error means the sender is gone: nothing will stop the stream then.
            if stop.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        let state = Some((Box::pin(stream), stopped, permit));
        futures::stream::unfold(state, |state| async move {
            let (mut stream, mut stopped, permit) = state?;
            tokio::select! {
                biased;
                () = &mut stopped => {
                    let last = Event::default().event("shutdown").data(STOPPING);
                    Some((Ok(last), None))
                }
                item = stream.next() => item.map(|item| (item, Some((stream, stopped, permit)))),
            }
        })
    }
}

/// One open stream's place in its caller's count.
#[derive(Debug)]
pub(crate) struct Permit {
    streams: Streams,
    caller: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_gets_its_cap_and_a_place_back_when_a_stream_goes() {
        let streams = Streams::new(2);
        let first = streams.open("alice").unwrap();
        let _second = streams.open("alice").unwrap();
        let refused = streams.open("alice").unwrap_err();
        assert_eq!(refused.status, 429);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            streams.open("bob").is_ok(),
            "another caller has its own count"
        );
        drop(first);
        assert_eq!(streams.open_by("alice"), 1);
        assert!(streams.open("alice").is_ok());
    }

    #[tokio::test]
    async fn a_stream_that_ends_by_itself_gets_no_last_event() {
        let streams = Streams::new(1);
        let permit = streams.open("alice").unwrap();
        let one = futures::stream::iter([Ok::<_, Infallible>(Event::default().event("end"))]);
        let events: Vec<_> = streams.guard(one, permit).collect().await;
        assert_eq!(events.len(), 1);
        assert_eq!(streams.open_by("alice"), 0);
    }

    #[tokio::test]
    async fn a_stop_ends_a_stream_that_never_ends_with_a_last_event() {
        let streams = Streams::new(1);
        let permit = streams.open("alice").unwrap();
        let endless = futures::stream::pending::<Result<Event, Infallible>>();
        let guarded = streams.guard(endless, permit);
        streams.stop();
        let events: Vec<_> = guarded.collect().await;
        assert_eq!(events.len(), 1);
        assert_eq!(
            streams.open_by("alice"),
            0,
            "the ended stream freed its place"
        );
    }
}
