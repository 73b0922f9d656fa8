//! The client commands end to end: `omni submit`, `omni jobs`, `omni logs`, `omni events` and
//! `omni plugins` against `omni serve` on a loopback port (the default local engine, the hostile
//! fixture's jobs), with the exit codes scripts rely on: 0 done, 1 the job failed, 2 a wrong
//! command or request, 3 no server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Server, install, omni, serve};
use serde_json::Value;

fn server() -> (Server, [tempfile::TempDir; 2]) {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile");
    let server = serve(plugins.path(), data.path());
    (server, [plugins, data])
}

/// Runs `omni ARGS` against `url` (off the async runtime: the command blocks).
async fn run(url: &str, args: &[&str]) -> Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        omni()
            .args(&args)
            .env("OMNI_URL", url)
            .env_remove("OMNI_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_follow_list_get_logs_and_purge() {
    let (server, _dirs) = server();
    let url = server.url.as_str();
    let arch = std::env::consts::ARCH;

    let listed = run(url, &["plugins", "list"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    assert!(text.starts_with("TASK"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("hostile")), "{text}");

    // Submitted, followed to its end: the log, then the id and its state; exit 0.
    let args = [
        "submit",
        "hostile",
        "-p",
        "behaviour=print",
        "-p",
        "lines=5",
        "--arch",
        arch,
        "--follow",
    ];
    let followed = run(url, &args).await;
    assert_eq!(followed.status.code(), Some(0), "{}", stderr(&followed));
    let lines: Vec<String> = stdout(&followed).lines().map(str::to_owned).collect();
    assert_eq!(
        lines[..6],
        ["line 1", "line 2", "line 3", "line 4", "line 5", "done"]
    );
    let (id, state) = lines[6].split_once(' ').unwrap();
    assert_eq!(state, "succeeded");

    // Listed (JSON for scripts, a table for people), shown, its log printed.
    let listed = run(url, &["jobs", "list", "-o", "json"]).await;
    let page: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(page["items"][0]["id"], id);
    let table = stdout(&run(url, &["jobs", "list"]).await);
    let header = table.lines().next().unwrap();
    let row = table.lines().nth(1).unwrap();
    assert!(header.starts_with("ID"), "{table}");
    assert!(row.starts_with(id), "{table}");
    // Columns line up: STATE starts where the row's state does.
    assert_eq!(header.find("STATE"), row.find("succeeded"), "{table}");
    let shown = stdout(&run(url, &["jobs", "get", id]).await);
    assert!(
        shown
            .lines()
            .any(|l| l.contains("state") && l.contains("succeeded")),
        "{shown}"
    );
    let logs = run(url, &["logs", id, "--step", "run"]).await;
    assert_eq!(stdout(&logs).lines().count(), 6, "{}", stdout(&logs));
    let json_lines = stdout(&run(url, &["logs", id, "-o", "json"]).await);
    let first: Value = serde_json::from_str(json_lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);

    // Purged: gone (404 is a wrong request: exit 2).
    let purged = run(url, &["jobs", "purge", id]).await;
    assert!(purged.status.success(), "{}", stderr(&purged));
    let gone = run(url, &["jobs", "get", id]).await;
    assert_eq!(gone.status.code(), Some(2));
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_went_wrong() {
    let (server, _dirs) = server();
    let url = server.url.as_str();
    let arch = std::env::consts::ARCH;

    // A job that fails (the local engine runs no images): 1, with the reason.
    let args = [
        "submit",
        "hostile",
        "-p",
        "behaviour=no-command",
        "--arch",
        arch,
        "--wait",
    ];
    let failed = run(url, &args).await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(stdout(&failed).contains(" failed: "), "{}", stdout(&failed));

    // Params the plugin rejects: 2, one line and the field under it.
    let rejected = run(url, &["submit", "hostile", "-p", "behaviour=sing"]).await;
    assert_eq!(rejected.status.code(), Some(2));
    let message = stderr(&rejected);
    let mut lines = message.lines();
    assert!(lines.next().unwrap().starts_with("omni: "), "{message}");
    assert!(
        lines.next().unwrap().starts_with("  /params/behaviour: "),
        "{message}"
    );

    // A step the job does not have, a --param without '=', a missing task: 2.
    for args in [
        &["submit", "hostile", "-p", "behaviour"][..],
        &["submit"][..],
        &["jobs", "get"][..],
    ] {
        assert_eq!(run(url, args).await.status.code(), Some(2), "{args:?}");
    }

    // No server there: 3.
    let unreachable = run("http://127.0.0.1:9", &["jobs", "list"]).await;
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(
        stderr(&unreachable).contains("cannot reach the server"),
        "{}",
        stderr(&unreachable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_versions_are_listed_pinned_and_rolled_back() {
    let (server, dirs) = server();
    let url = server.url.as_str();
    let arch = std::env::consts::ARCH;
    let first = run(url, &["plugins", "get", "hostile"]).await;
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let first = first["digest"].as_str().unwrap().to_owned();

    // A changed file replaces it; both are kept.
    let changed = omni_test_support::rebuilt(
        &std::fs::read(dirs[0].path().join("hostile.wasm")).unwrap(),
        "2",
    );
    std::fs::write(dirs[0].path().join(".hostile.tmp"), changed).unwrap();
    std::fs::rename(
        dirs[0].path().join(".hostile.tmp"),
        dirs[0].path().join("hostile.wasm"),
    )
    .unwrap();
    // The watcher loads it (a reload while it does leaves the file to it).
    omni_test_support::eventually("the changed file to serve", || async {
        let now = run(url, &["plugins", "get", "hostile"]).await;
        let now: Value = serde_json::from_slice(&now.stdout).ok()?;
        (now["digest"].as_str()? != first).then_some(())
    })
    .await;
    let listed = run(url, &["plugins", "versions", "hostile"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter()
            .any(|r| r.contains(&first) && !r.ends_with("yes")),
        "{table}"
    );

    // A job pinned to the replaced version records it; an unknown one is refused with 2.
    let pinned = run(
        url,
        &[
            "submit",
            "hostile",
            "-p",
            "behaviour=print",
            "--arch",
            arch,
            "--plugin-digest",
            &first,
            "-o",
            "json",
        ],
    )
    .await;
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let job: Value = serde_json::from_slice(&pinned.stdout).unwrap();
    assert_eq!(job["plugin"]["digest"], first.as_str());
    let unknown = run(
        url,
        &[
            "submit",
            "hostile",
            "-p",
            "behaviour=print",
            "--plugin-version",
            "9",
        ],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("  /plugin/version: "),
        "{}",
        stderr(&unknown)
    );

    // Rolled back: the old version serves again; naming no version is a usage error.
    let back = run(
        url,
        &["plugins", "rollback", "hostile", "--plugin-digest", &first],
    )
    .await;
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(
        stdout(&back).ends_with(&format!("serves {first}\n")),
        "{}",
        stdout(&back)
    );
    assert_eq!(
        run(url, &["plugins", "rollback", "hostile"])
            .await
            .status
            .code(),
        Some(2)
    );
}

/// Submits a `print` job of one line and waits for it to succeed; its id.
async fn printed(url: &str) -> String {
    let arch = std::env::consts::ARCH;
    let args = [
        "submit",
        "hostile",
        "-p",
        "behaviour=print",
        "-p",
        "lines=1",
        "--arch",
        arch,
        "--wait",
    ];
    let done = run(url, &args).await;
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let out = stdout(&done);
    out.split_whitespace().next().unwrap().to_owned()
}

const LIFE: [&str; 4] = ["pending", "queued", "running", "succeeded"];

/// The `to` states of NDJSON events, for the job `id`.
fn moves(ndjson: &str, id: &str) -> Vec<String> {
    ndjson
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["job_id"] == id)
        .map(|e| e["to"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_printed_filtered_and_followed() {
    let (server, _dirs) = server();
    let url = server.url.as_str();
    let a = printed(url).await;

    // The stored events, as a table whose columns line up, oldest first.
    let listed = run(url, &["events"]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let table = stdout(&listed);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("TIME"), "{table}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4, "{table}");
    for (row, state) in rows.iter().zip(LIFE) {
        assert!(row.contains(&a), "{table}");
        assert_eq!(header.find("STATE"), row.find(state), "{table}");
        assert_eq!(header.find("JOB"), row.find(&a), "{table}");
    }

    // NDJSON for scripts; filters by job, task (the server's), after an event.
    let json = stdout(&run(url, &["events", "-o", "json", "--job", &a]).await);
    assert_eq!(moves(&json, &a), LIFE);
    let second: Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
    let after = second["id"].as_str().unwrap();
    let later = stdout(&run(url, &["events", "-o", "json", "--after", after]).await);
    assert_eq!(moves(&later, &a), LIFE[2..]);
    let other = run(url, &["events", "-o", "json", "--task", "srpm"]).await;
    assert_eq!(
        (other.status.code(), stdout(&other)),
        (Some(0), String::new())
    );
    let none = run(url, &["events", "--job", "0000"]).await;
    assert_eq!(stdout(&none).lines().count(), 1, "{}", stdout(&none));

    // Followed: the stored events, then a new job's as they happen.
    let mut child = common::omni()
        .args(["events", "-f", "-o", "json"])
        .env("OMNI_URL", url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, received) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let take = |n: usize| -> String {
        let mut text = String::new();
        for _ in 0..n {
            let line = received
                .recv_timeout(Duration::from_secs(60))
                .expect("an event");
            text.push_str(&line);
            text.push('\n');
        }
        text
    };
    assert_eq!(moves(&take(4), &a), LIFE);
    let b = printed(url).await;
    assert_eq!(moves(&take(4), &b), LIFE);
    child.kill().unwrap();
    child.wait().unwrap();

    // Bad input: an id the server did not make, a bad name (2, naming the field); no server (3).
    for (args, path) in [
        (&["events", "--after", "12abc"][..], "/query/after"),
        (&["events", "--task", "Not_A_Task"][..], "/query/task"),
    ] {
        let refused = run(url, args).await;
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        let message = stderr(&refused);
        assert!(
            message.starts_with("omni: invalid request (400)"),
            "{message}"
        );
        assert!(message.contains(&format!("\n  {path}: ")), "{message}");
    }
    let unreachable = run("http://127.0.0.1:9", &["events", "-f"]).await;
    assert_eq!(
        unreachable.status.code(),
        Some(3),
        "{}",
        stderr(&unreachable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_render_prints_yaml_or_the_api_answer() {
    let (server, _dirs) = server();
    let url = server.url.as_str();
    let args = [
        "plugins",
        "render",
        "hostile",
        "-p",
        "behaviour=print",
        "--arch",
        "aarch64",
    ];

    // YAML documents, one per object, as `omni plugin render` prints them.
    let rendered = run(url, &args).await;
    assert_eq!(rendered.status.code(), Some(0), "{}", stderr(&rendered));
    let yaml = stdout(&rendered);
    assert!(yaml.starts_with("---\n"), "{yaml}");
    assert!(yaml.contains("kind: Job"), "{yaml}");
    assert!(yaml.contains("omni.io/task: hostile"), "{yaml}");

    // The API's answer with -o json; params from a file, -p over it.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), r#"{"behaviour": "sing", "lines": 3}"#).unwrap();
    let path = file.path().to_str().unwrap();
    let args = [
        "plugins",
        "render",
        "hostile",
        "--params-file",
        path,
        "-p",
        "behaviour=print",
        "-o",
        "json",
    ];
    let answer = run(url, &args).await;
    assert_eq!(answer.status.code(), Some(0), "{}", stderr(&answer));
    let answer: Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(answer["manifests"][0]["kind"], "Job");
    assert_eq!(answer["primary"], answer["manifests"][0]["name"]);
    let command = answer["manifests"][0]["body"].to_string();
    assert!(command.contains("1 3"), "{command}");

    // Refused: an unknown task (404) and params the plugin rejects (422, the field under the
    // line), both 2 as for `omni submit`; an arch the task lacks (422); no server (3).
    let unknown = run(url, &["plugins", "render", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    let message = stderr(&unknown);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("(404)"), "{message}");
    let rejected = run(
        url,
        &["plugins", "render", "hostile", "-p", "behaviour=sing"],
    )
    .await;
    assert_eq!(rejected.status.code(), Some(2));
    let message = stderr(&rejected);
    let mut lines = message.lines();
    assert!(lines.next().unwrap().contains("(422)"), "{message}");
    assert!(
        lines.next().unwrap().starts_with("  /params/behaviour: "),
        "{message}"
    );
    let arch = [
        "plugins",
        "render",
        "hostile",
        "-p",
        "behaviour=print",
        "--arch",
        "riscv64",
    ];
    let arch = run(url, &arch).await;
    assert_eq!(arch.status.code(), Some(2));
    assert!(stderr(&arch).contains("\n  /arch: "), "{}", stderr(&arch));
    let unreachable = run("http://127.0.0.1:9", &["plugins", "render", "hostile"]).await;
    assert_eq!(unreachable.status.code(), Some(3));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = omni().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains("submit"), "{shell}: {script}");
    }
}

/// `omni artifacts list` and `get` against a real SRPM job on the local engine: the table and
/// the JSON, every artifact downloaded into a directory and checked (the same bytes the server
/// keeps), one by name, an unknown name refused with 2, and a download whose bytes the server
/// would not vouch for never left in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_artifacts_are_listed_and_downloaded() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let server = serve(plugins.path(), data.path());
    let url = server.url.as_str();
    let spec = "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hello\nLicense: MIT\n\
                BuildArch: noarch\n\n%description\nhello\n\n%files\n";
    let params = serde_json::json!({"spec": spec});
    let file = data.path().join("params.json");
    std::fs::write(&file, params.to_string()).unwrap();
    let submitted = run(
        url,
        &[
            "submit",
            "srpm",
            "--params-file",
            file.to_str().unwrap(),
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(submitted.status.code(), Some(0), "{}", stderr(&submitted));
    let job: Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = job["id"].as_str().unwrap();

    let listed = run(url, &["artifacts", "list", id, "-o", "json"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let items: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let items = items["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:#?}");
    let name = items[0]["name"].as_str().unwrap();
    assert_eq!(name, "hello-1.0-1.src.rpm");
    let table = stdout(&run(url, &["artifacts", "list", id]).await);
    let header = table.lines().next().unwrap();
    let row = table.lines().nth(1).unwrap();
    assert!(header.starts_with("NAME"), "{table}");
    assert!(row.starts_with(name), "{table}");
    assert_eq!(
        header.find("SHA256"),
        row.find(items[0]["sha256"].as_str().unwrap()),
        "{table}"
    );

    // All of them, into a directory made for them.
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("made/here");
    let got = run(url, &["artifacts", "get", id, "-o", into.to_str().unwrap()]).await;
    assert!(got.status.success(), "{}", stderr(&got));
    let bytes = std::fs::read(into.join(name)).unwrap();
    assert_eq!(
        omni_artifacts::Sha256::of(&bytes).to_string(),
        items[0]["sha256"].as_str().unwrap()
    );
    assert_eq!(stdout(&got).trim(), into.join(name).display().to_string());
    let leftovers: Vec<_> = std::fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [name], "no temporary file is left");
    let rpm = std::process::Command::new("rpm")
        .args(["-qp", "--qf", "%{NAME}-%{VERSION}"])
        .arg(into.join(name))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rpm.stdout), "hello-1.0");

    // Counted: one artifact of srpm, its bytes.
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("omni_artifacts_stored_total{task=\"srpm\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "omni_artifact_bytes_stored_total{{task=\"srpm\"}} {}\n",
            bytes.len()
        )),
        "{metrics}"
    );

    // One by name; an unknown one is a wrong request.
    let one = tempfile::tempdir().unwrap();
    let got = run(
        url,
        &[
            "artifacts",
            "get",
            id,
            name,
            "-o",
            one.path().to_str().unwrap(),
        ],
    )
    .await;
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(one.path().join(name).is_file());
    let unknown = run(url, &["artifacts", "get", id, "nothing.rpm"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("nothing.rpm"),
        "{}",
        stderr(&unknown)
    );
}

/// A server that lies (failure injection no real server produces): an artifact whose bytes are
/// not the sha256 it lists, and one named to escape the directory. `omni artifacts get` fails
/// (1) and writes nothing: no file at the name, no temporary file, nothing outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_the_server_cannot_vouch_for_is_not_kept() {
    use axum::routing::get;
    let id = "4b5c5a4e-2b0a-11f0-9b1e-3f2d1c0b9a87";
    for name in ["wrong.rpm", "../escaped.rpm"] {
        let listing = serde_json::json!({"items": [{
            "name": name, "size": 5, "sha256": "0".repeat(64), "media_type": "application/x-rpm",
            "created_at": "2026-12-04T00:00:00Z",
            "url": format!("/v1/jobs/{id}/artifacts/file"),
        }], "next": null});
        let app = axum::Router::new()
            .route(
                &format!("/v1/jobs/{id}/artifacts"),
                get(move || std::future::ready(axum::Json(listing.clone()))),
            )
            .route(
                &format!("/v1/jobs/{id}/artifacts/file"),
                get(|| std::future::ready("bytes")),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move { axum::serve(listener, app).await });

        let out = tempfile::tempdir().unwrap();
        let into = out.path().join("into");
        let got = run(
            &url,
            &["artifacts", "get", id, "-o", into.to_str().unwrap()],
        )
        .await;
        assert_eq!(got.status.code(), Some(1), "{name}: {}", stderr(&got));
        let said = stderr(&got);
        if name == "wrong.rpm" {
            assert!(said.contains("sha256"), "{said}");
        } else {
            assert!(said.contains("cannot be a file name"), "{said}");
        }
        let left: Vec<_> = walk(out.path());
        assert!(left.iter().all(|p| p.is_dir()), "{name}: {left:?}");
        served.abort();
    }
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

/// `omni submit --source`: a tarball larger than a job's body and a script are sent to the
/// server's uploads and named in `params.sources` with their modes; the source RPM packs them
/// byte for byte. A file that cannot be read is a wrong command (exit 2), and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_sends_sources_as_uploads() {
    use std::os::unix::fs::PermissionsExt as _;
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let server = serve(plugins.path(), data.path());
    let url = server.url.as_str();
    let work = tempfile::tempdir().unwrap();
    // 2 MiB that do not compress, in a real tarball.
    let tarball = omni_test_support::incompressible_tarball(work.path(), "big-1.0", 2);
    let script = work.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = "Name: big\nVersion: 1.0\nRelease: 1\nSummary: big\nLicense: MIT\n\
                Source0: big-1.0.tar.gz\nSource1: run.sh\nBuildArch: noarch\n\n\
                %description\nbig\n\n%files\n";
    let params = work.path().join("params.json");
    std::fs::write(&params, serde_json::json!({"spec": spec}).to_string()).unwrap();

    let missing = run(
        url,
        &["submit", "srpm", "--source", "/nonexistent/x.tar.gz"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("cannot read"),
        "{}",
        stderr(&missing)
    );

    let run_sh = format!("run.sh={}", script.display());
    let submitted = run(
        url,
        &[
            "submit",
            "srpm",
            "--params-file",
            params.to_str().unwrap(),
            "--source",
            tarball.to_str().unwrap(),
            "--source",
            &run_sh,
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(submitted.status.code(), Some(0), "{}", stderr(&submitted));
    let job: Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let tar_sha = omni_artifacts::Sha256::of(&std::fs::read(&tarball).unwrap()).to_string();
    let sources = &job["params"]["sources"];
    assert_eq!(
        sources["big-1.0.tar.gz"],
        serde_json::json!({"upload": tar_sha, "mode": "0644"}),
        "{job:#}"
    );
    assert_eq!(sources["run.sh"]["mode"], "0755", "{job:#}");

    let srpm = data
        .path()
        .join("jobs")
        .join(job["id"].as_str().unwrap())
        .join("volumes/output/big-1.0-1.src.rpm");
    let listing = std::process::Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEDIGESTS} %{FILEMODES:perms}\n]",
        ])
        .arg(&srpm)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l == format!("big-1.0.tar.gz {tar_sha} -rw-r--r--")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("run.sh ") && l.ends_with(" -rwxr-xr-x")),
        "{listing}"
    );

    // Submitted again: the server has both files, so neither is sent again.
    let again = run(
        url,
        &[
            "submit",
            "srpm",
            "--params-file",
            params.to_str().unwrap(),
            "--source",
            tarball.to_str().unwrap(),
            "--source",
            &run_sh,
        ],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("omni_uploads_stored_total{outcome=\"new\"} 2\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"again\""), "{metrics}");
}

/// `omni jobs provenance` and `omni jobs render` of a job built on the local engine: the
/// statement names its artifacts as subjects and what went in (the params, the upload they
/// name, the plugin version and template set, each object rendered for the engine, the
/// images); after the task's plugin is replaced, the job still renders by the version it
/// records, to objects whose sha256 are those recorded when its engine was given them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_provenance_names_what_went_in_and_it_renders_again_byte_for_byte() {
    use sha2::Digest as _;
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let server = serve(plugins.path(), data.path());
    let url = server.url.as_str();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("hello.sh");
    std::fs::write(&source, "#!/bin/sh\necho hello\n").unwrap();
    let spec = "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hello\nLicense: MIT\n\
                Source0: hello.sh\nBuildArch: noarch\n\n%description\nhello\n\n%files\n";
    let params = work.path().join("params.json");
    std::fs::write(&params, serde_json::json!({"spec": spec}).to_string()).unwrap();
    let submitted = run(
        url,
        &[
            "submit",
            "srpm",
            "--params-file",
            params.to_str().unwrap(),
            "--source",
            source.to_str().unwrap(),
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(submitted.status.code(), Some(0), "{}", stderr(&submitted));
    let job: Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = job["id"].as_str().unwrap();

    let shown = run(url, &["jobs", "provenance", id]).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let statement: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let artifacts = run(url, &["artifacts", "list", id, "-o", "json"]).await;
    let artifacts: Value = serde_json::from_slice(&artifacts.stdout).unwrap();
    let subjects: Vec<(String, String)> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].to_string(), s["digest"]["sha256"].to_string()))
        .collect();
    let made: Vec<(String, String)> = artifacts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].to_string(), a["sha256"].to_string()))
        .collect();
    assert_eq!(subjects, made);
    assert_eq!(subjects.len(), 1, "{statement:#}");
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(definition["externalParameters"]["params"], job["params"]);
    assert_eq!(definition["externalParameters"]["task"], "srpm");
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    let digest_of = |name: &str| -> Option<String> {
        dependencies
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| d["digest"]["sha256"].as_str().unwrap().to_owned())
    };
    let plugin = &job["plugin"];
    assert_eq!(
        digest_of(&format!(
            "plugin/srpm@{}",
            plugin["version"].as_str().unwrap()
        )),
        plugin["digest"].as_str().map(str::to_owned),
        "{statement:#}"
    );
    assert_eq!(
        digest_of("templates/srpm"),
        plugin["templates"].as_str().map(str::to_owned)
    );
    let upload = job["params"]["sources"]["hello.sh"]["upload"]
        .as_str()
        .unwrap();
    assert_eq!(
        digest_of(&format!("upload/{upload}")).as_deref(),
        Some(upload)
    );
    let recorded: Vec<(String, String)> = dependencies
        .iter()
        .filter_map(|d| {
            let name = d["name"].as_str()?.strip_prefix("manifest/")?;
            Some((name.to_owned(), d["digest"]["sha256"].as_str()?.to_owned()))
        })
        .collect();
    let names: Vec<&str> = recorded.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("ConfigMap/omni-{id}-input"),
            format!("Job/omni-{id}")
        ],
        "{statement:#}"
    );
    assert!(
        dependencies
            .iter()
            .any(|d| d["name"].as_str().unwrap().starts_with("image/")),
        "{statement:#}"
    );
    let run_details = &statement["predicate"]["runDetails"];
    assert_eq!(run_details["metadata"]["invocationId"], id);
    assert_eq!(run_details["byproducts"][0]["content"], "succeeded");

    // Another build of the plugin serves the task now.
    let changed = omni_test_support::rebuilt(
        &std::fs::read(plugins.path().join("srpm.wasm")).unwrap(),
        "2",
    );
    std::fs::write(plugins.path().join(".srpm.tmp"), changed).unwrap();
    std::fs::rename(
        plugins.path().join(".srpm.tmp"),
        plugins.path().join("srpm.wasm"),
    )
    .unwrap();
    omni_test_support::eventually("the changed plugin to serve", || async {
        let now = run(url, &["plugins", "get", "srpm"]).await;
        let now: Value = serde_json::from_slice(&now.stdout).ok()?;
        (now["digest"] != plugin["digest"]).then_some(())
    })
    .await;

    // The job renders by its own version: each object's bytes are those its engine got.
    let rendered = run(url, &["jobs", "render", id, "-o", "json"]).await;
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let rendered: Value = serde_json::from_slice(&rendered.stdout).unwrap();
    let again: Vec<(String, String)> = rendered["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let bytes = serde_json::to_vec(&m["body"]).unwrap();
            (
                format!(
                    "{}/{}",
                    m["kind"].as_str().unwrap(),
                    m["name"].as_str().unwrap()
                ),
                hex::encode(sha2::Sha256::digest(&bytes)),
            )
        })
        .collect();
    assert_eq!(again, recorded);
    let yaml = run(url, &["jobs", "render", id]).await;
    assert!(
        stdout(&yaml).starts_with("---\napiVersion: v1\nkind: ConfigMap\n"),
        "{}",
        stdout(&yaml)
    );
}
