//! Errors as `application/problem+json` (RFC 9457): `{"type", "title", "status", "detail"}`,
//! plus `"errors": [{"path", "message"}]` where fields were wrong. Every handler error goes
//! through [`Problem`]; [`Problem::from_plugin`] is the one place plugin errors become HTTP.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use omni_runtime::{FieldError, PluginError};
use serde::Serialize;

/// A problem answer.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Fields that were wrong, by JSON Pointer into the request body.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
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
        }
    }

    /// Adds field errors.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// 400 for a body that is not the JSON the route takes; 413 when it is over the limit; 415
    /// without a JSON content type.
    pub fn from_json_rejection(rejection: &JsonRejection) -> Self {
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
                "the request body is over the configured limit",
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
            .with_errors(
                errors
                    .into_iter()
                    .map(|e| FieldError {
                        path: format!("/params{}", e.path),
                        message: e.message,
                    })
                    .collect(),
            ),
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

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
