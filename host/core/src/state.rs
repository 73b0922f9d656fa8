//! The job and step states, and the job state machine: the one table of allowed moves.
//!
//! `pending -> queued -> running -> succeeded | failed`, and `cancelled` from any state that has
//! not ended. Every backend checks a move against [`TRANSITIONS`] before writing it (so no code
//! path can store an illegal one), and writes it only if the job is still in the state the move
//! starts from (compare-and-set), so a cancel racing a completion has exactly one winner.
//!
//! A state this server does not know ([`JobState::Other`], [`StepState::Other`]) is one a newer
//! server wrote to the store shared with it during a rolling upgrade. It is read as it is, shown
//! as it is, and written back as it is; no move leaves or enters it here, so this server leaves
//! such a job alone (it does not schedule, move or sweep it). It is made only from stored data
//! ([`JobState::from_stored`]), never from a request: the API's parsing ([`str::parse`]) knows
//! only this server's states.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unknown state name `name`, kept once for the process (see [`crate::unknown`]).
fn intern(kind: &'static str, name: &str) -> Result<&'static str, UnknownState> {
    crate::unknown::intern(kind, name).ok_or_else(|| UnknownState(name.to_owned()))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Accepted and stored; not yet looked at by the scheduler.
    Pending,
    /// Waiting for an engine with capacity.
    Queued,
    /// Submitted to an engine, which reports it running.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended badly (the message says why).
    Failed,
    /// Cancelled before it ended.
    Cancelled,
    /// A state a newer server wrote, by its name (see the module's docs).
    Other(&'static str),
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Running now.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended badly.
    Failed,
    /// Never ran (the job ended before).
    Skipped,
    /// A state a newer server wrote, by its name (see the module's docs).
    Other(&'static str),
}

impl StepState {
    /// Every state this server knows.
    pub const ALL: [StepState; 5] = [
        StepState::Pending,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Skipped,
    ];

    /// The name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Other(name) => name,
        }
    }

    /// The state stored as `name`: one this server knows, or [`StepState::Other`].
    ///
    /// # Errors
    /// [`UnknownState`] when `name` is not a name at all (damaged data).
    pub fn from_stored(name: &str) -> Result<Self, UnknownState> {
        match StepState::ALL.into_iter().find(|s| s.as_str() == name) {
            Some(state) => Ok(state),
            None => intern("a step in state", name).map(StepState::Other),
        }
    }
}

impl Serialize for StepState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StepState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        StepState::from_stored(&name).map_err(serde::de::Error::custom)
    }
}

/// Every allowed move, as data: `(from, to)`.
pub const TRANSITIONS: &[(JobState, JobState)] = &[
    (JobState::Pending, JobState::Queued),
    (JobState::Queued, JobState::Running),
    (JobState::Running, JobState::Succeeded),
    (JobState::Running, JobState::Failed),
    // The one move the chain of docs/api.md ("States") does not draw: a job taken from the
    // queue can fail before it runs, when its plugin cannot render it or the engine rejects its
    // objects. Going through `running` instead would claim it ran.
    (JobState::Queued, JobState::Failed),
    (JobState::Pending, JobState::Cancelled),
    (JobState::Queued, JobState::Cancelled),
    (JobState::Running, JobState::Cancelled),
];

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Other(name) => name,
        }
    }

    /// The state stored as `name`: one this server knows, or [`JobState::Other`].
    ///
    /// # Errors
    /// [`UnknownState`] when `name` is not a name at all (damaged data).
    pub fn from_stored(name: &str) -> Result<Self, UnknownState> {
        match name.parse() {
            Ok(state) => Ok(state),
            Err(_) => intern("a job in state", name).map(JobState::Other),
        }
    }

    /// Whether this server knows the state (it is not [`JobState::Other`]).
    pub fn is_known(self) -> bool {
        !matches!(self, JobState::Other(_))
    }

    /// Whether the job has ended (no move leaves this state). A state this server does not know
    /// is not final: it does not know that the job has ended, only that it must not move it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Whether `self -> to` is in [`TRANSITIONS`].
    pub fn can_move_to(self, to: JobState) -> bool {
        TRANSITIONS.contains(&(self, to))
    }

    /// `Ok` if `self -> to` is allowed.
    ///
    /// # Errors
    /// [`IllegalTransition`] otherwise.
    pub fn check(self, to: JobState) -> Result<(), IllegalTransition> {
        if self.can_move_to(to) {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl Serialize for JobState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reads stored states: one this server does not know becomes [`JobState::Other`].
impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        JobState::from_stored(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a state this server knows (a request's): no [`JobState::Other`].
impl std::str::FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A state name that is not one of [`JobState::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown job state {0:?} (one of pending, queued, running, succeeded, failed, cancelled)")]
pub struct UnknownState(pub String);

/// A move that [`TRANSITIONS`] does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot move from {from} to {to}")]
pub struct IllegalTransition {
    /// The state the job is in.
    pub from: JobState,
    /// The state asked for.
    pub to: JobState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_have_no_way_out() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in JobState::ALL {
                assert!(from.check(to).is_err(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn every_unfinished_state_can_be_cancelled_and_nothing_returns_to_pending() {
        for from in JobState::ALL {
            assert_eq!(
                from.can_move_to(JobState::Cancelled),
                !from.is_final(),
                "{from}"
            );
            assert!(!from.can_move_to(JobState::Pending));
        }
    }

    #[test]
    fn the_happy_path_is_allowed() {
        let path = [
            JobState::Pending,
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
        ];
        for pair in path.windows(2) {
            pair[0].check(pair[1]).unwrap();
        }
        assert!(JobState::Pending.check(JobState::Running).is_err());
    }

    #[test]
    fn a_state_of_a_newer_server_is_read_shown_and_written_as_it_is_and_never_moves() {
        let waiting: JobState = serde_json::from_str("\"waiting\"").unwrap();
        assert_eq!(waiting, JobState::Other("waiting"));
        assert_eq!(serde_json::to_string(&waiting).unwrap(), "\"waiting\"");
        assert_eq!(waiting.to_string(), "waiting");
        assert!(!waiting.is_known());
        assert!(!waiting.is_final());
        for state in JobState::ALL {
            assert!(waiting.check(state).is_err(), "waiting -> {state}");
            assert!(state.check(waiting).is_err(), "{state} -> waiting");
        }
        // Kept once: the same name is the same state.
        assert_eq!(JobState::from_stored("waiting").unwrap(), waiting);
        let retrying: StepState = serde_json::from_str("\"retrying\"").unwrap();
        assert_eq!(retrying.as_str(), "retrying");
        assert_eq!(serde_json::to_string(&retrying).unwrap(), "\"retrying\"");
    }

    #[test]
    fn requests_and_damaged_data_make_no_unknown_states() {
        // What a request names is parsed strictly.
        assert!("waiting".parse::<JobState>().is_err());
        // What is not a name at all is damage, not a newer server's state.
        for bad in ["", "Waiting", "a b", &"x".repeat(64)] {
            assert!(JobState::from_stored(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<JobState>(bad.into()).is_err());
        }
    }

    #[test]
    fn names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
        }
        assert!("done".parse::<JobState>().is_err());
    }
}
