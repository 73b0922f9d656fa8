//! Plugin versions through the router (`oneshot`), with the real srpm component: the kept
//! versions listed, a job pinned to a version that no longer serves, bad and unknown pins, and a
//! rollback.

mod common;

use axum::http::StatusCode;
use common::{app_with_jobs, call, json_body};
use serde_json::{Value, json};

/// Replaces `srpm.wasm` with the same component carrying `nonce` (another digest, another
/// version of the file) and rescans; returns the new digest.
fn replace_srpm(dirs: &omni_test_support::Dirs, nonce: &str) -> String {
    let bytes = omni_test_support::rebuilt(&omni_test_support::component("srpm"), nonce);
    let tmp = dirs.plugins.path().join(".srpm.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dirs.plugins.path().join("srpm.wasm")).unwrap();
    dirs.registry.scan();
    dirs.registry.get("srpm").unwrap().digest().to_owned()
}

fn job(plugin: Option<Value>) -> Value {
    let mut body = json!({"service": "obs", "task": "srpm", "params": {"spec": "Name: pinned\n"}});
    if let Some(plugin) = plugin {
        body["plugin"] = plugin;
    }
    body
}

#[tokio::test]
async fn a_job_pinned_to_a_kept_version_records_it_and_renders_with_it() {
    let (dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let first = dirs.registry.get("srpm").unwrap().digest().to_owned();
    let second = replace_srpm(&dirs, "2");

    let (status, _, versions) = call(&app, "GET", "/v1/plugins/srpm/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(&str, bool)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["digest"].as_str().unwrap(),
                v["serving"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2, "{versions:#}");
    assert!(listed.contains(&(first.as_str(), false)), "{versions:#}");
    assert!(listed.contains(&(second.as_str(), true)), "{versions:#}");

    // Pinned by digest: the job records the old version, and renders with it.
    let body = job(Some(json!({"digest": first})));
    let (status, _, made) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["plugin"]["digest"], first.as_str());
    let id = made["id"].as_str().unwrap().parse().unwrap();
    let stored = jobs.get(id).await.unwrap();
    assert!(jobs.render(&stored, "omni-jobs").await.is_ok());

    // By version: the serving one calls itself that too, and wins.
    let version = made["plugin"]["version"].as_str().unwrap();
    let body = job(Some(json!({"version": version})));
    let (status, _, made) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["plugin"]["digest"], second.as_str());

    // Without a pin: the serving version.
    let (_, _, made) = call(&app, "POST", "/v1/jobs", json_body(&job(None))).await;
    assert_eq!(made["plugin"]["digest"], second.as_str());
}

#[tokio::test]
async fn bad_and_unknown_pins_are_refused_and_store_nothing() {
    let (_dirs, app, _jobs) = app_with_jobs(&["srpm"]);
    let d = "0".repeat(64);
    for (plugin, status, path) in [
        (json!({}), StatusCode::BAD_REQUEST, "/plugin"),
        (
            json!({"version": "1", "digest": d}),
            StatusCode::BAD_REQUEST,
            "/plugin",
        ),
        (
            json!({"digest": "../../etc/passwd"}),
            StatusCode::BAD_REQUEST,
            "/plugin/digest",
        ),
        (
            json!({"digest": "A".repeat(64)}),
            StatusCode::BAD_REQUEST,
            "/plugin/digest",
        ),
        (
            json!({"version": ""}),
            StatusCode::BAD_REQUEST,
            "/plugin/version",
        ),
        (
            json!({"version": "v".repeat(129)}),
            StatusCode::BAD_REQUEST,
            "/plugin/version",
        ),
        (
            json!({"digest": d}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/plugin/digest",
        ),
        (
            json!({"version": "9.9.9"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/plugin/version",
        ),
    ] {
        let body = job(Some(plugin.clone()));
        let (got, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
        assert_eq!(got, status, "{plugin}: {problem}");
        assert_eq!(problem["errors"][0]["path"], path, "{plugin}: {problem}");
    }
    let body = job(Some(json!({"version": "1", "colour": "red"})));
    let (status, _, _) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, list) = call(&app, "GET", "/v1/jobs", None).await;
    assert_eq!(list["items"], json!([]));

    let (status, _, _) = call(&app, "GET", "/v1/plugins/nope/versions", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_rollback_makes_a_kept_version_serve_new_jobs() {
    let (dirs, app, _jobs) = app_with_jobs(&["srpm"]);
    let first = dirs.registry.get("srpm").unwrap().digest().to_owned();
    let second = replace_srpm(&dirs, "2");
    assert_ne!(first, second);

    let body = json!({"digest": first});
    let (status, _, serving) =
        call(&app, "POST", "/v1/plugins/srpm/rollback", json_body(&body)).await;
    assert_eq!(status, StatusCode::OK, "{serving}");
    assert_eq!(serving["digest"], first.as_str());
    // The plugins directory holds it: a rescan (or a restart) keeps it serving.
    dirs.registry.scan();
    assert_eq!(dirs.registry.get("srpm").unwrap().digest(), first);
    let (_, _, made) = call(&app, "POST", "/v1/jobs", json_body(&job(None))).await;
    assert_eq!(made["plugin"]["digest"], first.as_str());

    // And forward again, by digest; an unknown one is a 422 and changes nothing.
    let body = json!({"digest": second});
    let (status, _, _) = call(&app, "POST", "/v1/plugins/srpm/rollback", json_body(&body)).await;
    assert_eq!(status, StatusCode::OK);
    let body = json!({"digest": "f".repeat(64)});
    let (status, _, problem) =
        call(&app, "POST", "/v1/plugins/srpm/rollback", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "/digest");
    assert_eq!(dirs.registry.get("srpm").unwrap().digest(), second);

    // A task that is a path: nothing is kept under it, nothing is written anywhere.
    let body = json!({"digest": first});
    let (status, _, _) =
        call(&app, "POST", "/v1/plugins/..%2F..%2Fevil/rollback", json_body(&body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let parent = dirs.plugins.path().parent().unwrap();
    assert!(!parent.join("evil.wasm").exists());
    assert!(!parent.parent().unwrap().join("evil.wasm").exists());
}
