//! The Python SDK's tests and every Python plugin's (`sdk/python/test.sh`: pytest in the pinned
//! virtualenv), with an `omni serve` of this build serving the built components (`make plugins`)
//! and the repository's templates, so each plugin case runs natively and through the real host
//! (its dry run), and both must give the same answer. The host's cases are never skipped
//! (`OMNI_REQUIRE_HOST`).

mod common;

use std::process::Command;

use common::{get, install, serve};
use omni_test_support::workspace;

/// The Python task plugins (`plugins/<task>/app.py`).
const PLUGINS: &[&str] = &["sign"];

#[tokio::test]
async fn the_python_sdk_and_plugins_pass_natively_and_through_the_host() {
    let (plugins, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for plugin in PLUGINS {
        install(plugins.path(), plugin);
    }
    let server = serve(plugins.path(), data.path());
    for plugin in PLUGINS {
        let url = format!("{}/v1/plugins/{plugin}", server.url);
        let mut answer = get(&url).await.1;
        // Loading compiles the component: wait for it (a condition, not a time).
        for _ in 0..3000 {
            if answer["status"] == "ready" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            answer = get(&url).await.1;
        }
        assert_eq!(answer["status"], "ready", "{plugin}: {answer}");
    }
    let url = server.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(workspace().join("sdk/python/test.sh"))
            .arg("-rs")
            .env("OMNI_URL", url)
            .env("OMNI_REQUIRE_HOST", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest: {}\n{stdout}{stderr}",
        output.status
    );
    eprintln!("{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}
