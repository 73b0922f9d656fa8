//! [`LocalEngineConfig`]: one `[[engines]]` entry of `kind = "local"`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::SandboxConfig;

/// One `[[engines]]` entry of `kind = "local"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEngineConfig {
    /// Its name, recorded on the jobs it runs.
    #[serde(default = "default_name")]
    pub name: String,
    /// The API arches it runs jobs for; this machine's by default.
    #[serde(default = "host_arches")]
    pub arches: Vec<String>,
    /// Jobs running at once at most.
    #[serde(default = "default_max_running")]
    pub max_running: usize,
    /// Where job directories (volumes, artifacts) go; `<data_dir>/jobs` by default.
    pub root: Option<PathBuf>,
    /// The most of one job's log kept here (spooled to the job's directory until the job is
    /// cleaned up): each line counts its text, its step's name and what keeping a line costs
    /// (`line_cost`); then a marker line, and the job's later lines are dropped (the job runs
    /// on). The host stores at most `[logs] max_job_bytes` anyway.
    #[serde(default = "default_max_log_bytes")]
    pub max_log_bytes: u64,
    /// Run steps as plain processes of the server's user, with no sandbox: every job can do
    /// what the server can. For hosts where bubblewrap cannot run; the server warns at start.
    #[serde(default)]
    pub unsandboxed: bool,
    /// `[engines.sandbox]`: the sandbox's settings.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// How long the directory of a job that ended (its volumes, artifacts and log) is kept;
    /// then it is removed, as the store forgets the job after its `job_ttl` (30 days by default
    /// for both: keep them equal). Directories a crash left behind go the same way.
    #[serde(default = "default_keep_finished", with = "humantime_serde")]
    pub keep_finished: Duration,
    /// The most files a job may leave in its output volume; a job that leaves more fails,
    /// saying so, and none of them becomes an artifact.
    #[serde(default = "default_max_outputs")]
    pub max_outputs: usize,
    /// The most bytes those files may have together, in MiB (the same).
    #[serde(default = "default_max_output_mib")]
    pub max_output_mib: u64,
}

fn default_max_outputs() -> usize {
    100_000
}

fn default_max_output_mib() -> u64 {
    64 * 1024
}

fn default_keep_finished() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_max_log_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_name() -> String {
    "local".to_owned()
}

/// This machine's arch, as the API names it (`std::env::consts::ARCH` uses the same names).
fn host_arches() -> Vec<String> {
    vec![std::env::consts::ARCH.to_owned()]
}

fn default_max_running() -> usize {
    2
}

impl LocalEngineConfig {
    /// The defaults: `local`, this machine's arch, 2 jobs at once, directories under
    /// `<data_dir>/jobs`.
    pub fn new() -> Self {
        LocalEngineConfig {
            name: default_name(),
            arches: host_arches(),
            max_running: default_max_running(),
            root: None,
            max_log_bytes: default_max_log_bytes(),
            unsandboxed: false,
            sandbox: SandboxConfig::default(),
            keep_finished: default_keep_finished(),
            max_outputs: default_max_outputs(),
            max_output_mib: default_max_output_mib(),
        }
    }
}

impl Default for LocalEngineConfig {
    fn default() -> Self {
        Self::new()
    }
}
