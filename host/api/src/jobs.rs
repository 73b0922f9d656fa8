//! The job routes: create, get, list, cancel and purge (`docs/api.md`, "Jobs"); the logs
//! route is in `logs`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use omni_core::{JobId, JobState, Name};
use omni_jobs::{Cancelled, Submission};
use omni_store::{Created, IdempotencyKey, JobQuery, token};

use crate::types::{FieldError, Job};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Caller, Role};
use crate::{AppState, Problem};

/// What a 413 on a job's body says to do instead: params are for what describes a build, not
/// for its sources.
pub(crate) const JOB_BODY_HINT: &str = ": sources this large do not belong in params; send each to POST /v1/uploads and name it by its sha256 ({\"upload\": \"<sha256>\"}; `omni submit --source FILE` does both), or build from source control (scm_url, ref, spec_path)";

/// The header that makes a submission safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(create).get(list))
        .route("/{id}", get(one).delete(cancel))
        .route("/{id}/logs", get(crate::logs::logs))
        .route("/{id}/artifacts", get(crate::artifacts::list))
        .route("/{id}/artifacts/{*name}", get(crate::artifacts::download))
        .route("/{id}/provenance", get(crate::provenance::provenance))
        .route("/{id}/render", get(crate::provenance::render))
}

/// `POST /v1/jobs`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "service": "obs",
    "task": "srpm",
    "arch": "x86_64",
    "params": {"spec": "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hi\nLicense: MIT\nBuildArch: noarch\n%description\nhi\n%files\n"}
}))]
pub struct CreateJob {
    /// The asking service.
    #[schema(value_type = crate::types::NameSchema)]
    pub service: String,
    /// The task type.
    #[schema(value_type = crate::types::NameSchema)]
    pub task: String,
    /// The tenant; `default` when absent.
    #[serde(default = "default_domain")]
    #[schema(value_type = crate::types::NameSchema, default = "default")]
    pub domain: String,
    /// The API arch; `x86_64` when absent.
    #[serde(default = "default_arch")]
    #[schema(min_length = 1, default = "x86_64")]
    pub arch: String,
    /// The task's params (an object; the task's plugin says which: `GET /v1/plugins/{task}`,
    /// `params_schema`).
    #[schema(value_type = Object)]
    pub params: Value,
    /// The version of the task's plugin to validate and render the job with
    /// (`GET /v1/plugins/{task}/versions`); the one serving now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::versions::PluginPinSchema>)]
    pub plugin: Option<crate::versions::PluginPin>,
}

fn default_domain() -> String {
    "default".to_owned()
}

fn default_arch() -> String {
    "x86_64".to_owned()
}

const NAME_RULE: &str = "must be lowercase letters, digits and '-', 1 to 63 long";

impl CreateJob {
    fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (path, value) in [
            ("/service", &self.service),
            ("/task", &self.task),
            ("/domain", &self.domain),
        ] {
            if !Name::is_valid(value) {
                errors.push(Problem::field(path, NAME_RULE));
            }
        }
        if self.arch.is_empty() {
            errors.push(Problem::field("/arch", "must not be empty"));
        }
        if !self.params.is_object() {
            errors.push(Problem::field("/params", "must be a JSON object"));
        }
        if let Some(pin) = &self.plugin {
            errors.extend(pin.check("/plugin"));
        }
        errors
    }

    /// The request's bytes with object keys sorted: two bodies that mean the same (keys in
    /// another order, defaults written out or left away) have the same fingerprint.
    fn canonical(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "service": self.service,
            "task": self.task,
            "domain": self.domain,
            "arch": self.arch,
            "params": self.params,
            "plugin": self.plugin,
        });
        omni_jobs::provenance::canonical_json(&value)
            .to_string()
            .into_bytes()
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        Problem::bad_request(
            "the Idempotency-Key header is not valid",
            vec![Problem::field(
                "/headers/idempotency-key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
            )],
        )
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// Submits a job. The same `Idempotency-Key` and body again answer 200 with the job made the
/// first time; the key with another body answers 409. Needs `submitter` in the domain.
#[utoipa::path(
    operation_id = "createJob",
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = CreateJob,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the submission safe to retry: 1 to 255 visible ASCII characters", min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$"),
    ),
    responses(
        (status = 201, description = "The job, accepted", body = Job, headers(("Location" = String, description = "`/v1/jobs/{id}`"))),
        (status = 200, description = "The job made earlier with this `Idempotency-Key` and body", body = Job, headers(("Location" = String, description = "`/v1/jobs/{id}`"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<CreateJob>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(request) =
        body.map_err(|e| Problem::from_json_rejection(&e, state.body_limit, JOB_BODY_HINT))?;
    let errors = request.check();
    if !errors.is_empty() {
        return Err(Problem::bad_request("some fields are wrong", errors));
    }
    caller.require(Role::Submitter, &request.domain)?;
    let idempotency = idempotency_key(&headers)?.map(|key| {
        // Scoped by domain, so tenants cannot collide (or probe each other's keys).
        IdempotencyKey::new(format!("{}/{key}", request.domain), &request.canonical())
    });
    let created = state
        .jobs
        .submit(Submission {
            service: request.service,
            task: request.task,
            domain: request.domain,
            arch: request.arch,
            params: request.params,
            idempotency,
            plugin: request
                .plugin
                .as_ref()
                .and_then(crate::versions::PluginPin::to_pin),
        })
        .await
        .map_err(Problem::from_jobs)?;
    let (status, job) = match created {
        Created::New(job) => (StatusCode::CREATED, job),
        Created::Existing(job) => (StatusCode::OK, job),
    };
    Ok(with_location(status, job))
}

fn with_location(status: StatusCode, job: omni_store::Job) -> Response {
    let location = format!("/v1/jobs/{}", job.id);
    let mut response = (status, Json(Job::from(job))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub(crate) fn parse_id(id: &str) -> Result<JobId, Problem> {
    JobId::parse_str(id)
        .ok()
        .filter(|id| id.get_version_num() == 1)
        .ok_or_else(|| Problem::no_such_job(id))
}

/// One job. Needs `viewer` in its domain.
#[utoipa::path(
    operation_id = "getJob",
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a v1 UUID)")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, Problem> {
    let id = parse_id(&id)?;
    visible_job(&state, &caller, id, Role::Viewer)
        .await
        .map(|job| Json(job.into()))
}

/// The job `id` if the caller has `role` in its domain; 404 (as for no job) when the caller has
/// no role there at all, 403 when too small a one.
pub(crate) async fn visible_job(
    state: &AppState,
    caller: &Caller,
    id: JobId,
    role: Role,
) -> Result<omni_store::Job, Problem> {
    let job = state.jobs.get(id).await.map_err(Problem::from_jobs)?;
    caller.require_on(role, &job.domain, || Problem::no_such_job(&id.to_string()))?;
    Ok(job)
}

/// `GET /v1/jobs` query parameters. Each is read as text and checked here, so that a wrong one
/// answers a problem naming it; the document shows what each must be.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this service's jobs.
    #[param(value_type = Option<crate::types::NameSchema>)]
    service: Option<String>,
    /// Only this task's jobs.
    #[param(value_type = Option<crate::types::NameSchema>)]
    task: Option<String>,
    /// Only this domain's jobs (403 without `viewer` there).
    #[param(value_type = Option<crate::types::NameSchema>)]
    domain: Option<String>,
    /// Only jobs in this state.
    #[param(value_type = Option<crate::types::JobStateSchema>)]
    state: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// At most this many (default 100; with `view=full`, at most 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_page_token` of the previous page (with the same filters).
    page_token: Option<String>,
    /// `summary` (the default): jobs without their params; `full`: with them (pages of at most
    /// 100), as `GET /v1/jobs/{id}` shows one.
    #[param(value_type = Option<String>, pattern = "^(summary|full)$")]
    view: Option<String>,
}

/// The most jobs a page with `view=full` holds: their params may be large (inline sources).
pub const FULL_VIEW_MAX_LIMIT: usize = 100;

/// A page of jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    /// The jobs, newest first.
    pub items: Vec<Job>,
    /// The token of the next page, if there may be one.
    pub next_page_token: Option<String>,
}

impl ListParams {
    /// The store's query, the page token, and whether to show params (`view=full`).
    fn query(self) -> Result<(JobQuery, Option<String>, bool), Vec<FieldError>> {
        let mut errors = Vec::new();
        let full = match self.view.as_deref() {
            None | Some("summary") => false,
            Some("full") => true,
            Some(_) => {
                errors.push(Problem::field("/query/view", "must be summary or full"));
                false
            }
        };
        let mut name = |path: &str, value: Option<String>| {
            value.filter(|v| {
                let ok = Name::is_valid(v);
                if !ok {
                    errors.push(Problem::field(path, NAME_RULE));
                }
                ok
            })
        };
        let service = name("/query/service", self.service);
        let task = name("/query/task", self.task);
        let domain = name("/query/domain", self.domain);
        let state = self.state.and_then(|s| match s.parse::<JobState>() {
            Ok(state) => Some(state),
            Err(e) => {
                errors.push(Problem::field("/query/state", e.to_string()));
                None
            }
        });
        let mut time = |path: &str, value: Option<String>| {
            value.and_then(|v| match DateTime::parse_from_rfc3339(&v) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(_) => {
                    errors.push(Problem::field(
                        path,
                        "must be an RFC 3339 time, e.g. 2026-11-23T20:00:00Z",
                    ));
                    None
                }
            })
        };
        let since = time("/query/since", self.since);
        let until = time("/query/until", self.until);
        let max = if full {
            FULL_VIEW_MAX_LIMIT
        } else {
            JobQuery::MAX_LIMIT
        };
        let limit = match self.limit.map(|l| l.parse::<usize>()) {
            None => JobQuery::DEFAULT_LIMIT.min(max),
            Some(Ok(limit)) if (1..=max).contains(&limit) => limit,
            Some(_) => {
                let view = if full { " with view=full" } else { "" };
                errors.push(Problem::field(
                    "/query/limit",
                    format!("must be a whole number from 1 to {max}{view}"),
                ));
                JobQuery::DEFAULT_LIMIT
            }
        };
        if errors.is_empty() {
            let query = JobQuery {
                service,
                task,
                domain,
                domains: None,
                state,
                since,
                until,
                limit,
                after: None,
            };
            Ok((query, self.page_token, full))
        } else {
            Err(errors)
        }
    }
}

/// Jobs, newest first, of the domains the caller may read.
#[utoipa::path(
    operation_id = "listJobs",
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobList>, Problem> {
    let Query(params) = params.map_err(|e| {
        Problem::bad_request(format!("the query is not valid: {}", e.body_text()), vec![])
    })?;
    let (mut query, page_token, full) = params
        .query()
        .map_err(|errors| Problem::bad_request("some query parameters are wrong", errors))?;
    query.domains = caller.readable(query.domain.as_deref())?;
    if let Some(page_token) = page_token {
        query.after = Some(token::decode(&query, &page_token).map_err(|e| {
            Problem::bad_request(
                e.to_string(),
                vec![Problem::field("/query/page_token", e.to_string())],
            )
        })?);
    }
    let page = state.jobs.list(&query).await.map_err(Problem::from_jobs)?;
    let ids: Vec<_> = page.items.iter().map(|job| job.id).collect();
    let mut items: Vec<Job> = page
        .items
        .into_iter()
        .map(|job| {
            let mut job = Job::from(job);
            if !full {
                job.params = None;
            }
            job
        })
        .collect();
    let next = crate::cut_to_fit(&mut items, &ids, state.answer_limit, page.next);
    Ok(Json(JobList {
        next_page_token: next.map(|last| token::encode(&query, last)),
        items,
    }))
}

/// `DELETE /v1/jobs/{id}` query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CancelParams {
    /// Also delete the record and its logs (needs `admin`).
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    purge: bool,
}

/// Cancels a job that has not ended (needs `submitter`), or with `purge=true` deletes it and
/// its logs (needs `admin`).
#[utoipa::path(
    operation_id = "cancelJob",
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a v1 UUID)"), CancelParams),
    responses(
        (status = 202, description = "Cancelled now", body = Job),
        (status = 200, description = "It had already ended", body = Job),
        (status = 204, description = "Purged"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<CancelParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| {
        Problem::bad_request(
            format!("the query is not valid: {}", e.body_text()),
            vec![Problem::field("/query/purge", "must be true or false")],
        )
    })?;
    let id = parse_id(&id)?;
    let role = if params.purge {
        Role::Admin
    } else {
        Role::Submitter
    };
    visible_job(&state, &caller, id, role).await?;
    if params.purge {
        state.jobs.purge(id).await.map_err(Problem::from_jobs)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    match state.jobs.cancel(id).await.map_err(Problem::from_jobs)? {
        Cancelled::Now(job) => Ok((StatusCode::ACCEPTED, Json(Job::from(job))).into_response()),
        Cancelled::AlreadyEnded(job) => Ok((StatusCode::OK, Json(Job::from(job))).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_written_defaults() {
        let a: CreateJob = serde_json::from_str(
            r#"{"service":"obs","task":"rpm","params":{"b":1,"a":{"y":2,"x":3}}}"#,
        )
        .unwrap();
        let b: CreateJob = serde_json::from_str(
            r#"{"params":{"a":{"x":3,"y":2},"b":1},"domain":"default","arch":"x86_64","task":"rpm","service":"obs"}"#,
        )
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c: CreateJob =
            serde_json::from_str(r#"{"service":"obs","task":"rpm","params":{"b":2}}"#).unwrap();
        assert_ne!(a.canonical(), c.canonical());
    }
}
