//! The API's OpenAPI 3.1 document, derived from the code: every handler carries a
//! `#[utoipa::path]` (its parameters, bodies, answers and the errors it can give), every type it
//! takes or answers derives `ToSchema`, and [`ApiDoc`] lists them. Served open (no credentials,
//! like `/healthz`) at `GET /v1/openapi.json`, with Swagger UI over it at `/v1/swagger/`.
//!
//! The contract test (`host/omni/tests/contract.rs`) runs schemathesis against a real server
//! with this document: a route answering something the document does not say fails it.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::AppState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";
/// Where Swagger UI is served.
pub const SWAGGER_PATH: &str = "/v1/swagger";

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Omni",
        description = "Omni's HTTP API (v1): jobs, their logs, job-change events and webhooks, \
            and the task-type plugins. JSON in and out; times are RFC 3339 UTC; job ids are \
            time-based UUIDs (v1). Every error is `application/problem+json`. Without users or \
            tokens configured the server runs without auth (loopback only) and every caller is \
            an admin.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        crate::jobs::create,
        crate::jobs::list,
        crate::jobs::one,
        crate::jobs::cancel,
        crate::logs::logs,
        crate::artifacts::list,
        crate::artifacts::download,
        crate::provenance::provenance,
        crate::provenance::render,
        crate::uploads::create,
        crate::uploads::one,
        crate::events::stream,
        crate::webhooks::create,
        crate::webhooks::list,
        crate::webhooks::one,
        crate::webhooks::remove,
        crate::plugins::list,
        crate::plugins::one,
        crate::plugins::render,
        crate::plugins::reload,
        crate::versions::list,
        crate::versions::rollback,
        crate::healthz,
        crate::readyz,
        crate::metrics::metrics,
        openapi_json,
    ),
    components(
        schemas(crate::Problem, Readiness, EngineReadiness),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            TooManyRequests,
            Unavailable,
            Internal
        )
    ),
    modifiers(&SecuritySchemes),
    security(("basic" = []), ("bearer" = [])),
    tags(
        (name = "jobs", description = "Submit, list, show, cancel and purge jobs; read their logs and download their artifacts; upload files for jobs to use."),
        (name = "events", description = "Job state changes as server-sent events or pages, and webhooks."),
        (name = "plugins", description = "The loaded task types: list, show, dry-run render, reload."),
        (name = "operations", description = "Health, readiness and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the two ways to authenticate: HTTP Basic (users) and bearer tokens.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document's JSON, made once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|error| format!("{{\"error\": {:?}}}", error.to_string()))
    })
}

/// `GET /v1/openapi.json` and Swagger UI under `/v1/swagger/`, both open.
pub(crate) fn routes() -> Router<AppState> {
    let swagger = utoipa_swagger_ui::SwaggerUi::new(SWAGGER_PATH)
        .config(utoipa_swagger_ui::Config::new([OPENAPI_PATH]));
    Router::new()
        .route(OPENAPI_PATH, get(openapi_json))
        .merge(swagger)
}

/// This document (open: no credentials needed).
#[utoipa::path(
    operation_id = "getOpenApi",
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document(),
    )
        .into_response()
}

/// What `GET /readyz` answers when ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(pattern = "^ready$")]
    pub status: String,
    /// The store's kind (`embedded`, `cassandra`).
    pub store: String,
    /// Each engine and whether it can take jobs now.
    pub engines: Vec<EngineReadiness>,
}

/// One engine in `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EngineReadiness {
    /// Its configured name.
    pub name: String,
    /// `local` or `kubernetes`.
    pub kind: String,
    /// The API arches it runs.
    pub arches: Vec<String>,
    /// How many jobs it runs at once.
    #[schema(minimum = 0)]
    pub max_running: u64,
    /// Whether it answered its check.
    pub ready: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
}

/// A problem answer of `status` described by `description`.
fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

macro_rules! problem_response {
    ($name:ident, $description:expr) => {
        problem_response!($name, $description, |r| r);
    };
    ($name:ident, $description:expr, $extra:expr) => {
        #[doc = $description]
        #[derive(Debug)]
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
                let extra: fn(ResponseBuilder) -> ResponseBuilder = $extra;
                (
                    stringify!($name),
                    RefOr::T(extra(problem($description)).build()),
                )
            }
        }
    };
}

problem_response!(
    BadRequest,
    "The request is not valid: the body is not JSON, a field or query parameter is missing or \
     has the wrong type or format (`errors` lists them by JSON Pointer: `/field`, \
     `/query/name`, `/headers/name`)"
);
problem_response!(Unauthorized, "No credentials, or wrong ones", |r| r.header(
    "WWW-Authenticate",
    HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String)
        ))
        .description(Some("`Basic realm=\"omni\"`"))
        .build()
));
problem_response!(
    Forbidden,
    "The caller's role in the domain does not allow this"
);
problem_response!(
    NotFound,
    "No such job, webhook or task (or one in a domain where the caller has no role)"
);
problem_response!(
    Conflict,
    "An `Idempotency-Key` reused with a different body, a move the job's state does not allow, \
     or a domain that has as many webhooks as it may have"
);
problem_response!(
    PayloadTooLarge,
    "The body is larger than the configured limit (default 1 MiB)"
);
problem_response!(
    UnsupportedMediaType,
    "The body was not sent as `application/json`"
);
problem_response!(
    Unprocessable,
    "The plugin rejected the params (`errors` lists them under `/params`), the task does not \
     build for the arch, no engine runs the arch, or a webhook's URL names an address webhooks \
     may not reach (`/url`)"
);
/// The `Retry-After` header of an answer the client may retry.
fn retry_after(response: ResponseBuilder) -> ResponseBuilder {
    response.header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some("Seconds after which a retry may succeed"))
            .build(),
    )
}

problem_response!(
    TooManyRequests,
    "Too many wrong passwords or tokens for this user name or from this address (a sign-in is \
     refused before its credentials are checked), or, for a stream, the caller holds the most \
     event and log streams one caller may (`[http] max_streams_per_caller`); retry after \
     `Retry-After` seconds",
    retry_after
);
problem_response!(
    Unavailable,
    "The store cannot be reached, or the request was not answered within `[http] \
     request_timeout` (or, for `/readyz`, the plugins were not scanned yet); retry after \
     `Retry-After` seconds",
    retry_after
);

/// 500: the server failed; the error is in its log (a plugin's failure says which plugin).
#[derive(Debug)]
pub struct Internal;

impl<'s> ToResponse<'s> for Internal {
    fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
        (
            "Internal",
            RefOr::T(problem("The server or a plugin failed; the error is in its log").build()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/logs",
            "/v1/jobs/{id}/artifacts",
            "/v1/jobs/{id}/artifacts/{name}",
            "/v1/events",
            "/v1/webhooks",
            "/v1/webhooks/{id}",
            "/v1/plugins",
            "/v1/plugins/{task}",
            "/v1/plugins/{task}/render",
            "/v1/plugins/reload",
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert!(schemes.contains_key("basic") && schemes.contains_key("bearer"));
    }

    /// Every operation has an `operationId` of its own, as OpenAPI requires: generated clients
    /// name their methods by it, and tools that follow links find operations by it (two
    /// handlers named `list` once made schemathesis follow a job's link to the webhooks).
    #[test]
    fn every_operation_has_an_id_of_its_own() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let id = operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                    panic!("{method} {path} and {other} share the operationId {id}");
                }
            }
        }
    }
}
