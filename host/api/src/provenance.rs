//! `GET /v1/jobs/{id}/provenance` and `GET /v1/jobs/{id}/render` (`docs/api.md`,
//! "Provenance"): how a job was built, as an in-toto statement with a SLSA provenance
//! predicate, and its objects rendered again by the plugin version and template set it
//! records, byte for byte what its engine was given. Whoever may see the job may read both.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{Caller, Role};
use crate::types::Rendered;
use crate::{AppState, Problem};

/// The media type of an in-toto statement.
pub const STATEMENT_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// The job's provenance: an in-toto statement (v1) whose subjects are its artifacts, with a
/// SLSA provenance (v1) predicate: its params, the uploads they name, the plugin's version and
/// digest, the template set's digest, each rendered object's sha256 and the images (recorded
/// when the job was given its engine), the engine, its times and its state. Needs `viewer` in
/// the job's domain.
#[utoipa::path(
    operation_id = "getJobProvenance",
    get,
    path = "/v1/jobs/{id}/provenance",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a v1 UUID)")),
    responses(
        (status = 200, description = "The in-toto statement", content_type = "application/vnd.in-toto+json", body = Object),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn provenance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = crate::jobs::parse_id(&id)?;
    crate::jobs::visible_job(&state, &caller, id, Role::Viewer).await?;
    let statement = state
        .jobs
        .provenance(id)
        .await
        .map_err(Problem::from_jobs)?;
    let mut response = Json(statement).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STATEMENT_MEDIA_TYPE),
    );
    Ok(response)
}

/// The job's objects rendered again by the plugin version and template set it records, for
/// the namespace it was rendered for (the server's `namespace` before it was): byte for byte
/// what its engine was given, whatever plugin serves the task now. Needs `viewer` in the job's
/// domain; 409 `plugin version gone` when that version is no longer kept.
#[utoipa::path(
    operation_id = "rerenderJob",
    get,
    path = "/v1/jobs/{id}/render",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a v1 UUID)")),
    responses(
        (status = 200, description = "The objects, as rendered for the job's engine", body = Rendered),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn render(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Rendered>, Problem> {
    let id = crate::jobs::parse_id(&id)?;
    let job = crate::jobs::visible_job(&state, &caller, id, Role::Viewer).await?;
    let rendered = state
        .jobs
        .rerender(&job, &state.namespace)
        .await
        .map_err(Problem::from_jobs)?;
    Ok(Json(rendered.into()))
}
