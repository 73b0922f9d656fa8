//! The job service's metrics, recorded through the `metrics` facade (whoever installs a recorder
//! exports them), and the tracing span of one job.
//!
//! Every number is what this replica did: with several replicas, sum them. There is no gauge of
//! jobs by state: that would need a scan of the whole store on every scrape; rates of
//! transitions into each state are what the counters give.

use omni_store::{JobId, JobState};

use crate::JobError;

/// Counter of job state changes, by `task` and `to`.
pub const TRANSITIONS: &str = "omni_job_transitions_total";
/// Counter of submissions, by `task`, `outcome` and `reason`.
pub const SUBMISSIONS: &str = "omni_job_submissions_total";
/// Counter of log lines stored.
pub const LOG_LINES: &str = "omni_log_lines_stored_total";
/// Counter of artifacts stored, by `task`.
pub const ARTIFACTS: &str = "omni_artifacts_stored_total";
/// Counter of the bytes of artifacts stored, by `task`.
pub const ARTIFACT_BYTES: &str = "omni_artifact_bytes_stored_total";

/// Counter of uploads stored, by `outcome` (`new`, or `again`: bytes already kept).
pub const UPLOADS: &str = "omni_uploads_stored_total";
/// Counter of the bytes of uploads received.
pub const UPLOAD_BYTES: &str = "omni_upload_bytes_received_total";

/// Registers the help texts of the metrics above with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        TRANSITIONS,
        "Job state changes this replica wrote, by task and the state moved to (a job's creation \
         counts as its move to pending). Counts moves, not jobs in a state: sum over replicas, \
         and take rates or differences."
    );
    metrics::describe_counter!(
        SUBMISSIONS,
        "Job submissions this replica answered, by task (empty when no plugin is loaded for it), \
         outcome (accepted, replayed: an idempotency key seen before, rejected) and the reason \
         of a rejection (no_such_task, unsupported_arch, no_engine, plugin: invalid_params \
         and the other plugin error kinds, no_such_upload, idempotency_conflict, store_unavailable, store). \
         Requests refused before reaching the job service (malformed bodies) are only in \
         omni_http_requests_total."
    );
    metrics::describe_counter!(LOG_LINES, "Job log lines this replica's collectors stored.");
    metrics::describe_counter!(
        ARTIFACTS,
        "Job artifacts this replica stored (bytes in the artifact store and records in the \
         store), by task."
    );
    metrics::describe_counter!(
        ARTIFACT_BYTES,
        "The bytes of the job artifacts this replica stored, by task."
    );
    metrics::describe_counter!(
        UPLOADS,
        "Uploads this replica stored, by outcome: new, or again (the same bytes were kept \
         already, and are now kept longer)."
    );
    metrics::describe_counter!(
        UPLOAD_BYTES,
        "The bytes of the uploads this replica received and stored."
    );
}

/// Records an upload of `size` bytes stored (`fresh` when its bytes were not kept before).
pub(crate) fn upload_stored(size: u64, fresh: bool) {
    let outcome = if fresh { "new" } else { "again" };
    metrics::counter!(UPLOADS, "outcome" => outcome).increment(1);
    metrics::counter!(UPLOAD_BYTES).increment(size);
}

/// Records `artifacts` of a job of `task` stored.
pub(crate) fn artifacts_stored(task: &str, artifacts: &[omni_store::Artifact]) {
    metrics::counter!(ARTIFACTS, "task" => task.to_owned()).increment(artifacts.len() as u64);
    metrics::counter!(ARTIFACT_BYTES, "task" => task.to_owned())
        .increment(artifacts.iter().map(|a| a.size).sum());
}

/// Records a state change of a job of `task` to `to`.
pub(crate) fn transition(task: &str, to: JobState) {
    metrics::counter!(TRANSITIONS, "task" => task.to_owned(), "to" => to.to_string()).increment(1);
}

/// Records the answer to a submission for `task`.
pub(crate) fn submission(task: &str, answer: Result<bool, &JobError>) {
    let (outcome, reason) = match answer {
        Ok(true) => ("accepted", String::new()),
        Ok(false) => ("replayed", String::new()),
        Err(error) => ("rejected", reason(error)),
    };
    // An unknown task's name is the caller's text: it must not make a new series per request.
    let task = match answer {
        Err(JobError::NoSuchTask(_)) => String::new(),
        _ => task.to_owned(),
    };
    metrics::counter!(SUBMISSIONS, "task" => task, "outcome" => outcome, "reason" => reason)
        .increment(1);
}

fn reason(error: &JobError) -> String {
    use omni_store::StoreError;
    match error {
        JobError::NoSuchTask(_) => "no_such_task".to_owned(),
        JobError::VersionGone { .. } => "version_gone".to_owned(),
        JobError::NoSuchVersion { .. } => "no_such_version".to_owned(),
        JobError::UnsupportedArch { .. } => "unsupported_arch".to_owned(),
        JobError::NoEngine { .. } => "no_engine".to_owned(),
        JobError::BadUploads(_) => "no_such_upload".to_owned(),
        JobError::Plugin(error) => error.kind().to_owned(),
        JobError::Store(StoreError::IdempotencyConflict { .. }) => {
            "idempotency_conflict".to_owned()
        }
        JobError::Store(StoreError::Unavailable { .. }) => "store_unavailable".to_owned(),
        _ => "store".to_owned(),
    }
}

/// Records `count` log lines stored.
pub fn log_lines_stored(count: usize) {
    metrics::counter!(LOG_LINES).increment(u64::try_from(count).unwrap_or(u64::MAX));
}

/// The span of work on one job: log lines inside it carry the job's id, task and domain.
pub fn job_span(id: JobId, task: &str, domain: &str) -> tracing::Span {
    tracing::info_span!("job", job_id = %id, task, domain)
}

#[cfg(test)]
mod tests {
    use omni_core::PluginError;
    use omni_store::StoreError;

    use super::*;

    #[test]
    fn every_rejection_has_a_short_stable_reason() {
        let id = omni_store::new_job_id();
        for (error, want) in [
            (JobError::NoSuchTask("x".into()), "no_such_task"),
            (
                JobError::NoEngine {
                    arch: "riscv64".into(),
                    served: vec![],
                },
                "no_engine",
            ),
            (
                JobError::Plugin(PluginError::InvalidParams {
                    plugin: "srpm@1.0.0".into(),
                    errors: vec![],
                }),
                "invalid_params",
            ),
            (
                JobError::Plugin(PluginError::Timeout {
                    plugin: "srpm@1.0.0".into(),
                    limit: std::time::Duration::from_secs(1),
                }),
                "timeout",
            ),
            (
                JobError::Store(StoreError::IdempotencyConflict {
                    key: "k".into(),
                    job_id: id,
                }),
                "idempotency_conflict",
            ),
            (
                JobError::Store(StoreError::Unavailable {
                    message: "down".into(),
                    source: None,
                }),
                "store_unavailable",
            ),
            (JobError::Store(StoreError::Corrupt("?".into())), "store"),
        ] {
            assert_eq!(reason(&error), want, "{error}");
        }
    }
}
