//! `POST /v1/uploads` and `GET /v1/uploads/{sha256}` (`docs/api.md`, "Uploads"): files sent for
//! jobs to use (sources too large for a job's body, RPMs to sign), kept by content in a domain
//! and named from a job's params as `{"upload": "<sha256>"}`. The body is the file's bytes,
//! streamed into the artifact store, with a size limit of its own (`[uploads] max_mib`), not
//! the JSON body limit; its sha256, when the caller gives it, is checked while it streams.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use omni_artifacts::Sha256;
use omni_core::Name;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Role};
use crate::{AppState, Problem};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(create))
        .route("/{sha256}", get(one))
}

/// The route whose handler reads a body for as long as it flows: the request timeout does
/// not apply to it; [`IDLE`] without a byte does.
pub(crate) const UPLOAD_PATH: &str = "/v1/uploads";

/// How long an upload's body may send nothing before it is given up.
pub const IDLE: Duration = Duration::from_secs(60);

/// A file kept for a domain's jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Upload {
    /// The domain whose jobs may use it.
    pub domain: String,
    /// The sha256 of its bytes, lowercase hex: what a job's params name it by.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was first stored.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Until when it is kept: sent again, or used by a job, it is kept longer.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Its record.
    pub url: String,
}

impl From<omni_store::Upload> for Upload {
    fn from(upload: omni_store::Upload) -> Self {
        Upload {
            url: format!("/v1/uploads/{}?domain={}", upload.sha256, upload.domain),
            domain: upload.domain,
            sha256: upload.sha256,
            size: upload.size,
            created_at: upload.created_at,
            expires_at: upload.expires_at,
        }
    }
}

/// The query of `POST /v1/uploads`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateParams {
    /// The domain whose jobs will use it.
    #[param(value_type = String, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    domain: String,
    /// The sha256 of the body (64 hex digits), checked while it streams: a body of other bytes
    /// is refused (422) and nothing is kept.
    #[param(value_type = Option<String>, pattern = "^[0-9a-fA-F]{64}$")]
    sha256: Option<String>,
}

/// The query of `GET /v1/uploads/{sha256}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OneParams {
    /// The domain it was sent to.
    #[param(value_type = String, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    domain: String,
}

fn check_domain(domain: &str) -> Result<(), Problem> {
    if Name::is_valid(domain) {
        Ok(())
    } else {
        Err(Problem::bad_request(
            format!("domain {domain:?} {}", Name::RULE),
            vec![Problem::field("/query/domain", Name::RULE)],
        ))
    }
}

fn query_problem(rejection: &QueryRejection) -> Problem {
    Problem::bad_request(
        format!("the query is not valid: {}", rejection.body_text()),
        vec![],
    )
}

/// Stores a file for a domain's jobs, streamed: the body is the file's bytes (any content
/// type), kept by its sha256. Sending bytes the domain has already keeps them longer and
/// answers 200; new ones answer 201. Needs `submitter` in the domain.
#[utoipa::path(
    operation_id = "createUpload",
    post,
    path = "/v1/uploads",
    tag = "jobs",
    params(CreateParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = Upload,
         headers(("Location" = String, description = "The upload's record"))),
        (status = 200, description = "The domain had these bytes already; they are kept longer", body = Upload),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<CreateParams>, QueryRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| query_problem(&e))?;
    check_domain(&params.domain)?;
    caller.require(Role::Submitter, &params.domain)?;
    let sha256 = params
        .sha256
        .as_deref()
        .map(|text| {
            text.parse::<Sha256>().map_err(|_| {
                Problem::bad_request(
                    "sha256 must be 64 hex digits",
                    vec![Problem::field("/query/sha256", "must be 64 hex digits")],
                )
            })
        })
        .transpose()?;
    let stream = idle_limited(body.into_data_stream(), IDLE)
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed();
    let (upload, fresh) = state
        .jobs
        .put_upload(&params.domain, stream, sha256)
        .await
        .map_err(Problem::from_jobs)?;
    let upload = Upload::from(upload);
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = upload.url.clone();
    let mut response = (status, Json(upload)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// An upload's record, while it is kept. Needs `viewer` in the domain.
#[utoipa::path(
    operation_id = "getUpload",
    get,
    path = "/v1/uploads/{sha256}",
    tag = "jobs",
    params(("sha256" = String, Path, description = "The upload's sha256 (64 hex digits)"), OneParams),
    responses(
        (status = 200, description = "The upload", body = Upload),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha256): Path<String>,
    params: Result<Query<OneParams>, QueryRejection>,
) -> Result<Json<Upload>, Problem> {
    let Query(params) = params.map_err(|e| query_problem(&e))?;
    check_domain(&params.domain)?;
    // A domain the caller may not see has no uploads, as far as the caller can tell.
    let missing = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no such upload",
            format!("no upload {sha256:?} in domain {:?}", params.domain),
        )
    };
    if caller.require(Role::Viewer, &params.domain).is_err() {
        return Err(missing());
    }
    match state.jobs.get_upload(&params.domain, &sha256).await {
        Ok(upload) => Ok(Json(upload.into())),
        Err(omni_jobs::JobError::NoSuchUpload { .. }) => Err(missing()),
        Err(error) => Err(Problem::from_jobs(error)),
    }
}

/// `stream`, failing once it sends nothing for `idle`: a client that stops sending holds the
/// upload (and its connection) no longer than that.
fn idle_limited<S, T>(
    stream: S,
    idle: Duration,
) -> impl futures::Stream<Item = Result<T, axum::Error>> + Send + 'static
where
    S: futures::Stream<Item = Result<T, axum::Error>> + Send + Unpin + 'static,
    T: Send + 'static,
{
    futures::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the body sent nothing for {idle:?}"),
                ))),
                None,
            )),
        }
    })
}
