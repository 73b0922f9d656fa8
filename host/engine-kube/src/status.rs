//! From a Job and its pods, as the API server has them, to Omni's view of the job: where it is
//! (waiting, running, ended and how) and where each step is. Pure functions over k8s-openapi
//! types; the watcher calls them on every change.
//!
//! Steps are the pod template's init containers in order, then its containers. The pod whose
//! statuses count is the newest one the Job created (a retry replaces the one before).
//!
//! The Job's own conditions decide the end: `Complete` is success, `Failed` is failure with the
//! Job's reason (`BackoffLimitExceeded`, `DeadlineExceeded`, ...) and, when a pod tells it, the
//! cause: a step's non-zero exit code, an OOM kill, an eviction. One cause ends the job before
//! Kubernetes does: a step whose image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`,
//! `InvalidImageName`, `ErrImageNeverPull`). The Job controller would wait for the pull until
//! the Job's deadline; a build whose image does not exist should fail now, with that reason. The
//! engine does not delete such a Job itself: the caller's `cleanup` does.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use omni_engine::{Outcome, StepState};

/// Waiting reasons of a container that fail the job at once.
const PULL_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Where a job is as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started yet; why, when the cluster says.
    Waiting(Option<String>),
    /// Its pod runs.
    Running,
    /// Over.
    Ended(Outcome),
}

/// A job as Omni sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobView {
    /// The uid of the Job it is a view of.
    pub uid: Option<String>,
    /// Where it is.
    pub phase: Phase,
    /// Every step, in order, and where it is.
    pub steps: Vec<(String, StepState)>,
}

/// Drops what [`view`], [`step_names`] and [`current_pod`] do not read from a Job: its managed
/// fields, annotations and owner references, and of its pod template all but the containers'
/// names (the scripts in their commands, their env, mounts and volumes are most of a Job). The
/// engine keeps every managed Job for as long as it runs, so what it keeps of one counts.
pub(crate) fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    job.metadata.annotations = None;
    job.metadata.owner_references = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.template.metadata = None;
        if let Some(pod) = spec.template.spec.as_mut() {
            let names_only = |c: &mut Container| Container {
                name: std::mem::take(&mut c.name),
                ..Container::default()
            };
            *pod = k8s_openapi::api::core::v1::PodSpec {
                init_containers: pod
                    .init_containers
                    .as_mut()
                    .map(|cs| cs.iter_mut().map(names_only).collect()),
                containers: pod.containers.iter_mut().map(names_only).collect(),
                ..Default::default()
            };
        }
    }
}

/// Drops what the view does not read from a pod: its managed fields, annotations, owner
/// references and spec (its status, name, labels and times stay).
pub(crate) fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pod.spec = None;
}

/// The job's step names: the pod template's init containers, then its containers.
pub(crate) fn step_names(job: &Job) -> Vec<String> {
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Vec::new();
    };
    pod.init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .map(|c| c.name.clone())
        .collect()
}

/// The newest of `pods` (by creation time, then name), if any.
pub(crate) fn current_pod<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Option<&'a Pod> {
    pods.into_iter().max_by(|a, b| {
        let key = |p: &'a Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.as_deref(),
            )
        };
        key(a).cmp(&key(b))
    })
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
}

fn step_state(status: Option<&ContainerStatus>) -> StepState {
    let Some(state) = status.and_then(|s| s.state.as_ref()) else {
        return StepState::Pending;
    };
    if let Some(terminated) = &state.terminated {
        if terminated.exit_code == 0 {
            StepState::Succeeded
        } else {
            StepState::Failed
        }
    } else if state.running.is_some() {
        StepState::Running
    } else {
        StepState::Pending
    }
}

/// Why `pod` failed, as far as it tells: an eviction, a step killed for memory, a step's exit
/// code, or an image that could not be pulled; the first step in order that says.
pub(crate) fn pod_cause(pod: &Pod, steps: &[String]) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.reason.as_deref() == Some("Evicted") {
        let message = status.message.as_deref().unwrap_or("no message");
        return Some(format!("the pod was evicted: {message}"));
    }
    let by_step = |name: &str| statuses(pod).find(|s| s.name == name);
    for name in steps {
        let Some(state) = by_step(name).and_then(|s| s.state.as_ref()) else {
            continue;
        };
        if let Some(terminated) = &state.terminated {
            if terminated.reason.as_deref() == Some("OOMKilled") {
                return Some(format!(
                    "step {name} was killed for lack of memory (OOMKilled, exit code {})",
                    terminated.exit_code
                ));
            }
            if terminated.exit_code != 0 {
                let mut cause = format!("step {name} exited with code {}", terminated.exit_code);
                if let Some(reason) = terminated.reason.as_deref().filter(|r| *r != "Error") {
                    cause.push_str(&format!(" ({reason})"));
                }
                return Some(cause);
            }
        }
        if let Some(pull) = pull_failure(name, by_step(name)) {
            return Some(pull);
        }
    }
    None
}

fn pull_failure(name: &str, status: Option<&ContainerStatus>) -> Option<String> {
    let status = status?;
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    if !PULL_FAILURES.contains(&reason) {
        return None;
    }
    let mut cause = format!(
        "step {name}: image {} could not be pulled: {reason}",
        status.image
    );
    if let Some(message) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
        cause.push_str(&format!(": {message}"));
    }
    Some(cause)
}

fn condition<'a>(job: &'a Job, kind: &'a str) -> Option<(&'a str, &'a str)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            (
                c.reason.as_deref().unwrap_or(kind),
                c.message.as_deref().unwrap_or(""),
            )
        })
}

/// Why a pod has not started, when it says: unschedulable, or a container waiting for
/// something (ContainerCreating, PodInitializing, an image pull).
fn waiting_reason(pod: Option<&Pod>) -> Option<String> {
    let status = pod?.status.as_ref()?;
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.is_some());
    if let Some(c) = unscheduled {
        let reason = c.reason.as_deref().unwrap_or_default();
        return Some(match c.message.as_deref() {
            Some(message) if !message.is_empty() => format!("{reason}: {message}"),
            _ => reason.to_owned(),
        });
    }
    statuses(pod?)
        .find_map(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .or_else(|| status.reason.clone())
}

/// The view of `job` with its `pods`. `deleted` says the Job is gone from the cluster or being
/// deleted (a cancel, or someone else): unless it had ended, it ends as cancelled.
pub(crate) fn view<'a>(
    job: &Job,
    pods: impl IntoIterator<Item = &'a Pod>,
    deleted: bool,
) -> JobView {
    let names = step_names(job);
    let pod = current_pod(pods);
    let mut steps: Vec<(String, StepState)> = names
        .iter()
        .map(|name| {
            let status = pod.and_then(|p| statuses(p).find(|s| s.name == *name));
            let state = if pull_failure(name, status).is_some() {
                StepState::Failed
            } else {
                step_state(status)
            };
            (name.clone(), state)
        })
        .collect();
    // A failed step means the ones after it never run.
    if let Some(failed) = steps.iter().position(|(_, s)| *s == StepState::Failed) {
        for (_, state) in &mut steps[failed + 1..] {
            if *state == StepState::Pending {
                *state = StepState::Skipped;
            }
        }
    }
    let cause = pod.and_then(|p| pod_cause(p, &names));
    let pull_failed = pod.and_then(|p| {
        names
            .iter()
            .find_map(|name| pull_failure(name, statuses(p).find(|s| s.name == *name)))
    });

    // The Job's verdict may come before the pod's last status (two watches): a failure waits for
    // the pod to end or go, so that its cause is known.
    let pod_settled = pod.is_none_or(|p| {
        p.metadata.deletion_timestamp.is_some()
            || p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    });
    let phase = if condition(job, "Complete").is_some() {
        Phase::Ended(Outcome::Succeeded)
    } else if let Some((reason, message)) =
        condition(job, "Failed").filter(|_| pod_settled || deleted)
    {
        let mut text = reason.to_owned();
        if !message.is_empty() {
            text.push_str(&format!(": {message}"));
        }
        if let Some(cause) = &cause {
            text.push_str(&format!("; {cause}"));
        }
        Phase::Ended(Outcome::Failed(text))
    } else if deleted || job.metadata.deletion_timestamp.is_some() {
        Phase::Ended(Outcome::Cancelled("the Job was deleted".to_owned()))
    } else if let Some(pull) = pull_failed {
        Phase::Ended(Outcome::Failed(pull))
    } else if pod
        .and_then(|p| p.status.as_ref()?.phase.as_deref())
        .is_some_and(|phase| phase != "Pending")
        || steps.iter().any(|(_, s)| {
            matches!(
                s,
                StepState::Running | StepState::Succeeded | StepState::Failed
            )
        })
    {
        Phase::Running
    } else {
        Phase::Waiting(waiting_reason(pod))
    };

    match &phase {
        // A complete Job ran every step well, whatever pod status was seen last.
        Phase::Ended(Outcome::Succeeded) => {
            for (_, state) in &mut steps {
                *state = StepState::Succeeded;
            }
        }
        // What never started was skipped; what was still running was stopped with the job.
        Phase::Ended(_) => {
            for (_, state) in &mut steps {
                match state {
                    StepState::Pending => *state = StepState::Skipped,
                    StepState::Running => *state = StepState::Failed,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    JobView {
        uid: job.metadata.uid.clone(),
        phase,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        let mut object = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "omni-x", "namespace": "omni-jobs"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    {"name": "fetch", "image": "fetch:1"},
                    {"name": "deps", "image": "builder:1"}
                ],
                "containers": [{"name": "build", "image": "builder:1"}]
            }}},
        });
        object["status"] = status;
        serde_json::from_value(object).unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        let mut object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "omni-x-abcde", "namespace": "omni-jobs",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "build", "image": "builder:1"}]},
        });
        object["status"] = status;
        serde_json::from_value(object).unwrap()
    }

    fn terminated(name: &str, code: i32, reason: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "reason": reason}}})
    }

    fn running(name: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": true, "restartCount": 0,
               "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}})
    }

    fn waiting(name: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "image": "registry.example/builder:9", "imageID": "", "ready": false,
               "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})
    }

    fn states(view: &JobView) -> Vec<StepState> {
        view.steps.iter().map(|(_, s)| *s).collect()
    }

    use StepState::{Failed, Pending, Running, Skipped, Succeeded};

    #[test]
    fn steps_are_init_containers_then_containers() {
        assert_eq!(step_names(&job(json!({}))), ["fetch", "deps", "build"]);
    }

    #[test]
    fn a_job_without_pods_waits_with_every_step_pending() {
        let view = view(&job(json!({})), [], false);
        assert_eq!(view.phase, Phase::Waiting(None));
        assert_eq!(states(&view), [Pending, Pending, Pending]);
    }

    #[test]
    fn an_unschedulable_pod_says_why() {
        let p = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        }]}));
        let view = view(&job(json!({"active": 1})), [&p], false);
        assert_eq!(
            view.phase,
            Phase::Waiting(Some(
                "Unschedulable: 0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
                    .into()
            ))
        );
    }

    #[test]
    fn a_running_pod_runs_its_current_step() {
        let p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [terminated("fetch", 0, "Completed"), running("deps")],
            "containerStatuses": [waiting("build", "PodInitializing", "")]}));
        let view = view(&job(json!({"active": 1})), [&p], false);
        assert_eq!(view.phase, Phase::Running);
        assert_eq!(states(&view), [Succeeded, Running, Pending]);
    }

    #[test]
    fn complete_succeeds() {
        let p = pod(json!({"phase": "Succeeded",
            "initContainerStatuses": [terminated("fetch", 0, "Completed"), terminated("deps", 0, "Completed")],
            "containerStatuses": [terminated("build", 0, "Completed")]}));
        let j = job(json!({"succeeded": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]}));
        let view = view(&j, [&p], false);
        assert_eq!(view.phase, Phase::Ended(Outcome::Succeeded));
        assert_eq!(states(&view), [Succeeded, Succeeded, Succeeded]);
    }

    #[test]
    fn a_failing_init_container_names_the_step_and_skips_the_rest() {
        let p = pod(json!({"phase": "Failed",
            "initContainerStatuses": [terminated("fetch", 3, "Error"),
                json!({"name": "deps", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                       "state": {"waiting": {"reason": "PodInitializing"}}})],
            "containerStatuses": [waiting("build", "PodInitializing", "")]}));
        let j = job(json!({"failed": 1, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}));
        let view = view(&j, [&p], false);
        assert_eq!(
            view.phase,
            Phase::Ended(Outcome::Failed(
                "BackoffLimitExceeded: Job has reached the specified backoff limit; step fetch exited with code 3"
                    .into()
            ))
        );
        assert_eq!(states(&view), [Failed, Skipped, Skipped]);
    }

    #[test]
    fn an_oom_kill_is_named() {
        let p = pod(json!({"phase": "Failed",
            "initContainerStatuses": [terminated("fetch", 0, "Completed"), terminated("deps", 0, "Completed")],
            "containerStatuses": [terminated("build", 137, "OOMKilled")]}));
        let j = job(json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
        let Phase::Ended(Outcome::Failed(message)) = view(&j, [&p], false).phase else {
            panic!("not failed");
        };
        assert!(
            message
                .ends_with("step build was killed for lack of memory (OOMKilled, exit code 137)"),
            "{message}"
        );
    }

    #[test]
    fn a_deadline_stops_the_running_step() {
        let p = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "initContainerStatuses": [terminated("fetch", 0, "Completed"), terminated("deps", 0, "Completed")],
            "containerStatuses": [running("build")]}));
        let j = job(json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]}));
        let view = view(&j, [&p], false);
        assert_eq!(
            view.phase,
            Phase::Ended(Outcome::Failed(
                "DeadlineExceeded: Job was active longer than specified deadline".into()
            ))
        );
        assert_eq!(states(&view), [Succeeded, Succeeded, Failed]);
    }

    #[test]
    fn an_eviction_is_named() {
        let p = pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage."}));
        let j = job(json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
        let Phase::Ended(Outcome::Failed(message)) = view(&j, [&p], false).phase else {
            panic!("not failed");
        };
        assert!(
            message
                .ends_with("the pod was evicted: The node was low on resource: ephemeral-storage."),
            "{message}"
        );
    }

    #[test]
    fn an_image_that_cannot_be_pulled_fails_at_once() {
        let p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [
                waiting("fetch", "ImagePullBackOff", "Back-off pulling image \"registry.example/builder:9\""),
                waiting("deps", "PodInitializing", "")],
            "containerStatuses": [waiting("build", "PodInitializing", "")]}));
        let view = view(&job(json!({"active": 1})), [&p], false);
        assert_eq!(
            view.phase,
            Phase::Ended(Outcome::Failed(
                "step fetch: image registry.example/builder:9 could not be pulled: ImagePullBackOff: Back-off pulling image \"registry.example/builder:9\"".into()
            ))
        );
        assert_eq!(states(&view), [Failed, Skipped, Skipped]);
    }

    #[test]
    fn a_deleted_job_that_had_not_ended_is_cancelled() {
        let p = pod(json!({"phase": "Running",
            "initContainerStatuses": [terminated("fetch", 0, "Completed"), terminated("deps", 0, "Completed")],
            "containerStatuses": [running("build")]}));
        let view = view(&job(json!({"active": 1})), [&p], true);
        assert!(
            matches!(view.phase, Phase::Ended(Outcome::Cancelled(_))),
            "{view:?}"
        );
        assert_eq!(states(&view), [Succeeded, Succeeded, Failed]);
    }

    #[test]
    fn the_newest_pod_counts() {
        let mut old = pod(json!({"phase": "Failed",
            "initContainerStatuses": [terminated("fetch", 1, "Error")]}));
        old.metadata.name = Some("omni-x-old".into());
        old.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2025-12-31T23:59:00Z".parse().unwrap(),
            ));
        let new = pod(json!({"phase": "Pending",
            "initContainerStatuses": [running("fetch")]}));
        let view = view(&job(json!({"active": 1, "failed": 1})), [&old, &new], false);
        assert_eq!(view.phase, Phase::Running);
        assert_eq!(states(&view), [Running, Pending, Pending]);
    }
}
