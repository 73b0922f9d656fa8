//! The webhook routes (../shared/API.md, "Events"): register, list, show with the delivery
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
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, EVERY_DOMAIN, Role};
use crate::plugins::is_name;
use crate::{AppState, Problem};

/// The most pending events `GET /v1/webhooks/{id}` counts.
pub const PENDING_COUNT_LIMIT: usize = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(create).get(list))
        .route("/{id}", get(one).delete(remove))
}

/// `POST /v1/webhooks`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed (http or https, no credentials).
    pub url: String,
    /// Which events (`job.succeeded`, ...) or `["*"]`.
    pub events: Vec<String>,
    /// The HMAC key of the signature header.
    pub secret: String,
    /// Only this domain's jobs (all domains when absent).
    #[serde(default)]
    pub domain: Option<String>,
}

/// A webhook as the API shows it: without its secret.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    /// Every event up to this id (or position) has been delivered.
    pub delivered_through: String,
    /// Events delivered (answered 2xx) so far.
    pub delivered: u64,
    /// Events waiting for delivery (counted up to [`PENDING_COUNT_LIMIT`]; only on
    /// `GET /v1/webhooks/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
    /// Whether more than `pending` are waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Serialize)]
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

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateWebhook>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(request) = body.map_err(|e| Problem::from_json_rejection(&e))?;
    let mut errors: Vec<_> = omni_webhooks::check(&request.url, &request.events, &request.secret)
        .into_iter()
        .map(|(path, message)| Problem::field(path, message))
        .collect();
    if let Some(domain) = &request.domain
        && !is_name(domain)
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
    let hook = Webhook {
        id: Uuid::new_v4(),
        domain: request.domain,
        url: request.url,
        events: request.events,
        secret: request.secret,
        created_at: omni_store::now(),
    };
    let delivery = omni_webhooks::register(state.jobs.store().as_ref(), &hook)
        .await
        .map_err(Problem::from_store)?;
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

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<WebhookList>, Problem> {
    let store = state.jobs.store();
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
        .store()
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

async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, Problem> {
    let hook = find(&state, &caller, &id).await?;
    let store = state.jobs.store();
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
            let page = store
                .read_events(
                    Some(&delivery.delivered_through),
                    &filter,
                    PENDING_COUNT_LIMIT + 1,
                )
                .await
                .map_err(Problem::from_store)?;
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

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let hook = find(&state, &caller, &id).await?;
    if state
        .jobs
        .store()
        .delete_webhook(hook.id)
        .await
        .map_err(Problem::from_store)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_webhook(&id))
    }
}
