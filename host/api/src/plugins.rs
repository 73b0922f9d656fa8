//! The plugin routes (`docs/api.md`, "Plugins"): list, one, render (a dry run: nothing is
//! stored or run) and reload.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use omni_core::Name;
use omni_jobs::Submission;
use omni_runtime::Registry;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Caller, EVERY_DOMAIN, Role};
use crate::types::{PluginStatus, Rendered};
use crate::{AppState, Problem};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/reload", post(reload))
        .route("/{task}", get(one))
        .route("/{task}/render", post(render))
        .route("/{task}/versions", get(crate::versions::list))
        .route("/{task}/rollback", post(crate::versions::rollback))
}

/// Every plugin file of the plugins directory and its state. Plugins are the same for every
/// domain: any caller may see them.
#[utoipa::path(
    operation_id = "listPlugins",
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "The plugins", body = Vec<PluginStatus>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<Vec<PluginStatus>> {
    Json(statuses(state.registry()))
}

/// The plugin serving `task`.
#[utoipa::path(
    operation_id = "getPlugin",
    get,
    path = "/v1/plugins/{task}",
    tag = "plugins",
    params(("task" = String, Path, description = "The task name")),
    responses(
        (status = 200, description = "The plugin", body = PluginStatus),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
    )
)]
pub(crate) async fn one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<PluginStatus>, Problem> {
    state
        .registry()
        .status(&task)
        .map(|status| Json(status.into()))
        .ok_or_else(|| no_such_task(&task))
}

/// Rescans the plugins directory now (as on SIGHUP). A reload changes every domain's task
/// types: it takes `admin` on `*`.
#[utoipa::path(
    operation_id = "reloadPlugins",
    post,
    path = "/v1/plugins/reload",
    tag = "plugins",
    responses(
        (status = 200, description = "The plugins after the rescan", body = Vec<PluginStatus>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
    )
)]
pub(crate) async fn reload(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PluginStatus>>, Problem> {
    caller.require(Role::Admin, EVERY_DOMAIN)?;
    state.registry().rescan().await;
    Ok(Json(statuses(state.registry())))
}

fn no_such_task(task: &str) -> Problem {
    Problem::no_such_task(task)
}

/// `POST /v1/plugins/{task}/render`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "arch": "x86_64",
    "params": {"spec": "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hi\nLicense: MIT\n%description\nhi\n"}
}))]
pub struct RenderRequest {
    /// The job's params (an object).
    #[schema(value_type = Object)]
    pub params: Value,
    /// API arch; `x86_64` when absent.
    #[serde(default = "default_arch")]
    #[schema(default = "x86_64")]
    pub arch: String,
    /// Tenant domain; `default` when absent.
    #[serde(default = "default_domain")]
    #[schema(value_type = crate::types::NameSchema, default = "default")]
    pub domain: String,
    /// Submitting service; `render` when absent.
    #[serde(default = "default_service")]
    #[schema(value_type = crate::types::NameSchema, default = "render")]
    pub service: String,
}

fn default_arch() -> String {
    "x86_64".to_owned()
}

fn default_domain() -> String {
    "default".to_owned()
}

fn default_service() -> String {
    "render".to_owned()
}

/// A dry run of a job: the objects the plugin renders for these params. Nothing is stored or
/// run. Needs `viewer` in the domain.
#[utoipa::path(
    operation_id = "renderJob",
    post,
    path = "/v1/plugins/{task}/render",
    tag = "plugins",
    params(("task" = String, Path, description = "The task name")),
    request_body = RenderRequest,
    responses(
        (status = 200, description = "The rendered objects", body = Rendered),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
pub(crate) async fn render(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    body: Result<Json<RenderRequest>, JsonRejection>,
) -> Result<Json<Rendered>, Problem> {
    if state.jobs.plugins().plugin(&task).is_none() {
        return Err(no_such_task(&task));
    }
    let Json(request) = body.map_err(|e| {
        Problem::from_json_rejection(&e, state.body_limit, crate::jobs::JOB_BODY_HINT)
    })?;
    let mut errors = Vec::new();
    for (path, value) in [("/domain", &request.domain), ("/service", &request.service)] {
        if !Name::is_valid(value) {
            errors.push(Problem::field(path, Name::RULE));
        }
    }
    if !request.params.is_object() {
        errors.push(Problem::field("/params", "must be a JSON object"));
    }
    if !errors.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid request",
            "some fields are wrong",
        )
        .with_errors(errors));
    }
    // A dry run stores and runs nothing: reading in the domain is enough.
    caller.require(Role::Viewer, &request.domain)?;
    let submission = Submission {
        service: request.service,
        task,
        domain: request.domain,
        arch: request.arch,
        params: request.params,
        idempotency: None,
        plugin: None,
    };
    let rendered = state
        .jobs
        .dry_run(&submission, &state.namespace)
        .await
        .map_err(Problem::from_jobs)?;
    Ok(Json(rendered.into()))
}

/// Every plugin file's status, as the API shows it.
fn statuses(registry: &Registry) -> Vec<PluginStatus> {
    registry
        .list()
        .into_iter()
        .map(PluginStatus::from)
        .collect()
}
