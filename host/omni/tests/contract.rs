//! The contract test: schemathesis (pinned, from PyPI, installed once into a cached virtualenv)
//! runs every check it has against a real `omni serve`, with the server's own
//! `/v1/openapi.json`. It fails on any 5xx and on any answer the document does not allow
//! (status, content type, headers, body schema), on invalid data accepted and valid data
//! refused, and on a route that ignores credentials.
//!
//! Two documented limits:
//! - The two streaming routes do not end: `GET /v1/events` is asked with `follow=false` (its
//!   pages) and `GET /v1/jobs/{id}/logs` with `follow=false` (schemathesis never asks for
//!   `text/event-stream`); the streams themselves are tested in `logs.rs`, `client.rs` and
//!   omni-api's `events.rs`.
//! - Valid data per the document may still be refused for what a document cannot say: a task's
//!   params are checked by its plugin (422), a page token, event id or log step must be one this
//!   server gave (400), a webhook URL must parse (400) and not be a literal internal address
//!   (422), and a domain's webhooks are capped (409). `contract.toml` accepts those statuses on
//!   those routes only.
//! - `use_after_free` is off: a plain `DELETE /v1/jobs/{id}` cancels and keeps the job (see
//!   `run`).
//!
//! The document's examples submit a real `srpm` job (it builds on the local engine) and render
//! one, so the later phases follow real job ids into get, logs, cancel and purge.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{install, serve_with};

/// The schemathesis release the test runs (4.x: the CLI of `st run --checks all`).
const SCHEMATHESIS: &str = "4.32.5";

/// `st` of a virtualenv under `~/.cache/omni-testbed` with schemathesis installed, made the
/// first time (about 10 s with a fast link to PyPI; later runs take it as it is).
fn schemathesis() -> PathBuf {
    // Both tests of this binary want it: one installs, the other waits.
    static ST: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ST.get_or_init(install_schemathesis).clone()
}

fn install_schemathesis() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = Path::new(&home)
        .join(".cache/omni-testbed")
        .join(format!("schemathesis-venv-{SCHEMATHESIS}"));
    let st = venv.join("bin/st");
    let done = venv.join(".omni-installed");
    if done.exists() && st.exists() {
        return st;
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs (tests/setup.sh installs it with python3-venv)");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={SCHEMATHESIS}"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "pip install schemathesis=={SCHEMATHESIS} failed"
    );
    std::fs::write(&done, SCHEMATHESIS).unwrap();
    st
}

/// Runs `st run` against `url` with `extra` arguments; panics with its report unless every
/// check passed.
fn run(url: &str, extra: &[&str]) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract.toml");
    let reports = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{url}/v1/openapi.json"))
        .args(["--checks", "all"])
        // DELETE /v1/jobs/{id} cancels: the job stays, with its final state, as docs/api.md says
        // (only `purge=true` removes it), and use_after_free takes every DELETE for a removal.
        // schemathesis 4.32 judges it in the stateful phase, where a per-operation setting in
        // contract.toml is not applied; so it is off for the whole run.
        .args(["--exclude-checks", "use_after_free"])
        // Bounded: well under a minute on 2 cores. The seed makes a failure reproducible; set
        // OMNI_CONTRACT_SEED to explore others. One worker: with more, hypothesis' lambda
        // introspection (Python 3.11's ast) fails now and then with "AST constructor recursion
        // depth mismatch", an error of the tool, not of the server.
        .args([
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ])
        .args([
            "--seed",
            &std::env::var("OMNI_CONTRACT_SEED").unwrap_or_else(|_| "1".to_owned()),
        ])
        .arg("--report-dir")
        .arg(reports.path())
        .args(["--no-color"])
        .args(extra)
        // schemathesis keeps a cache of crashes in `.schemathesis/` of its working directory.
        .current_dir(reports.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("schemathesis took {:?}", started.elapsed());
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
}

#[test]
fn the_server_keeps_its_openapi_contract() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    for plugin in ["iso", "rpm", "srpm"] {
        install(plugins.path(), plugin);
    }
    let server = serve_with(plugins.path(), data.path(), &[]);
    // Auth is off on loopback: every caller is an admin, so no route can refuse a caller
    // without credentials, and the check that it does (ignored_auth) is left to the run below.
    run(
        &server.url,
        &["--exclude-checks", "ignored_auth,use_after_free"],
    );
}

#[test]
fn the_server_keeps_its_openapi_contract_with_auth_on() {
    let (token, sha256) = common::token();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("omni.toml");
    // The run sends wrong credentials on purpose, many times over, to see each route refuse
    // them with 401: throttling (which would answer 429 after five) is set out of its way.
    std::fs::write(
        &config,
        format!(
            "[auth]\n[auth.throttle]\nfailures = 1000000\n[[auth.tokens]]\nname = \"contract\"\nsha256 = \"{sha256}\"\nroles = {{ \"*\" = \"admin\" }}\n"
        ),
    )
    .unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let server = serve_with(
        plugins.path(),
        data.path(),
        &[("OMNI_CONFIG", config.to_str().unwrap())],
    );
    let header = format!("Authorization: Bearer {token}");
    run(&server.url, &["-H", &header]);
}
