//! Plugin versions (`docs/api.md`, "Plugin versions"): the versions of a task's plugin the
//! server keeps, a rollback to one of them, and the pin a submission may name.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use omni_jobs::Pin;
use omni_runtime::versions::{RollbackError, is_digest};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, EVERY_DOMAIN, Role};
use crate::types::{FieldError, PluginStatus};
use crate::{AppState, Problem};

/// The longest version a pin may name (plugins' versions are short: `1.4.2`).
const MAX_VERSION_LEN: usize = 128;

/// Which version of the task's plugin: exactly one of `version` and `digest`. Read as one
/// object with both optional, so that a wrong one is answered field by field
/// ([`PluginPin::check`]); documented as what it must be ([`PluginPinSchema`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginPin {
    /// The version the plugin calls itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The SHA-256 of its component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A version of a task's plugin: by the version it calls itself (the serving one if it is that
/// version, else the most recently kept one that is) or by the SHA-256 of its component.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = PluginPin, example = json!({"version": "0.1.0"}))]
#[allow(dead_code)] // Only its schema is used.
pub enum PluginPinSchema {
    /// By version.
    ByVersion(PinByVersion),
    /// By digest.
    ByDigest(PinByDigest),
}

/// A plugin version by the version it calls itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub struct PinByVersion {
    /// The version the plugin calls itself.
    #[schema(min_length = 1, max_length = 128)]
    version: String,
}

/// A plugin version by the SHA-256 of its component.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub struct PinByDigest {
    /// 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    digest: String,
}

impl PluginPin {
    /// What is wrong with it, each field under `at` (`/plugin`).
    pub(crate) fn check(&self, at: &str) -> Vec<FieldError> {
        match (&self.version, &self.digest) {
            (Some(_), Some(_)) | (None, None) => vec![Problem::field(
                at,
                "must name exactly one of `version` and `digest`",
            )],
            (Some(version), None) if version.is_empty() || version.len() > MAX_VERSION_LEN => {
                vec![Problem::field(
                    &format!("{at}/version"),
                    format!("must be 1 to {MAX_VERSION_LEN} bytes long"),
                )]
            }
            (None, Some(digest)) if !is_digest(digest) => vec![Problem::field(
                &format!("{at}/digest"),
                "must be a SHA-256: 64 lowercase hex digits",
            )],
            _ => Vec::new(),
        }
    }

    /// The job service's pin (after [`PluginPin::check`] found nothing wrong).
    pub(crate) fn to_pin(&self) -> Option<Pin> {
        match (&self.version, &self.digest) {
            (Some(version), None) => Some(Pin::Version(version.clone())),
            (None, Some(digest)) => Some(Pin::Digest(digest.clone())),
            _ => None,
        }
    }
}

/// One kept version of a task's plugin.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PluginVersion {
    /// The version it calls itself.
    pub version: String,
    /// The SHA-256 of its component.
    pub digest: String,
    /// When this server's data directory first kept it.
    pub kept_at: DateTime<Utc>,
    /// Whether it is the version serving the task now.
    pub serving: bool,
}

/// The versions of `task`'s plugin this server keeps, the most recently kept first: the one
/// serving, and the earlier ones that jobs may pin and an admin may roll back to.
#[utoipa::path(
    operation_id = "listPluginVersions",
    get,
    path = "/v1/plugins/{task}/versions",
    tag = "plugins",
    params(("task" = String, Path, description = "The task name")),
    responses(
        (status = 200, description = "The kept versions", body = Vec<PluginVersion>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Vec<PluginVersion>>, Problem> {
    let registry = state.registry();
    let serving = registry.get(&task).map(|p| p.digest().to_owned());
    let kept = registry.versions(&task);
    if serving.is_none() && kept.is_empty() {
        return Err(Problem::no_such_task(&task));
    }
    Ok(Json(
        kept.into_iter()
            .map(|k| PluginVersion {
                serving: serving.as_deref() == Some(k.digest.as_str()),
                version: k.version,
                digest: k.digest,
                kept_at: k.kept_at,
            })
            .collect(),
    ))
}

/// Makes a kept version of `task`'s plugin the one serving it: its component is written over
/// the task's file in the plugins directory (as an operator's own rename would be) and loaded.
/// New jobs use it; jobs already made keep the version that accepted them. It changes every
/// domain's task: it takes `admin` on `*`.
#[utoipa::path(
    operation_id = "rollbackPlugin",
    post,
    path = "/v1/plugins/{task}/rollback",
    tag = "plugins",
    params(("task" = String, Path, description = "The task name")),
    request_body = PluginPinSchema,
    responses(
        (status = 200, description = "The plugin now serving", body = PluginStatus),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 500, response = crate::openapi::Internal),
    )
)]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    body: Result<Json<PluginPin>, JsonRejection>,
) -> Result<Json<PluginStatus>, Problem> {
    caller.require(Role::Admin, EVERY_DOMAIN)?;
    let Json(pin) = body.map_err(|e| Problem::from_json_rejection(&e, state.body_limit, ""))?;
    let errors = pin.check("");
    let Some(asked) = pin.to_pin().filter(|_| errors.is_empty()) else {
        return Err(Problem::bad_request("some fields are wrong", errors));
    };
    let no_such_version = || Problem::no_such_version(&task, &asked, "");
    let registry = state.registry();
    if registry.get(&task).is_none() && registry.versions(&task).is_empty() {
        return Err(Problem::no_such_task(&task));
    }
    let digest = match &asked {
        Pin::Digest(digest) => Some(digest.clone()),
        Pin::Version(version) => registry.digest_of(&task, version),
    };
    let Some(digest) = digest else {
        return Err(no_such_version());
    };
    let registry = std::sync::Arc::clone(registry);
    let (task_, digest_) = (task.clone(), digest);
    let done = tokio::task::spawn_blocking(move || registry.rollback(&task_, &digest_))
        .await
        .unwrap_or_else(|e| Err(RollbackError::Load(format!("the rollback stopped: {e}"))));
    match done {
        Ok(()) => state
            .registry()
            .status(&task)
            .map(|status| Json(status.into()))
            .ok_or_else(|| Problem::no_such_task(&task)),
        Err(RollbackError::NotKept { .. }) => Err(no_such_version()),
        Err(error) => {
            tracing::error!(task, %error, "a rollback failed");
            // Only an admin of every domain gets here: the reason is theirs to see.
            Err(Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "rollback failed",
                error.to_string(),
            ))
        }
    }
}
