//! Errors as `application/problem+json` (RFC 9457): `{"type", "title", "status", "detail"}`,
//! plus `"errors": [{"path", "message"}]` where fields were wrong. Every handler error goes
//! through [`Problem`]; [`Problem::from_plugin`] is the one place plugin errors become HTTP.
//! `docs/api.md`, "Errors", lists every status and title a client can get.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use omni_core::PluginError;
use omni_jobs::JobError;
use omni_store::StoreError;

use crate::types::FieldError;

/// What `Retry-After` says when the store is unavailable.
pub const RETRY_AFTER_SECS: u32 = 2;
use serde::Serialize;

/// A problem answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Fields that were wrong, by JSON Pointer into the request body.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
    /// Seconds after which a retry may succeed (`Retry-After`, with 503).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem of `status` with a title and detail; its type is derived from the title.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://omni.build/problems/{}", title.replace(' ', "-")),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// One field error under `path`.
    pub fn field(path: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// 400 with field errors.
    pub fn bad_request(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid request", detail).with_errors(errors)
    }

    /// 404 for a job id that names no job (or is not an id at all).
    pub fn no_such_job(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such job", format!("no job {id}"))
    }

    /// A store failure: 503 with `Retry-After` when it is unreachable (the client may retry; the
    /// service recovers by itself), 500 for damaged data; 409 for an idempotency key reused with
    /// another request.
    pub fn from_store(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %error, "store unavailable");
                let mut problem = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store unavailable",
                    "the job store cannot be reached; retry later",
                );
                problem.retry_after = Some(RETRY_AFTER_SECS);
                problem
            }
            StoreError::IdempotencyConflict { key, job_id } => Self::new(
                StatusCode::CONFLICT,
                "idempotency key reused",
                format!(
                    "Idempotency-Key {key:?} was used for another request (it made job {job_id})"
                ),
            ),
            StoreError::NotFound(id) => Self::no_such_job(&id.to_string()),
            StoreError::BadEventId(id) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid request",
                format!("{id:?} is not an event id of this server"),
            ),
            other => {
                tracing::error!(error = %other, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    "the server failed; the error is in its log",
                )
            }
        }
    }

    /// The job service's refusals, status by status.
    pub fn from_jobs(error: JobError) -> Self {
        match error {
            JobError::NoSuchTask(task) => Self::no_such_task(&task),
            JobError::UnsupportedArch {
                task,
                arch,
                supported,
            } => {
                let known = if omni_arch::is_known(&arch) {
                    ""
                } else {
                    " (not an arch Omni knows)"
                };
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unsupported arch",
                    format!(
                        "task {task} builds for {}, not {arch:?}{known}",
                        supported.join(", ")
                    ),
                )
                .with_errors(vec![Self::field("/arch", "not an arch of this task")])
            }
            JobError::NoEngine { arch, served } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no engine for the arch",
                format!(
                    "no engine runs jobs for {arch:?}; the engines run {}",
                    if served.is_empty() {
                        "nothing".to_owned()
                    } else {
                        served.join(", ")
                    }
                ),
            )
            .with_errors(vec![Self::field(
                "/arch",
                "no engine runs jobs for this arch",
            )]),
            JobError::Plugin(error) => Self::from_plugin(error),
            JobError::NoSuchVersion { task, pin } => Self::no_such_version(&task, &pin, "/plugin"),
            error @ JobError::VersionGone { .. } => Self::new(
                StatusCode::CONFLICT,
                "plugin version gone",
                error.to_string(),
            ),
            JobError::NotFound(id) => Self::no_such_job(&id.to_string()),
            JobError::Illegal { id, from, to } => Self::new(
                StatusCode::CONFLICT,
                "illegal transition",
                format!("job {id} is {from} and cannot become {to}"),
            ),
            JobError::NoSuchStep { id, step, steps } => Self::bad_request(
                format!(
                    "job {id} has no step {step:?}; its steps are {}",
                    steps.join(", ")
                ),
                vec![Self::field("/query/step", "not a step of this job")],
            ),
            JobError::Store(error) => Self::from_store(error),
            JobError::NoSuchArtifact { id, name } => Self::new(
                StatusCode::NOT_FOUND,
                "no such artifact",
                format!("job {id} has no artifact {name:?}"),
            ),
            JobError::BadArtifactName { name, reason } => Self::bad_request(
                format!("{name:?} is not an artifact name: {reason}"),
                vec![Self::field("/path/name", "not an artifact name")],
            ),
            JobError::Artifacts(error) => Self::from_artifacts(error),
            JobError::NoSuchUpload { domain, sha256 } => Self::new(
                StatusCode::NOT_FOUND,
                "no such upload",
                format!("no upload {sha256:?} in domain {domain:?}"),
            ),
            JobError::BadUploads(errors) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no such upload",
                "the params name uploads the domain does not have (send each to POST /v1/uploads \
                 first; an upload no job uses expires)",
            )
            .with_errors(under_params(errors)),
        }
    }

    /// The artifact store's refusals and failures: 413 past a size limit, 422 for bytes of
    /// another sha256 than the one announced, 416 for a range that selects nothing, 400 for
    /// a bad name or a body that broke off, 503 with `Retry-After` when the store fails.
    pub fn from_artifacts(error: omni_artifacts::ArtifactError) -> Self {
        use omni_artifacts::ArtifactError as E;
        match error {
            E::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
                format!("the body is over the limit of {limit} bytes"),
            ),
            error @ E::Sha256Mismatch { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sha256 mismatch",
                error.to_string(),
            ),
            error @ E::RangeNotSatisfiable { .. } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable",
                error.to_string(),
            ),
            error @ (E::InvalidKey { .. } | E::Body(_)) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid request",
                error.to_string(),
            ),
            E::NotFound { key } => Self::new(
                StatusCode::NOT_FOUND,
                "no such artifact",
                format!("no artifact {key:?}"),
            ),
            other => {
                tracing::warn!(error = %other, "artifact store failed");
                let mut problem = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "artifact store unavailable",
                    "the artifact store failed; retry later (the error is in the server's log)",
                );
                problem.retry_after = Some(RETRY_AFTER_SECS);
                problem
            }
        }
    }

    /// 422 for a pin no kept version of `task`'s plugin matches; the field is under `at`.
    pub fn no_such_version(task: &str, pin: &omni_jobs::Pin, at: &str) -> Self {
        let field = match pin {
            omni_jobs::Pin::Version(_) => "version",
            omni_jobs::Pin::Digest(_) => "digest",
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no such plugin version",
            format!("no version of task {task}'s plugin with {pin} is kept"),
        )
        .with_errors(vec![Self::field(
            &format!("{at}/{field}"),
            "no such version is kept",
        )])
    }

    /// 404 for a task no plugin serves.
    pub fn no_such_task(task: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no such task",
            format!("no plugin is loaded for task {task:?}"),
        )
    }

    /// Adds field errors.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// 400 for a body that is not the JSON the route takes; 413 when it is over `limit` bytes
    /// (its detail names the limit and ends with `hint`, what to do instead); 415 without a
    /// JSON content type.
    pub fn from_json_rejection(rejection: &JsonRejection, limit: usize, hint: &str) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid JSON", e.body_text())
            }
            JsonRejection::JsonDataError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid request", e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                "send the body as application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
                format!(
                    "the request body is over this server's limit of {} KiB (body_limit_kib){hint}",
                    limit >> 10
                ),
            ),
            other => Self::new(other.status(), "invalid request", other.body_text()),
        }
    }

    /// A plugin's failure: 422 when the caller's params were wrong (field errors under
    /// `/params`), 500 otherwise, with the plugin's own message — it names the plugin and says
    /// what the operator must fix, and holds nothing of the host's internals.
    pub fn from_plugin(error: PluginError) -> Self {
        match error {
            PluginError::InvalidParams { plugin, errors } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid params",
                format!("plugin {plugin} rejected the params"),
            )
            .with_errors(under_params(errors)),
            other => {
                tracing::warn!(kind = other.kind(), "{other}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "plugin failed",
                    other.to_string(),
                )
            }
        }
    }
}

/// Field errors of a job's params, their paths made the request's (under `/params`).
fn under_params(errors: Vec<omni_core::FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|e| FieldError {
            path: format!("/params{}", e.path),
            message: e.message,
        })
        .collect()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"omni\""),
            );
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
