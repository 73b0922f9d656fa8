//! The plugin routes: list, one, render (a dry run: nothing is stored or run) and reload.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use omni_runtime::{FieldError, JobContext, PluginStatus, Rendered};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Caller, EVERY_DOMAIN, Role};
use crate::{AppState, Problem};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/reload", post(reload))
        .route("/{task}", get(one))
        .route("/{task}/render", post(render))
}

// Plugins are the same for every domain: any caller may see them.
async fn list(State(state): State<AppState>, _caller: Caller) -> Json<Vec<PluginStatus>> {
    Json(state.registry().list())
}

async fn one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<PluginStatus>, Problem> {
    state
        .registry()
        .status(&task)
        .map(Json)
        .ok_or_else(|| no_such_task(&task))
}

/// A reload changes every domain's task types: it takes `admin` on `*`.
async fn reload(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PluginStatus>>, Problem> {
    caller.require(Role::Admin, EVERY_DOMAIN)?;
    state.registry().rescan().await;
    Ok(Json(state.registry().list()))
}

fn no_such_task(task: &str) -> Problem {
    Problem::no_such_task(task)
}

/// `POST /v1/plugins/{task}/render`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The job's params.
    pub params: Value,
    /// API arch; `x86_64` when absent.
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Tenant domain; `default` when absent.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Submitting service; `render` when absent.
    #[serde(default = "default_service")]
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

/// Whether `name` is a service, task or domain name: lowercase letters, digits and `-`, 1 to 63.
pub fn is_name(name: &str) -> bool {
    omni_runtime::plugin::is_task_name(name)
}

async fn render(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    body: Result<Json<RenderRequest>, JsonRejection>,
) -> Result<Json<Rendered>, Problem> {
    let plugin = state
        .registry()
        .get(&task)
        .ok_or_else(|| no_such_task(&task))?;
    let Json(request) = body.map_err(|e| Problem::from_json_rejection(&e))?;
    let mut errors = Vec::new();
    for (path, value) in [("/domain", &request.domain), ("/service", &request.service)] {
        if !is_name(value) {
            errors.push(FieldError {
                path: path.into(),
                message: "must be lowercase letters, digits and '-', 1 to 63 long".into(),
            });
        }
    }
    if !request.params.is_object() {
        errors.push(FieldError {
            path: "/params".into(),
            message: "must be a JSON object".into(),
        });
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
    if !plugin.info().arches.contains(&request.arch) {
        let known = if omni_arch::is_known(&request.arch) {
            ""
        } else {
            " (not an arch Omni knows)"
        };
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported arch",
            format!(
                "task {task} builds for {}, not {:?}{known}",
                plugin.info().arches.join(", "),
                request.arch
            ),
        )
        .with_errors(vec![FieldError {
            path: "/arch".into(),
            message: "not an arch of this task".into(),
        }]));
    }
    let id = omni_store::new_job_id().to_string();
    let job = JobContext {
        name: format!("omni-{id}"),
        job_id: id,
        service: request.service,
        domain: request.domain,
        namespace: state.namespace.clone(),
        arch: request.arch,
    };
    let rendered = plugin
        .serialize(job, request.params.to_string())
        .await
        .map_err(Problem::from_plugin)?;
    Ok(Json(rendered))
}
