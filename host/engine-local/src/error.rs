//! Why a run could not start ([`RunError`]), and why the sandbox cannot run jobs on this host
//! ([`ProbeError`]).

use std::path::PathBuf;

use crate::SandboxError;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The job's directory could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A ConfigMap file path that would leave its volume.
    #[error("ConfigMap file {0:?} of volume {1:?} is not a plain relative path")]
    BadKey(String, String),
    /// The sandbox cannot take the job.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The job was started before (its directory exists): it is not run a second time.
    #[error(
        "job {0} was started before, by this engine or by an earlier run of the server that stopped while it ran; it is not run a second time"
    )]
    Started(String),
    /// The job's input files cannot be given to it as the plan stands.
    #[error("{0}")]
    Inputs(String),
}

/// Why the sandbox cannot run jobs on this host ([`crate::LocalRunner::probe`]).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's run could not start.
    #[error("the sandbox probe cannot start: {0}")]
    Start(#[source] RunError),
    /// The probe's step failed: the sandbox cannot start here.
    #[error("the sandbox (bubblewrap) cannot start here: {message}: {said}")]
    Failed {
        /// How the step ended.
        message: String,
        /// What the sandbox's tools printed, its lines joined with `; `.
        said: String,
    },
    /// The probe was cancelled.
    #[error("the sandbox probe was cancelled")]
    Cancelled,
}
