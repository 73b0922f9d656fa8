//! Auth through the router: every route against every role (`docs/api.md`, "Auth"), the
//! exact 401 and 403, and no data of another domain in lists, logs, events or webhooks.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use common::{call_with, json_body};
use omni_api::auth::{AuthConfig, TokenConfig, UserConfig};
use omni_api::{AppState, Authenticator, Role, router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// The callers of the matrix, each a bearer token named after its roles.
const CALLERS: [(&str, &[(&str, Role)]); 5] = [
    ("viewer-a", &[("a", Role::Viewer)]),
    ("submitter-a", &[("a", Role::Submitter)]),
    ("admin-a", &[("a", Role::Admin)]),
    ("admin-all", &[("*", Role::Admin)]),
    ("viewer-b", &[("b", Role::Viewer)]),
];

fn roles(roles: &[(&str, Role)]) -> BTreeMap<String, Role> {
    roles.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect()
}

struct Fixture {
    app: axum::Router,
    _dirs: omni_test_support::Dirs,
}

fn fixture() -> Fixture {
    let (dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let config = AuthConfig {
        users: vec![UserConfig {
            name: "ann".into(),
            password_hash: omni_api::auth::hash_password("s3cret").unwrap(),
            roles: roles(&[("a", Role::Submitter)]),
        }],
        tokens: CALLERS
            .iter()
            .map(|(name, grants)| TokenConfig {
                name: (*name).into(),
                sha256: hex::encode(Sha256::digest(token(name).as_bytes())),
                roles: roles(grants),
            })
            .collect(),
        throttle: Default::default(),
    };
    let state = AppState {
        auth: Arc::new(Authenticator::new(&config).unwrap()),
        ..AppState::new(jobs, Arc::clone(&dirs.registry))
    };
    Fixture {
        app: router(state),
        _dirs: dirs,
    }
}

fn token(caller: &str) -> String {
    format!("token-of-{caller}")
}

fn bearer(caller: &str) -> String {
    format!("Bearer {}", token(caller))
}

fn job(domain: &str) -> Value {
    json!({"service": "obs", "task": "srpm", "domain": domain,
           "params": {"spec": "Name: x\nVersion: 1\n"}})
}

fn hook(domain: Option<&str>) -> Value {
    let mut hook = json!({"url": "https://ci.example.com/hook", "events": ["*"], "secret": "s"});
    if let Some(domain) = domain {
        hook["domain"] = json!(domain);
    }
    hook
}

impl Fixture {
    /// One call as `caller` (none: no credentials); the status and the body's JSON.
    async fn call(
        &self,
        caller: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let authorization = caller.map(bearer);
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let (status, _, value) =
            call_with(&self.app, method, uri, &headers, body.and_then(json_body)).await;
        (status, value)
    }

    /// The status alone, without reading the body (event streams do not end).
    async fn status(&self, caller: Option<&str>, method: &str, uri: &str) -> StatusCode {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(caller) = caller {
            request = request.header(header::AUTHORIZATION, bearer(caller));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.status()
    }

    /// A new job in `domain`, made by the admin of every domain.
    async fn job(&self, domain: &str) -> String {
        let (status, job) = self
            .call(Some("admin-all"), "POST", "/v1/jobs", Some(&job(domain)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// A new webhook of `domain` (every domain: none), made by the admin of every domain.
    async fn hook(&self, domain: Option<&str>) -> String {
        let (status, hook) = self
            .call(
                Some("admin-all"),
                "POST",
                "/v1/webhooks",
                Some(&hook(domain)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        hook["id"].as_str().unwrap().to_owned()
    }
}

/// What a route works on; made fresh for each call, since some calls destroy it.
#[derive(Clone, Copy)]
enum On {
    Nothing,
    JobOfA,
    HookOfA,
    HookOfAll,
}

/// A route (method, path), what it works on, its body, and the status each caller gets, in the
/// order of [`CALLERS`].
type Row = (&'static str, &'static str, On, Option<Value>, [u16; 5]);

fn matrix() -> Vec<Row> {
    use On::*;
    vec![
        (
            "POST",
            "/v1/jobs",
            Nothing,
            Some(job("a")),
            [403, 201, 201, 201, 403],
        ),
        ("GET", "/v1/jobs", Nothing, None, [200, 200, 200, 200, 200]),
        (
            "GET",
            "/v1/jobs?domain=a",
            Nothing,
            None,
            [200, 200, 200, 200, 403],
        ),
        (
            "GET",
            "/v1/jobs/{job}",
            JobOfA,
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/v1/jobs/{job}/logs",
            JobOfA,
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/v1/jobs/{job}/artifacts",
            JobOfA,
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/v1/jobs/{job}/provenance",
            JobOfA,
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/v1/jobs/{job}/render",
            JobOfA,
            None,
            [200, 200, 200, 200, 404],
        ),
        (
            "DELETE",
            "/v1/jobs/{job}",
            JobOfA,
            None,
            [403, 202, 202, 202, 404],
        ),
        (
            "DELETE",
            "/v1/jobs/{job}?purge=true",
            JobOfA,
            None,
            [403, 403, 204, 204, 404],
        ),
        (
            "GET",
            "/v1/events",
            Nothing,
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/events?domain=a",
            Nothing,
            None,
            [200, 200, 200, 200, 403],
        ),
        (
            "POST",
            "/v1/webhooks",
            Nothing,
            Some(hook(Some("a"))),
            [403, 403, 201, 201, 403],
        ),
        (
            "POST",
            "/v1/webhooks",
            Nothing,
            Some(hook(None)),
            [403, 403, 403, 201, 403],
        ),
        (
            "GET",
            "/v1/webhooks",
            Nothing,
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/webhooks/{hook}",
            HookOfA,
            None,
            [403, 403, 200, 200, 404],
        ),
        (
            "GET",
            "/v1/webhooks/{hook}",
            HookOfAll,
            None,
            [404, 404, 404, 200, 404],
        ),
        (
            "DELETE",
            "/v1/webhooks/{hook}",
            HookOfA,
            None,
            [403, 403, 204, 204, 404],
        ),
        (
            "DELETE",
            "/v1/webhooks/{hook}",
            HookOfAll,
            None,
            [404, 404, 404, 204, 404],
        ),
        (
            "GET",
            "/v1/plugins",
            Nothing,
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/plugins/srpm",
            Nothing,
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/v1/plugins/srpm/render",
            Nothing,
            Some(json!({"domain": "a", "params": {"spec": "Name: x\nVersion: 1\n"}})),
            [200, 200, 200, 200, 403],
        ),
        (
            "POST",
            "/v1/plugins/reload",
            Nothing,
            None,
            [403, 403, 403, 200, 403],
        ),
    ]
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_api_says() {
    let f = fixture();
    for (method, route, on, body, expected) in matrix() {
        for ((caller, _), want) in CALLERS.iter().zip(expected) {
            let uri = match on {
                On::Nothing => route.to_owned(),
                On::JobOfA => route.replace("{job}", &f.job("a").await),
                On::HookOfA => route.replace("{hook}", &f.hook(Some("a")).await),
                On::HookOfAll => route.replace("{hook}", &f.hook(None).await),
            };
            let status = if uri.starts_with("/v1/events") {
                f.status(Some(caller), method, &uri).await
            } else {
                f.call(Some(caller), method, &uri, body.as_ref()).await.0
            };
            assert_eq!(status.as_u16(), want, "{caller}: {method} {route}");
            // Without credentials, every /v1 route is 401, before anything else is looked at.
            let anonymous = f.status(None, method, &uri).await;
            assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{method} {route}");
        }
    }
    // Probes, and readers of the API's document.
    for route in ["/healthz", "/readyz", "/v1/openapi.json", "/v1/swagger/"] {
        assert_eq!(
            f.status(None, "GET", route).await,
            StatusCode::OK,
            "{route}"
        );
    }
}

#[tokio::test]
async fn wrong_credentials_are_401_with_a_basic_challenge() {
    let f = fixture();
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let ok = basic("ann", "s3cret");
    let (status, _, _) = call_with(
        &f.app,
        "POST",
        "/v1/jobs",
        &[("authorization", &ok)],
        json_body(&job("a")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for authorization in [
        None,
        Some(basic("ann", "wrong")),
        Some(basic("nobody", "s3cret")),
        Some("Bearer not-a-token".to_owned()),
        Some("Negotiate abc".to_owned()),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let (status, headers, problem) =
            call_with(&f.app, "POST", "/v1/jobs", &headers, json_body(&job("a"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"omni\"");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(problem["status"], 401);
    }
    // Nothing was stored by the refused calls.
    let (_, list) = f.call(Some("admin-all"), "GET", "/v1/jobs", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // A role too small is 403, naming what is missing.
    let (status, problem) = f
        .call(Some("viewer-a"), "POST", "/v1/jobs", Some(&job("a")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("submitter role in domain \"a\""),
        "{problem}"
    );
}

#[tokio::test]
async fn no_data_of_another_domain_is_visible() {
    let f = fixture();
    let in_a = f.job("a").await;
    let in_b = f.job("b").await;
    let hook_a = f.hook(Some("a")).await;
    let hook_all = f.hook(None).await;

    let ids = |list: &Value, key: &str| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[key].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, list) = f.call(Some("viewer-b"), "GET", "/v1/jobs", None).await;
    assert_eq!(ids(&list, "id"), [in_b.as_str()]);
    let (_, list) = f.call(Some("viewer-a"), "GET", "/v1/jobs", None).await;
    assert_eq!(ids(&list, "id"), [in_a.as_str()]);
    let (_, list) = f.call(Some("admin-all"), "GET", "/v1/jobs", None).await;
    assert_eq!(ids(&list, "id"), [in_b.as_str(), in_a.as_str()]);
    // Paging within the visible domains: one at a time, still only b's.
    let (_, page) = f
        .call(Some("viewer-b"), "GET", "/v1/jobs?limit=1", None)
        .await;
    assert_eq!(ids(&page, "id"), [in_b.as_str()]);

    let (_, hooks) = f.call(Some("admin-a"), "GET", "/v1/webhooks", None).await;
    assert_eq!(ids(&hooks, "id"), [hook_a.as_str()]);
    let (_, hooks) = f.call(Some("viewer-a"), "GET", "/v1/webhooks", None).await;
    assert_eq!(ids(&hooks, "id"), Vec::<String>::new());
    let (_, hooks) = f.call(Some("admin-all"), "GET", "/v1/webhooks", None).await;
    assert_eq!(ids(&hooks, "id"), [hook_a.as_str(), hook_all.as_str()]);

    let (status, logs) = f
        .call(
            Some("viewer-b"),
            "GET",
            &format!("/v1/jobs/{in_a}/logs"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(logs["title"], "no such job");

    // The event stream of viewer-b: the creations of both jobs are stored, a's first; b's
    // arrives and a's never did.
    let events = events_of(&f, "viewer-b").await;
    assert!(
        events.iter().all(|e| e["domain"] == "b"),
        "{events:?} holds another domain's events"
    );
    assert!(events.iter().any(|e| e["job_id"] == in_b.as_str()));
    let events = events_of(&f, "admin-all").await;
    assert!(events.iter().any(|e| e["job_id"] == in_a.as_str()));
}

/// The events `caller` reads from the start, up to the one of the last job made (in `b`).
async fn events_of(f: &Fixture, caller: &str) -> Vec<Value> {
    use futures::StreamExt;
    let response = f
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/v1/events?after=0")
                .header(header::AUTHORIZATION, bearer(caller))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                let event: Value = serde_json::from_str(data.trim()).unwrap();
                let last = event["domain"] == "b";
                events.push(event);
                if last {
                    return events;
                }
            }
        }
    }
    events
}
