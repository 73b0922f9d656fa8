//! The job and step states, and the job state machine: the one table of allowed moves.
//!
//! `pending -> queued -> running -> succeeded | failed`, and `cancelled` from any state that has
//! not ended. Every backend checks a move against [`TRANSITIONS`] before writing it (so no code
//! path can store an illegal one), and writes it only if the job is still in the state the move
//! starts from (compare-and-set), so a cancel racing a completion has exactly one winner.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl StepState {
    /// Every state.
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
        }
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
        }
    }

    /// Whether the job has ended (no move leaves this state).
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

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
