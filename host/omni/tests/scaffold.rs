//! `omni plugin new`: the crate it writes builds and passes its own tests as written, its
//! component builds for wasm32-wasip2 with the versions of Omni's lock (`--locked`), and
//! `omni plugin render` loads it with the templates it came with. What it refuses: a name that
//! is not a task name, a directory that exists, an SDK that is not one.
//!
//! The generated crate builds in `target/scaffold` (its own target dir: the outer build holds
//! `target/`'s lock while tests run) and `--offline`: every crate it needs is one the workspace
//! and its plugins (`make plugins`) already fetched.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::omni;
use omni_test_support::workspace;
use serde_json::Value;

/// Where generated crates build: beside the workspace's own build, not in it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| workspace().join("target"))
        .join("scaffold")
}

fn cargo(root: &Path) -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir());
    cargo
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`, failing the test with its output unless it succeeds; prints how long it took.
fn check(what: &str, command: &mut Command) -> Output {
    let started = Instant::now();
    let output = command.output().unwrap();
    eprintln!("{what}: {:.1?}", started.elapsed());
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

#[test]
fn a_new_plugin_passes_its_tests_builds_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let made = omni()
        .args(["plugin", "new", "demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let root = dir.path().join("demo");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "src/lib.rs",
        "tests/plugin.rs",
        "templates/demo/job.yaml",
        "templates/demo/settings.yaml",
    ] {
        assert!(root.join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let sdk = workspace().join("sdk");
    assert!(
        manifest.contains(&format!("path = {:?}", sdk.to_str().unwrap())),
        "{manifest}"
    );

    // As written: formatted, its tests pass, its component builds with Omni's locked versions.
    check("cargo fmt --check", cargo(&root).args(["fmt", "--check"]));
    check("cargo test", cargo(&root).args(["test", "--offline"]));
    check(
        "cargo build --target wasm32-wasip2 --profile plugin",
        cargo(&root).args([
            "build",
            "--offline",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
        ]),
    );
    let wasm = target_dir().join("wasm32-wasip2/plugin/omni_plugin_demo.wasm");

    // Loaded by the host, with the templates it came with.
    let mut render = omni()
        .args(["plugin", "render"])
        .arg(&wasm)
        .args([
            "--params",
            "-",
            "--arch",
            "aarch64",
            "-o",
            "json",
            "--template-dir",
        ])
        .arg(root.join("templates"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    render
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"message": "hi there", "count": 2}"#)
        .unwrap();
    let rendered = render.wait_with_output().unwrap();
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let rendered: Value = serde_json::from_slice(&rendered.stdout).unwrap();
    let job = &rendered["manifests"][0]["body"];
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["labels"]["omni.io/task"], "demo");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "arm64");
    assert_eq!(pod["containers"][0]["name"], "run");
    assert_eq!(pod["containers"][0]["env"][0]["value"], "hi there");

    // The plugin's own checks, through the host: 2 and the field.
    let params = dir.path().join("params.json");
    std::fs::write(&params, r#"{"message": "hi", "count": 50}"#).unwrap();
    let refused = omni()
        .args(["plugin", "render"])
        .arg(&wasm)
        .arg("--params")
        .arg(&params)
        .arg("--template-dir")
        .arg(root.join("templates"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("  /count: must be at most 10"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn what_plugin_new_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        omni()
            .args(["plugin", "new"])
            .args(args)
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert_eq!(new(&["taken"]).status.code(), Some(0));
    std::fs::write(dir.path().join("taken/src/lib.rs"), "// mine").unwrap();
    for (args, says) in [
        (&["taken"][..], "already exists"),
        (&["Not_A_Task"][..], "is not a task name"),
        (&["-x"][..], "unexpected argument"),
        (&["ok", "--sdk", "/nowhere"][..], "is not the SDK"),
    ] {
        let refused = new(args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        let message = text(&refused.stderr);
        assert!(message.contains(says), "{args:?}: {message}");
    }
    // Nothing was overwritten, and nothing else was left behind.
    let mine = std::fs::read_to_string(dir.path().join("taken/src/lib.rs")).unwrap();
    assert_eq!(mine, "// mine");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["taken"]);
}

#[tokio::test]
async fn a_new_python_plugin_passes_its_tests_builds_and_renders_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let made = omni()
        .args(["plugin", "new", "--lang", "python", "py-demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let root = dir.path().join("py-demo");
    for file in [
        "README.md",
        "app.py",
        "py_demo.py",
        "conftest.py",
        "tests/test_py_demo.py",
        "templates/py-demo/job.yaml",
        "templates/py-demo/settings.yaml",
    ] {
        assert!(root.join(file).is_file(), "{file}");
    }
    let python = workspace().join("sdk/python");
    // Its tests natively, then its component built and served by `omni serve` with the
    // templates it came with, then the same tests natively and through that server.
    check(
        "test.sh (native)",
        Command::new(python.join("test.sh")).arg(&root),
    );
    let plugins = root.join("plugins");
    check(
        "build.sh",
        Command::new(python.join("build.sh"))
            .arg(&root)
            .arg(plugins.join("py-demo.wasm")),
    );
    let data = tempfile::tempdir().unwrap();
    let mut serve = omni();
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--plugin-dir"])
        .arg(&plugins)
        .arg("--template-dir")
        .arg(root.join("templates"))
        .arg("--data-dir")
        .arg(data.path());
    let server = common::start(serve);
    let url = format!("{}/v1/plugins/py-demo", server.url);
    let mut answer = common::get(&url).await.1;
    for _ in 0..3000 {
        if answer["status"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        answer = common::get(&url).await.1;
    }
    assert_eq!(answer["status"], "ready", "{answer}");
    let tested = check(
        "test.sh (native and host)",
        Command::new(python.join("test.sh"))
            // -q is test.sh's: -vv lists each case with its outcome.
            .arg("-vv")
            .arg(&root)
            .env("OMNI_URL", &server.url)
            .env("OMNI_REQUIRE_HOST", "1"),
    );
    let out = text(&tested.stdout);
    assert!(
        out.contains("test_renders_one_job_per_arch[host-aarch64-arm64] PASSED"),
        "{out}"
    );
    assert!(!out.contains("SKIPPED") && !out.contains("FAILED"), "{out}");
}

#[test]
fn python_needs_the_python_sdk() {
    let dir = tempfile::tempdir().unwrap();
    // An SDK directory without python/: the Rust scaffold would take it, the Python one not.
    let sdk = dir.path().join("sdk");
    std::fs::create_dir_all(&sdk).unwrap();
    std::fs::write(sdk.join("Cargo.toml"), "[package]\nname = \"omni-sdk\"\n").unwrap();
    let made = omni()
        .args(["plugin", "new", "--lang", "python", "demo", "--sdk"])
        .arg(&sdk)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(2), "{}", text(&made.stderr));
    assert!(!dir.path().join("demo").exists());
}
