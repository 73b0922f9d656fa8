//! The webhook routes (`docs/api.md`, "Webhooks"): register, list, show with the delivery
//! state, delete. What a webhook may be is `omni_webhooks::check`; delivery is
//! `omni_webhooks::Deliverer`'s. A webhook's secret is never shown.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use omni_store::{Delivery, EventFilter, Webhook};
use omni_webhooks::RegisterError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, EVERY_DOMAIN, Role};
use crate::{AppState, Problem};
use omni_core::Name;

/// The most pending events `GET /v1/webhooks/{id}` counts.
pub const PENDING_COUNT_LIMIT: usize = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(create).get(list))
        .route("/{id}", get(one).delete(remove))
}

/// `POST /v1/webhooks`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: an http or https URL with a host, without credentials or a
    /// fragment (400 otherwise); a literal address in an internal range (loopback, private,
    /// link-local...) answers 422 unless the operator allows it.
    #[schema(max_length = 2048, pattern = "^https?://")]
    pub url: String,
    /// Which events (`job.succeeded`, ...) or `["*"]`.
    #[schema(schema_with = events_schema)]
    pub events: Vec<String>,
    /// The HMAC key of the signature header.
    #[schema(min_length = 1, max_length = 1024)]
    pub secret: String,
    /// Only this domain's jobs (all domains when absent).
    #[serde(default)]
    #[schema(value_type = Option<crate::types::NameSchema>)]
    pub domain: Option<String>,
}

/// `CreateWebhook::events`' schema: some of the event names, or `"*"` alone.
fn events_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let names = |values: Vec<&'static str>| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
    };
    OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .items(names(crate::types::event_names()))
                .min_items(Some(1)),
        )
        .item(
            ArrayBuilder::new()
                .items(names(vec!["*"]))
                .min_items(Some(1))
                .max_items(Some(1)),
        )
        .description(Some(
            "Which events (`job.succeeded`, ...), or `[\"*\"]` for all",
        ))
        .build()
        .into()
}

/// A webhook as the API shows it: without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Its id.
    pub id: Uuid,
    /// Where events go.
    pub url: String,
    /// Which events.
    pub events: Vec<String>,
    /// Its domain, if it has one.
    pub domain: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// How delivery goes.
    pub delivery: Option<DeliveryView>,
}

/// A webhook's delivery state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Every event up to this id (or position) has been delivered.
    pub delivered_through: String,
    /// Events delivered (answered 2xx) so far.
    pub delivered: u64,
    /// Events waiting for delivery (counted up to [`PENDING_COUNT_LIMIT`]; only on
    /// `GET /v1/webhooks/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = Option<u32>, minimum = 0, maximum = 1000)]
    pub pending: Option<usize>,
    /// Whether more than `pending` are waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub pending_more: Option<bool>,
    /// Failed attempts of the delivery under way (0: nothing is failing).
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When a delivery last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
}

impl WebhookView {
    fn new(hook: Webhook, delivery: Option<Delivery>) -> Self {
        WebhookView {
            id: hook.id,
            url: hook.url,
            events: hook.events,
            domain: hook.domain,
            created_at: hook.created_at,
            delivery: delivery.map(|d| DeliveryView {
                delivered_through: d.delivered_through,
                delivered: d.delivered,
                pending: None,
                pending_more: None,
                attempts: d.attempts,
                last_error: d.last_error,
                last_error_at: d.last_error_at,
                last_success_at: d.last_success_at,
            }),
        }
    }
}

/// `GET /v1/webhooks`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    /// Every webhook, oldest first.
    pub items: Vec<WebhookView>,
}

fn no_such_webhook(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no such webhook",
        format!("no webhook {id}"),
    )
}

/// The domain whose admins manage `hook`: its own, or every domain's for one without.
fn scope(domain: Option<&str>) -> &str {
    domain.unwrap_or(EVERY_DOMAIN)
}

/// Registers a webhook: every later matching event is POSTed to `url` with `X-Omni-Signature:
/// sha256=<hex HMAC-SHA256 of the body with the secret>`, retried until a 2xx answer. Needs
/// `admin` in its domain (on `*` for one without).
#[utoipa::path(
    operation_id = "createWebhook",
    post,
    path = "/v1/webhooks",
    tag = "events",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Registered (the secret is not shown)", body = WebhookView, headers(("Location" = String, description = "`/v1/webhooks/{id}`"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 409, response = crate::openapi::Conflict),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateWebhook>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(request) = body.map_err(|e| Problem::from_json_rejection(&e, state.body_limit, ""))?;
    let mut errors: Vec<_> = omni_webhooks::check(&request.url, &request.events, &request.secret)
        .into_iter()
        .map(|(path, message)| Problem::field(path, message))
        .collect();
    if let Some(domain) = &request.domain
        && !Name::is_valid(domain)
    {
        errors.push(Problem::field(
            "/domain",
            "must be lowercase letters, digits and '-', 1 to 63 long",
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::bad_request("some fields are wrong", errors));
    }
    caller.require(Role::Admin, scope(request.domain.as_deref()))?;
    if let Some(message) = state.webhooks.check_destination(&request.url) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "destination not allowed",
            message.clone(),
        )
        .with_errors(vec![Problem::field("/url", message)]));
    }
    let hook = Webhook {
        id: Uuid::new_v4(),
        domain: request.domain,
        url: request.url,
        events: request.events,
        secret: request.secret,
        created_at: omni_store::now(),
    };
    let delivery =
        state
            .webhooks
            .register(&state.jobs, &hook)
            .await
            .map_err(|error| match error {
                error @ RegisterError::TooMany { .. } => {
                    Problem::new(StatusCode::CONFLICT, "too many webhooks", error.to_string())
                }
                RegisterError::Jobs(error) => Problem::from_jobs(error),
            })?;
    let location = format!("/v1/webhooks/{}", hook.id);
    let mut response = (
        StatusCode::CREATED,
        Json(WebhookView::new(hook, Some(delivery))),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The webhooks of the domains the caller administers, oldest first.
#[utoipa::path(
    operation_id = "listWebhooks",
    get,
    path = "/v1/webhooks",
    tag = "events",
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, Problem> {
    let store = state.jobs.webhooks();
    let hooks = store
        .list_webhooks(None)
        .await
        .map_err(Problem::from_store)?;
    let mut items = Vec::with_capacity(hooks.len());
    for hook in hooks {
        if caller.role(scope(hook.domain.as_deref())) != Some(Role::Admin) {
            continue;
        }
        let delivery = store
            .get_delivery(hook.id)
            .await
            .map_err(Problem::from_store)?;
        items.push(WebhookView::new(hook, delivery));
    }
    Ok(Json(WebhookList { items }))
}

/// The webhook `id` if the caller administers its domain: 404 as for none when the caller has
/// no role there, 403 when one below admin.
async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Webhook, Problem> {
    let uuid = Uuid::parse_str(id).map_err(|_| no_such_webhook(id))?;
    let hook = state
        .jobs
        .webhooks()
        .list_webhooks(None)
        .await
        .map_err(Problem::from_store)?
        .into_iter()
        .find(|hook| hook.id == uuid)
        .ok_or_else(|| no_such_webhook(id))?;
    caller.require_on(Role::Admin, scope(hook.domain.as_deref()), || {
        no_such_webhook(id)
    })?;
    Ok(hook)
}

/// One webhook with its delivery state (and how many events wait). Needs `admin` in its domain.
#[utoipa::path(
    operation_id = "getWebhook",
    get,
    path = "/v1/webhooks/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The webhook's id (a UUID)")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, Problem> {
    let hook = find(&state, &caller, &id).await?;
    let store = state.jobs.webhooks();
    let delivery = store
        .get_delivery(hook.id)
        .await
        .map_err(Problem::from_store)?;
    let pending = match &delivery {
        Some(delivery) => {
            let filter = EventFilter {
                domain: hook.domain.clone(),
                ..EventFilter::default()
            };
            let page = state
                .jobs
                .read_events(
                    Some(&delivery.delivered_through),
                    &filter,
                    PENDING_COUNT_LIMIT + 1,
                )
                .await
                .map_err(Problem::from_jobs)?;
            let count = page
                .items
                .iter()
                .filter(|event| omni_webhooks::wants(&hook, event))
                .count();
            Some(count)
        }
        None => None,
    };
    let mut view = WebhookView::new(hook, delivery);
    if let (Some(delivery), Some(count)) = (view.delivery.as_mut(), pending) {
        delivery.pending = Some(count.min(PENDING_COUNT_LIMIT));
        delivery.pending_more = Some(count > PENDING_COUNT_LIMIT);
    }
    Ok(Json(view))
}

/// Deletes a webhook; its deliveries stop. Needs `admin` in its domain.
#[utoipa::path(
    operation_id = "deleteWebhook",
    delete,
    path = "/v1/webhooks/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The webhook's id (a UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let hook = find(&state, &caller, &id).await?;
    if state
        .jobs
        .webhooks()
        .delete_webhook(hook.id)
        .await
        .map_err(Problem::from_store)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_webhook(&id))
    }
}
