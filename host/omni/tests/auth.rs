//! Auth end to end: `omni passwd` and `omni token` make the configuration's credentials, and
//! `omni serve` on a non-loopback address with them answers the CLI as each caller's roles
//! allow (the full role x route matrix is host/api/tests/auth.rs).

mod common;

use std::io::Write as _;
use std::process::{Output, Stdio};

use common::{install, omni, serve_on};

fn passwd(password: &str) -> Output {
    let mut child = omni()
        .args(["passwd", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `omni ARGS` against `url` as the caller `env` names (off the async runtime).
async fn run(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = omni();
    command
        .args(args)
        .env("OMNI_URL", url)
        .env_remove("OMNI_TOKEN")
        .env_remove("OMNI_USER")
        .env_remove("OMNI_PASSWORD")
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_users_serves_beyond_loopback_as_each_role_allows() {
    let hashed = passwd("pw of ann\n");
    assert!(hashed.status.success(), "{}", text(&hashed.stderr));
    let hash = text(&hashed.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let empty = passwd("\n");
    assert!(!empty.status.success());
    assert!(text(&empty.stderr).contains("empty"));

    let (token, sha256) = common::token();

    // The users in a file of their own (a Secret), the token in the configuration.
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!("[[users]]\nname = \"ann\"\npassword_hash = \"{hash}\"\nroles = {{ default = \"submitter\" }}\n"),
    )
    .unwrap();
    let config = dir.path().join("omni.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nusers_file = {users:?}\n[[auth.tokens]]\nname = \"ci\"\nsha256 = \"{sha256}\"\nroles = {{ \"*\" = \"viewer\" }}\n"
        ),
    )
    .unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile");
    let server = serve_on(
        "0.0.0.0:0",
        plugins.path(),
        data.path(),
        &[("OMNI_CONFIG", config.to_str().unwrap())],
    );
    let url = server.url.as_str();
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    let ann = [("OMNI_USER", "ann"), ("OMNI_PASSWORD", "pw of ann")];
    let ci = [("OMNI_TOKEN", token.as_str())];

    // No credentials, or wrong ones: one line saying so, exit 2, nothing done.
    for env in [
        &[][..],
        &[("OMNI_USER", "ann"), ("OMNI_PASSWORD", "wrong")][..],
        &[("OMNI_TOKEN", "omni_not-this-one")][..],
    ] {
        let listed = run(url, env, &["jobs", "list"]).await;
        assert_eq!(listed.status.code(), Some(2), "{env:?}");
        let stderr = text(&listed.stderr);
        assert!(stderr.contains("(401)"), "{stderr}");
        assert!(stderr.contains("sign in with OMNI_TOKEN"), "{stderr}");
    }

    // The submitter submits and waits; the job succeeds.
    let arch = std::env::consts::ARCH;
    let submitted = run(
        url,
        &ann,
        &[
            "submit",
            "hostile",
            "-p",
            "behaviour=print",
            "-p",
            "lines=2",
            "--arch",
            arch,
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["state"], "succeeded");

    // The viewer token reads it and its log, and may not cancel or purge it: 403, exit 2.
    let got = run(url, &ci, &["jobs", "get", id]).await;
    assert_eq!(got.status.code(), Some(0), "{}", text(&got.stderr));
    let logs = run(url, &ci, &["logs", id]).await;
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
    assert!(text(&logs.stdout).contains("line 2"));
    let purged = run(url, &ci, &["jobs", "purge", id]).await;
    assert_eq!(purged.status.code(), Some(2));
    let stderr = text(&purged.stderr);
    assert!(
        stderr.contains("(403)") && stderr.contains("admin role"),
        "{stderr}"
    );
    // The submitter may not submit in another domain.
    let elsewhere = run(
        url,
        &ann,
        &[
            "submit",
            "hostile",
            "-p",
            "behaviour=print",
            "--arch",
            arch,
            "--domain",
            "fedora",
        ],
    )
    .await;
    assert_eq!(elsewhere.status.code(), Some(2));
    assert!(text(&elsewhere.stderr).contains("domain \"fedora\""));
    drop(server);
}

/// What `omni serve --config` says on stderr when it refuses the configuration `text`.
fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("omni.toml");
    std::fs::write(&config, text).unwrap();
    let out = omni()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{text} was taken");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_a_broken_auth_configuration_naming_the_entry() {
    let stderr = refused(
        "[[auth.users]]\nname = \"bob\"\npassword_hash = \"hunter2\"\nroles = { default = \"viewer\" }\n",
    );
    assert!(
        stderr.contains("user \"bob\"") && stderr.contains("omni passwd"),
        "{stderr}"
    );
    let stderr = refused("[auth]\nusers_file = \"/nonexistent/users.toml\"\n");
    assert!(stderr.contains("cannot read the users file"), "{stderr}");
}

/// A flood of wrong passwords and tokens from one address, against the real server: after
/// five in a row the name and the address are answered 429 with `Retry-After` before any
/// password is checked; the user still signs in from where it signed in before, a valid token
/// still works, the sign-in is in the server's log and the failures in its metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_tokens_are_throttled_and_the_right_ones_still_sign_in() {
    let hashed = passwd("pw of ann\n");
    let hash = text(&hashed.stdout).trim().to_owned();
    let (token, sha256) = common::token();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("omni.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.users]]\nname = \"ann\"\npassword_hash = \"{hash}\"\nroles = {{ default = \"viewer\" }}\n[[auth.tokens]]\nname = \"ci\"\nsha256 = \"{sha256}\"\nroles = {{ \"*\" = \"viewer\" }}\n"
        ),
    )
    .unwrap();
    let (plugins, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = serve_on(
        "127.0.0.1:0",
        plugins.path(),
        data.path(),
        &[("OMNI_CONFIG", config.to_str().unwrap())],
    );
    let jobs = format!("{}/v1/jobs", server.url);
    let client = reqwest::Client::new();
    let as_ann = |password: &str| client.get(&jobs).basic_auth("ann", Some(password)).send();

    assert_eq!(as_ann("pw of ann").await.unwrap().status(), 200);
    let mut statuses = Vec::new();
    for attempt in 0..40 {
        let answer = as_ann(&format!("wrong {attempt}")).await.unwrap();
        if answer.status() == 429 {
            let wait: u64 = answer.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(wait >= 1, "{wait}");
        }
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses[..6], [401; 6], "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another name from this address, and wrong tokens: the address is blocked.
    let other = client.get(&jobs).basic_auth("bob", Some("x")).send();
    assert_eq!(other.await.unwrap().status(), 429);
    let wrong_token = client.get(&jobs).bearer_auth("omni_wrong").send();
    assert_eq!(wrong_token.await.unwrap().status(), 429);
    // The right ones are not held back.
    assert_eq!(as_ann("pw of ann").await.unwrap().status(), 200);
    let right_token = client.get(&jobs).bearer_auth(&token).send();
    assert_eq!(right_token.await.unwrap().status(), 200);

    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("omni_sign_in_failures_total{credential=\"password\"}"))
        .unwrap_or_else(|| panic!("no failures counted in {metrics}"));
    assert!(failures.ends_with(" 6"), "{failures}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("omni_sign_in_throttled_total ")),
        "{metrics}"
    );
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("signed in") && log.contains("ann"), "{log}");
}
