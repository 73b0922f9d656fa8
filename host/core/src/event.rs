//! The kinds of events Omni records, and the names webhooks filter on.
//!
//! An event is a job's state change, named `job.<state>` (`job.pending`, ...,
//! `job.cancelled`), or the news that a job's artifacts were stored (`job.artifacts`); flows
//! add kinds of their own here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use crate::state::JobState;

/// What an event tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A job moved to this state (its creation is the move to `pending`).
    Job(JobState),
    /// Artifacts of a job were stored (a batch of them: the local engine's at the job's end,
    /// a pod's when its upload step reports).
    Artifacts,
}

/// What webhooks may ask for instead of a list of names: every event.
pub const EVERY_EVENT: &str = "*";

impl EventKind {
    /// Every kind, in order.
    pub const ALL: [EventKind; 7] = [
        EventKind::Job(JobState::Pending),
        EventKind::Job(JobState::Queued),
        EventKind::Job(JobState::Running),
        EventKind::Job(JobState::Succeeded),
        EventKind::Job(JobState::Failed),
        EventKind::Job(JobState::Cancelled),
        EventKind::Artifacts,
    ];

    /// Its name (`job.succeeded`): the `X-Omni-Event` header of a delivery and what webhooks
    /// filter on.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Job(JobState::Pending) => "job.pending",
            EventKind::Job(JobState::Queued) => "job.queued",
            EventKind::Job(JobState::Running) => "job.running",
            EventKind::Job(JobState::Succeeded) => "job.succeeded",
            EventKind::Job(JobState::Failed) => "job.failed",
            EventKind::Job(JobState::Cancelled) => "job.cancelled",
            EventKind::Job(JobState::Other(state)) => other_job_event(state),
            EventKind::Artifacts => "job.artifacts",
        }
    }

    /// Every name, in order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().map(Self::name)
    }
}

/// `job.<state>` for a state this server does not know, kept once per state (there are at most
/// as many as such states, which are bounded).
fn other_job_event(state: &'static str) -> &'static str {
    static NAMES: Mutex<BTreeMap<&'static str, &'static str>> = Mutex::new(BTreeMap::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    names
        .entry(state)
        .or_insert_with(|| Box::leak(format!("job.{state}").into_boxed_str()))
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not an event kind's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event {0:?}")]
pub struct UnknownEvent(pub String);

impl FromStr for EventKind {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_state_has_its_kind_named_after_it() {
        for state in JobState::ALL {
            let kind = EventKind::Job(state);
            assert!(EventKind::ALL.contains(&kind));
            assert_eq!(kind.name(), format!("job.{state}"));
            assert_eq!(kind.name().parse::<EventKind>(), Ok(kind));
        }
        assert!("job.done".parse::<EventKind>().is_err());
        let newer = EventKind::Job(JobState::from_stored("waiting").unwrap());
        assert_eq!(newer.name(), "job.waiting");
        assert_eq!(EventKind::names().count(), EventKind::ALL.len());
        assert_eq!("job.artifacts".parse(), Ok(EventKind::Artifacts));
    }
}
