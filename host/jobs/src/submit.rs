//! Submissions and renders: where the job service asks a task's plugin (validation when a job
//! is made, `serialize` when it is rendered for an engine or a dry run), in one place so that
//! the API and the scheduler build a job's [`JobContext`] the same way.

use std::sync::Arc;

use omni_core::{JobContext, Rendered, TaskPlugin};
use omni_store::{Created, IdempotencyKey, Job, JobState, PluginRef, StateChange, Step, StepState};

use crate::{JobError, JobService};

/// A job to make.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The asking service.
    pub service: String,
    /// The task type.
    pub task: String,
    /// The tenant.
    pub domain: String,
    /// The API arch.
    pub arch: String,
    /// The task's params (a JSON object).
    pub params: serde_json::Value,
    /// The client's idempotency key, if it sent one.
    pub idempotency: Option<IdempotencyKey>,
    /// The version of the task's plugin to validate and render it with; the serving one when
    /// `None`.
    pub plugin: Option<Pin>,
}

/// A version of a task's plugin a submission asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The version the plugin calls itself (the serving one if it is that version, else the
    /// most recently kept one that is).
    Version(String),
    /// The sha256 of its component.
    Digest(String),
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Version(version) => write!(f, "version {version:?}"),
            Pin::Digest(digest) => write!(f, "sha256 {digest}"),
        }
    }
}

impl JobService {
    /// Renders a job's objects for `namespace` with the version of its task's plugin that
    /// accepted it (the component with the digest the job records), whatever serves the task
    /// now: a plugin replaced between submission and start does not change what the job runs.
    ///
    /// # Errors
    /// [`JobError::VersionGone`] when that version is no longer kept; [`JobError::Plugin`]
    /// when it fails.
    pub async fn render(&self, job: &Job, namespace: &str) -> Result<Rendered, JobError> {
        let accepted = &job.plugin;
        let plugin = match &accepted.templates {
            Some(templates) => {
                self.plugins
                    .version_with_templates(&job.task, &accepted.digest, templates)
                    .await
            }
            None => self.plugins.version(&job.task, &accepted.digest).await,
        }
        .ok_or_else(|| JobError::VersionGone {
            task: job.task.clone(),
            version: accepted.version.clone(),
            digest: accepted.digest.clone(),
        })?;
        let context = JobContext::new(job.id, &job.service, &job.domain, namespace, &job.arch);
        Ok(plugin.serialize(context, job.params.to_string()).await?)
    }

    /// A dry run of a job: what its task's plugin renders for `params`, under a new id, with
    /// nothing stored or run.
    ///
    /// # Errors
    /// [`JobError::NoSuchTask`]; [`JobError::UnsupportedArch`] when the plugin does not build
    /// for `arch`; [`JobError::Plugin`] when it rejects the params or fails.
    pub async fn dry_run(
        &self,
        submission: &Submission,
        namespace: &str,
    ) -> Result<Rendered, JobError> {
        let plugin = self.plugin_for(&submission.task, &submission.arch)?;
        let context = JobContext::new(
            omni_core::new_job_id(),
            &submission.service,
            &submission.domain,
            namespace,
            &submission.arch,
        );
        Ok(plugin
            .serialize(context, submission.params.to_string())
            .await?)
    }

    /// Validates a submission with its task's plugin and stores it as a `pending` job. With an
    /// idempotency key seen before (same request), returns the job it made.
    ///
    /// # Errors
    /// [`JobError::NoSuchTask`], [`JobError::UnsupportedArch`], [`JobError::Plugin`] (with the
    /// field errors when the params are wrong), [`JobError::BadUploads`] when they name uploads
    /// the domain does not have, [`JobError::Store`] (unavailable, or the key was
    /// used for another request).
    pub async fn submit(&self, submission: Submission) -> Result<Created, JobError> {
        let task = submission.task.clone();
        let created = self.submit_unmeasured(submission).await;
        crate::metrics::submission(
            &task,
            created.as_ref().map(|c| matches!(c, Created::New(_))),
        );
        created
    }

    /// The plugin serving `task` now, if it builds for `arch`.
    fn plugin_for(&self, task: &str, arch: &str) -> Result<Arc<dyn TaskPlugin>, JobError> {
        let plugin = self
            .plugins
            .plugin(task)
            .ok_or_else(|| JobError::NoSuchTask(task.to_owned()))?;
        Self::builds_for(plugin, task, arch)
    }

    /// The version of `task`'s plugin `pin` names (the serving one without a pin), if it
    /// builds for `arch`.
    async fn pinned_for(
        &self,
        task: &str,
        arch: &str,
        pin: Option<&Pin>,
    ) -> Result<Arc<dyn TaskPlugin>, JobError> {
        let Some(pin) = pin else {
            return self.plugin_for(task, arch);
        };
        let digest = match pin {
            Pin::Digest(digest) => Some(digest.clone()),
            Pin::Version(version) => self.plugins.digest_of(task, version),
        };
        let found = match digest {
            Some(digest) => self.plugins.version(task, &digest).await,
            None => None,
        };
        match found {
            Some(plugin) => Self::builds_for(plugin, task, arch),
            None if self.plugins.plugin(task).is_none() => {
                Err(JobError::NoSuchTask(task.to_owned()))
            }
            None => Err(JobError::NoSuchVersion {
                task: task.to_owned(),
                pin: pin.clone(),
            }),
        }
    }

    fn builds_for(
        plugin: Arc<dyn TaskPlugin>,
        task: &str,
        arch: &str,
    ) -> Result<Arc<dyn TaskPlugin>, JobError> {
        let supported = &plugin.info().arches;
        if !supported.iter().any(|a| a == arch) {
            return Err(JobError::UnsupportedArch {
                task: task.to_owned(),
                arch: arch.to_owned(),
                supported: supported.clone(),
            });
        }
        Ok(plugin)
    }

    async fn submit_unmeasured(&self, submission: Submission) -> Result<Created, JobError> {
        let plugin = self
            .pinned_for(
                &submission.task,
                &submission.arch,
                submission.plugin.as_ref(),
            )
            .await?;
        let info = plugin.info();
        if let Some(dispatch) = self.dispatch.get() {
            let served = dispatch.arches();
            if !served.contains(&submission.arch) {
                return Err(JobError::NoEngine {
                    arch: submission.arch,
                    served,
                });
            }
        }
        // The templates as they are when the plugin checks the params: the job renders with
        // this set, whatever the templates are when it starts.
        let templates = self.plugins.templates(&submission.task).await;
        plugin.validate(submission.params.to_string()).await?;
        // The uploads the params name exist in the job's domain, and are kept as long as it.
        self.keep_uploads(&submission.domain, &submission.params)
            .await?;
        let id = omni_store::new_job_id();
        // The creation time is the id's, to the millisecond: listings ordered by id are ordered
        // by creation time.
        let created_at = omni_store::id_time(id).map_or_else(omni_store::now, |t| {
            chrono::SubsecRound::trunc_subsecs(t, 3)
        });
        let job = Job {
            rendering: None,
            id,
            service: submission.service,
            task: submission.task,
            domain: submission.domain,
            arch: submission.arch,
            state: JobState::Pending,
            params: submission.params,
            plugin: PluginRef {
                task: info.task.clone(),
                version: info.version.clone(),
                digest: plugin.digest().to_owned(),
                templates,
            },
            engine: None,
            message: None,
            steps: info
                .steps
                .iter()
                .map(|name| Step {
                    name: name.clone(),
                    state: StepState::Pending,
                })
                .collect(),
            created_at,
            updated_at: created_at,
            started_at: None,
            finished_at: None,
        };
        let created = self
            .store
            .create_job(&job, submission.idempotency.as_ref())
            .await?;
        if let Created::New(job) = &created {
            let change = StateChange {
                job_id: job.id,
                seq: 0,
                from: None,
                to: JobState::Pending,
                time: job.created_at,
                message: None,
            };
            self.publish(job, &change);
        }
        Ok(created)
    }
}
