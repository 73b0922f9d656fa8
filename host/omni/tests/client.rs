//! The client commands end to end: `omni submit`, `omni jobs`, `omni logs` and `omni plugins`
//! against `omni serve` on a loopback port (the default local engine, the hostile fixture's
//! jobs), with the exit codes scripts rely on: 0 done, 1 the job failed, 2 a wrong command or
//! request, 3 no server.

mod common;

use std::process::Output;

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

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = omni().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains("submit"), "{shell}: {script}");
    }
}
