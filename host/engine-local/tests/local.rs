//! The local runner with jobs rendered by the real plugins and run for real: a source RPM built
//! by rpmbuild from the srpm plugin's job, a binary RPM from the rpm plugin's, an ISO remastered
//! by xorriso from the iso plugin's; failing steps, the deadline and cancel killing whole
//! process groups; what it refuses to run.

use std::process::Command;
use std::time::Duration;

use omni_engine::{Manifest, Rendered};
use omni_engine_local::sandbox::Network;
use omni_engine_local::{
    Event, Isolation, LocalRunner, Outcome, Plan, PlanError, Sandbox, SandboxConfig,
};
use serde_json::{Value, json};

async fn render(task: &str, params: Value) -> Rendered {
    let (_dir, registry) =
        omni_test_support::registry(omni_test_support::sandbox(json!({})), &[task]);
    let plugin = registry.get(task).unwrap();
    plugin
        .serialize(omni_test_support::job("x86_64"), params.to_string())
        .await
        .unwrap()
}

async fn finish(run: &mut omni_engine_local::Run) -> (Vec<Event>, Outcome) {
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(120), run.events.recv())
        .await
        .expect("the run went quiet")
    {
        if let Event::Ended(outcome) = event {
            return (events, outcome);
        }
        events.push(event);
    }
    panic!("the run ended without an outcome: {events:?}");
}

fn lines(events: &[Event], step: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Line { step: s, line, .. } if s == step => Some(line.clone()),
            _ => None,
        })
        .collect()
}

const SPEC: &str = "Name: hello\nVersion: 1.0\nRelease: 1%{?dist}\nSummary: Says hello\nLicense: MIT\nSource0: hello.sh\nBuildArch: noarch\n\n%description\nSays hello.\n\n%install\ninstall -D -m 755 %{SOURCE0} %{buildroot}/usr/bin/hello\n\n%files\n/usr/bin/hello\n";

#[tokio::test]
async fn the_srpm_job_builds_a_real_source_rpm() {
    // base64 of "#!/bin/sh\necho hello\n"
    let params = json!({"spec": SPEC, "sources": {"hello.sh": "IyEvYmluL3NoCmVjaG8gaGVsbG8K"},
                        "defines": {"dist": ".oe2403"}});
    let rendered = render("srpm", params).await;
    let plan = Plan::from_rendered(&rendered).unwrap();
    let steps: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, ["fetch", "build"]);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner.start("job-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert!(matches!(&events[0], Event::StepStarted { step } if step == "fetch"));
    assert!(events.contains(&Event::StepEnded {
        step: "build".into(),
        exit_code: Some(0)
    }));
    assert!(
        lines(&events, "fetch")
            .iter()
            .any(|l| l.contains("hello.sh")),
        "{events:#?}"
    );

    let output = runner.volume_dir("job-1", "output");
    let srpm = output.join("hello-1.0-1.oe2403.src.rpm");
    assert!(
        srpm.is_file(),
        "{:?}",
        std::fs::read_dir(&output).unwrap().collect::<Vec<_>>()
    );
    let info = Command::new("rpm").arg("-qpi").arg(&srpm).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Name        : hello"), "{info}");
    let files = Command::new("rpm").arg("-qpl").arg(&srpm).output().unwrap();
    let files = String::from_utf8_lossy(&files.stdout);
    assert!(
        files.contains("hello.sh") && files.contains("package.spec"),
        "{files}"
    );
    // The step's HOME was the job's: the user's ~/.rpmmacros is untouched.
    assert!(run.dir().join("home/.rpmmacros").is_file());
    runner.remove("job-1").unwrap();
    assert!(!runner.job_dir("job-1").exists());
}

/// The rpm plugin's job: a spec without BuildRequires needs no repository, so the `deps` step
/// says so and `build` runs rpmbuild -bb; the binary RPM holds the packaged file.
#[tokio::test]
async fn the_rpm_job_builds_a_real_binary_rpm() {
    let params = json!({"spec": SPEC, "sources": {"hello.sh": "IyEvYmluL3NoCmVjaG8gaGVsbG8K"},
                        "defines": {"dist": ".oe2403"}});
    let plan = Plan::from_rendered(&render("rpm", params).await).unwrap();
    let steps: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, ["fetch", "deps", "build"]);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner.start("rpm-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert!(
        lines(&events, "deps")
            .iter()
            .any(|l| l.contains("has no BuildRequires")),
        "{events:#?}"
    );
    let rpm = runner
        .volume_dir("rpm-1", "output")
        .join("hello-1.0-1.oe2403.noarch.rpm");
    let info = Command::new("rpm").arg("-qpi").arg(&rpm).output().unwrap();
    assert!(info.status.success(), "{rpm:?}: {info:?}");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Name        : hello"), "{info}");
    assert!(info.contains("Architecture: noarch"), "{info}");
    let files = Command::new("rpm").arg("-qpl").arg(&rpm).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&files.stdout), "/usr/bin/hello\n");
}

/// The iso plugin's customize mode: a base ISO fetched over HTTP from a server on loopback
/// (`allow_insecure_base_iso` turned on in a copy of the templates), remastered by xorriso with
/// a kickstart, a file and a new volume label.
#[tokio::test]
async fn the_iso_customize_job_builds_a_real_iso() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("tree");
    std::fs::create_dir_all(tree.join("isolinux")).unwrap();
    std::fs::write(tree.join("isolinux/boot.msg"), "base\n").unwrap();
    let base = scratch.path().join("base.iso");
    let made = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "BASE", "-o"])
        .arg(&base)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(made.success());
    let bytes = std::fs::read(&base).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/base.iso", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/base.iso",
        axum::routing::get(move || async move { bytes.clone() }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let templates = scratch.path().join("templates");
    omni_test_support::copy_templates("iso", &templates);
    let settings = templates.join("iso/settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(
        &settings,
        text.replace(
            "allow_insecure_base_iso: false",
            "allow_insecure_base_iso: true",
        ),
    )
    .unwrap();
    let sandbox =
        omni_test_support::sandbox_over(&templates, omni_runtime::SandboxConfig::default());
    let (_plugins, registry) = omni_test_support::registry(sandbox, &["iso"]);
    let params = json!({"mode": "customize", "base_iso": url, "volume_label": "OMNI_TEST",
        "kickstart": "lang en_US.UTF-8\nreboot\n", "files": {"/isolinux/boot.msg": "customized\n"}});
    let rendered = registry
        .get("iso")
        .unwrap()
        .serialize(omni_test_support::job("x86_64"), params.to_string())
        .await
        .unwrap();

    // The base ISO comes over the network: the template does not ask for it yet, so the test
    // does (the fetch step), and the engine gives it the host's (the server is on loopback).
    let mut rendered = rendered;
    let job = rendered
        .manifests
        .iter_mut()
        .find(|m| m.kind == "Job")
        .unwrap();
    job.body["spec"]["template"]["metadata"]["annotations"] =
        json!({omni_engine_local::NETWORK_ANNOTATION: "fetch"});
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::with_isolation(root.path(), host_network());
    let mut run = runner
        .start("iso-1", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let output = runner.volume_dir("iso-1", "output");
    let iso = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "iso"))
        .expect("an .iso in the output");
    let listing = Command::new("xorriso")
        .arg("-indev")
        .arg(&iso)
        .args(["-pvd_info", "-find", "/", "-type", "f"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout).into_owned()
        + &String::from_utf8_lossy(&listing.stderr);
    assert!(text.contains("OMNI_TEST"), "{text}");
    assert!(text.contains("/ks.cfg"), "{text}");
    let extracted = scratch.path().join("boot.msg");
    let status = Command::new("xorriso")
        .arg("-osirrox")
        .arg("on")
        .arg("-indev")
        .arg(&iso)
        .arg("-extract")
        .arg("/isolinux/boot.msg")
        .arg(&extracted)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert_eq!(std::fs::read_to_string(&extracted).unwrap(), "customized\n");
}

fn host_network() -> Isolation {
    Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(SandboxConfig {
        network: Network::Host,
        ..SandboxConfig::default()
    })))
}

/// A step gets no network unless it asks and the engine allows: without, a socket to the
/// host's loopback (where Omni's API listens) reaches nothing; asking where the engine gives
/// none fails before the step starts, saying why; with `network = "host"` it connects.
#[tokio::test]
async fn network_is_given_only_to_a_step_that_asks_where_the_engine_allows() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect =
        format!("if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo refused; fi");
    let step = json!({"name": "net", "image": "none", "command": ["/bin/bash", "-c", connect]});
    let root = tempfile::tempdir().unwrap();
    let run_on = |runner: LocalRunner, id: &'static str, ask: bool| {
        let mut rendered = job(&json!([]), &json!([step.clone()]), None);
        if ask {
            rendered.manifests[1].body["spec"]["template"]["metadata"] =
                json!({"annotations": {omni_engine_local::NETWORK_ANNOTATION: "net"}});
        }
        let plan = Plan::from_rendered(&rendered).unwrap();
        async move {
            let mut run = runner.start(id, plan).unwrap();
            finish(&mut run).await
        }
    };
    let (events, outcome) = run_on(LocalRunner::new(root.path()), "n1", false).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "net").last().unwrap(), "refused");
    let (_, outcome) = run_on(LocalRunner::new(root.path()), "n2", true).await;
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("asks for network") && m.contains("network = \"host\"")),
        "{outcome:?}"
    );
    let (events, outcome) = run_on(
        LocalRunner::with_isolation(root.path(), host_network()),
        "n3",
        true,
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "net"), ["connected"]);
}

/// A rendered job of one Job object with these containers, volumes and deadline.
fn job(init: &Value, containers: &Value, deadline: Option<u64>) -> Rendered {
    let mut spec = json!({
        "backoffLimit": 0,
        "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": init,
            "containers": containers,
            "volumes": [{"name": "input", "configMap": {"name": "in"}}, {"name": "out", "emptyDir": {}}],
        }},
    });
    if let Some(seconds) = deadline {
        spec["activeDeadlineSeconds"] = json!(seconds);
    }
    Rendered {
        manifests: vec![
            Manifest {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "in".into(),
                body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "in"},
                             "data": {"greeting": "hi there", "word": "pineapple"}}),
            },
            Manifest {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "j".into(),
                body: json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": spec}),
            },
        ],
        primary: "j".into(),
    }
}

fn sh(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "none", "command": ["/bin/sh", "-c", script],
           "env": [{"name": "IN", "value": "/in"}, {"name": "OUT", "value": "/out/sub"},
                   {"name": "WORD", "valueFrom": {"configMapKeyRef": {"name": "in", "key": "word"}}}],
           "volumeMounts": [{"name": "input", "mountPath": "/in"}, {"name": "out", "mountPath": "/out"}]})
}

#[tokio::test]
async fn env_mounts_and_working_dir_are_the_jobs_and_a_failing_step_stops_the_rest() {
    // Paths written into the script work as well as those from the environment: the volumes
    // are at their mount paths, the ConfigMap read-only.
    let mut first = sh(
        "first",
        "cat \"$IN/greeting\"; echo; echo \"$WORD\"; mkdir -p \"$OUT\"; pwd; cat /in/word; echo; \
         touch /in/new 2>/dev/null || echo read-only; echo oops >&2; exit 3",
    );
    first["workingDir"] = json!("/out");
    let rendered = job(
        &json!([first]),
        &json!([sh("never", "echo should not run")]),
        None,
    );
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j2", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(
        outcome,
        Outcome::Failed("step first exited with code 3".into())
    );
    let out_dir = runner.volume_dir("j2", "out");
    assert_eq!(
        lines(&events, "first"),
        vec![
            "hi there".to_owned(),
            "pineapple".into(),
            "/out".into(),
            "pineapple".into(),
            "read-only".into(),
            "oops".into()
        ]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Line { stderr: true, line, .. } if line == "oops"))
    );
    assert!(out_dir.join("sub").is_dir());
    assert!(lines(&events, "never").is_empty());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StepStarted { step } if step == "never"))
    );
}

/// Whether a process of this machine runs `sleep <seconds>` (a value unique to one test).
fn sleeping(seconds: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|entry| {
        let path = entry.unwrap().path();
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        cmdline == format!("sleep\0{seconds}\0").as_bytes() && !stat.contains(") Z ")
    })
}

async fn started(run: &mut omni_engine_local::Run) {
    loop {
        match run.events.recv().await.unwrap() {
            Event::Line { line, .. } if line == "started" => return,
            Event::Ended(outcome) => panic!("ended early: {outcome:?}"),
            _ => {}
        }
    }
}

/// A step that leaves `sleep` behind, waiting for it or not; `seconds` makes it findable.
fn leaves_a_sleep(seconds: &str, wait: bool) -> Value {
    let wait = if wait { "; wait" } else { "" };
    // "started" once the sleep has become `sleep` (not a shell still forking it).
    sh(
        "slow",
        &format!(
            "sleep {seconds} & until grep -qs {seconds} /proc/$!/cmdline; do :; done; echo started{wait}"
        ),
    )
}

#[tokio::test]
async fn the_deadline_kills_every_process_of_the_step() {
    let rendered = job(
        &json!([]),
        &json!([leaves_a_sleep("600.101", true)]),
        Some(1),
    );
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j3", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    started(&mut run).await;
    assert!(sleeping("600.101"));
    let (_, outcome) = finish(&mut run).await;
    assert!(
        matches!(outcome, Outcome::DeadlineExceeded(ref m) if m.contains("step slow")),
        "{outcome:?}"
    );
    omni_test_support::wait_until("the step's sleep is gone", || !sleeping("600.101"));
}

#[tokio::test]
async fn cancel_kills_every_process_of_the_step() {
    let rendered = job(&json!([]), &json!([leaves_a_sleep("600.102", true)]), None);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j4", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    started(&mut run).await;
    assert!(sleeping("600.102"));
    run.cancel();
    let (_, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Cancelled);
    omni_test_support::wait_until("the step's sleep is gone", || !sleeping("600.102"));
}

/// `sleep 600 &` and exit 0: the step succeeds, and what it left behind dies with it (its pid
/// namespace ends with its first process).
#[tokio::test]
async fn what_a_step_leaves_behind_dies_when_it_ends() {
    let rendered = job(
        &json!([leaves_a_sleep("600.103", false)]),
        &json!([sh("next", "echo next")]),
        None,
    );
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j5", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "slow"), ["started"]);
    assert_eq!(lines(&events, "next"), ["next"]);
    omni_test_support::wait_until("the step's sleep is gone", || !sleeping("600.103"));
}

#[test]
fn what_the_local_engine_cannot_run_is_refused_with_the_reason() {
    let mut no_command = sh("c", "true");
    no_command.as_object_mut().unwrap().remove("command");
    let mut secret_env = sh("c", "true");
    secret_env["env"] =
        json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
    let mut missing_key = sh("c", "true");
    missing_key["env"] =
        json!([{"name": "T", "valueFrom": {"configMapKeyRef": {"name": "in", "key": "nope"}}}]);
    for (container, expected) in [
        (no_command, "has no command"),
        (secret_env, "comes from neither a value nor a ConfigMap key"),
        (missing_key, "names key \"nope\""),
    ] {
        let error = Plan::from_rendered(&job(&json!([]), &json!([container]), None)).unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }
    let mut hostpath = job(&json!([]), &json!([sh("c", "true")]), None);
    hostpath.manifests[1].body["spec"]["template"]["spec"]["volumes"][1] =
        json!({"name": "out", "hostPath": {"path": "/"}});
    assert!(matches!(
        Plan::from_rendered(&hostpath),
        Err(PlanError::Unsupported(_))
    ));
    let mut other = job(&json!([]), &json!([sh("c", "true")]), None);
    other.primary = "elsewhere".into();
    assert_eq!(
        Plan::from_rendered(&other),
        Err(PlanError::NoJob("elsewhere".into()))
    );
}

#[tokio::test]
async fn a_long_line_comes_in_pieces_and_binary_output_is_escaped() {
    // 40,000 bytes without a newline, then bytes that are not text, then a line without one.
    let script =
        "head -c 40000 /dev/zero | tr '\\0' a; echo; printf 'bin\\000\\377ary\\n'; printf last";
    let rendered = job(&json!([]), &json!([sh("print", script)]), None);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner
        .start("j-long", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let max = omni_engine::text::MAX_LINE_BYTES;
    let a = |n: usize| "a".repeat(n);
    assert_eq!(
        lines(&events, "print"),
        vec![
            a(max),
            a(max),
            a(40_000 - 2 * max),
            "bin\\x00\\xffary".to_owned(),
            "last".into()
        ]
    );
}

/// A runner whose sandbox has these limits.
fn limited(root: &std::path::Path, limits: omni_engine_local::sandbox::Limits) -> LocalRunner {
    LocalRunner::with_isolation(
        root,
        Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(SandboxConfig {
            limits,
            ..SandboxConfig::default()
        }))),
    )
}

/// Spec files are programs: `%(...)` in the spec and in a `defines` value runs when rpm reads
/// it, inside the sandbox only: the markers it writes are not on the host, and it runs as
/// uid 1000.
#[tokio::test]
async fn a_spec_that_runs_commands_runs_them_in_the_sandbox() {
    let spec = SPEC.replace(
        "Summary: Says hello",
        "Summary: uid %(id -u)%(touch /tmp/omni-attack-spec)",
    );
    let params = json!({"spec": spec, "sources": {"hello.sh": "IyEvYmluL3NoCmVjaG8gaGVsbG8K"},
                        "defines": {"dist": ".x%(touch /tmp/omni-attack-defines)"}});
    let plan = Plan::from_rendered(&render("srpm", params).await).unwrap();
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner.start("attack-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert!(!std::path::Path::new("/tmp/omni-attack-spec").exists());
    assert!(!std::path::Path::new("/tmp/omni-attack-defines").exists());
    let srpm = runner
        .volume_dir("attack-1", "output")
        .join("hello-1.0-1.x.src.rpm");
    let summary = Command::new("rpm")
        .args(["-qp", "--qf", "%{SUMMARY}"])
        .arg(&srpm)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&summary.stdout),
        "uid 1000",
        "{srpm:?}"
    );
}

/// What a step may try to read of the server's: its environment and everything else under
/// `/proc/<server pid>`, the job directories of other jobs (the data directory), the host's
/// `/root`: none of it is there.
#[tokio::test]
async fn a_step_sees_nothing_of_the_server_or_other_jobs() {
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let other = job(
        &json!([]),
        &json!([sh("secret", "echo secret > /out/secret")]),
        None,
    );
    let mut run = runner
        .start("victim", Plan::from_rendered(&other).unwrap())
        .unwrap();
    assert_eq!(finish(&mut run).await.1, Outcome::Succeeded);
    let server = std::process::id();
    let victim = runner.volume_dir("victim", "out").join("secret");
    let script = format!(
        "cat /proc/{server}/environ || echo no-server; cat {} || echo no-victim; ls /root || echo no-root; \
         echo \"processes $(ls -d /proc/[0-9]* | wc -l)\"; env | sort | tr '\\n' ' '",
        victim.display()
    );
    let rendered = job(&json!([]), &json!([sh("snoop", &script)]), None);
    let mut run = runner
        .start("attacker", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let said = lines(&events, "snoop");
    for expected in ["no-server", "no-victim", "no-root"] {
        assert!(said.iter().any(|l| l == expected), "{said:#?}");
    }
    // sh, ls and wc, with bubblewrap's init: the step's processes only.
    let count: usize = said
        .iter()
        .find_map(|l| l.strip_prefix("processes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(count <= 5, "{said:#?}");
    let env = said.last().unwrap();
    assert!(
        env.starts_with("HOME=/home/omni IN=/in LANG=C.UTF-8 OUT=/out/sub PATH=")
            && !env.contains("CARGO"),
        "{env}"
    );
}

/// A fork bomb stops at the process limit and ends with its step; the next job runs.
#[tokio::test]
async fn a_fork_bomb_ends_with_its_step() {
    let root = tempfile::tempdir().unwrap();
    let runner = limited(
        root.path(),
        omni_engine_local::sandbox::Limits {
            processes: 32,
            ..Default::default()
        },
    );
    let bomb = "echo started; omni_bomb_7731() { omni_bomb_7731 | omni_bomb_7731 & }; omni_bomb_7731; wait";
    let rendered = job(&json!([]), &json!([sh("bomb", bomb)]), Some(3));
    let mut run = runner
        .start("bomb", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, _) = finish(&mut run).await;
    // Forks past the limit are refused ("Cannot fork"); how the step ends depends on which
    // shell met the refusal first (dash exits 2 at the top, or `wait` returns 0): it ends, by
    // itself or at the deadline, and takes every process of the bomb with it.
    assert!(
        lines(&events, "bomb")
            .iter()
            .any(|l| l.contains("Cannot fork")),
        "{events:#?}"
    );
    omni_test_support::wait_until("the bomb's processes are gone", || {
        !std::fs::read_dir("/proc").unwrap().any(|e| {
            std::fs::read(e.unwrap().path().join("cmdline"))
                .unwrap_or_default()
                .windows(14)
                .any(|w| w == b"omni_bomb_7731")
        })
    });
    let next = job(&json!([]), &json!([sh("next", "echo next")]), None);
    let mut run = runner
        .start("after-bomb", Plan::from_rendered(&next).unwrap())
        .unwrap();
    assert_eq!(finish(&mut run).await.1, Outcome::Succeeded);
}

/// A file larger than the limit is not written past it, and the step fails.
#[tokio::test]
async fn a_file_larger_than_the_limit_ends_the_step() {
    let root = tempfile::tempdir().unwrap();
    let runner = limited(
        root.path(),
        omni_engine_local::sandbox::Limits {
            file_size_mib: 1,
            ..Default::default()
        },
    );
    let rendered = job(
        &json!([]),
        &json!([sh("big", "head -c 3M /dev/zero > /out/big")]),
        None,
    );
    let mut run = runner
        .start("big", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert!(
        matches!(outcome, Outcome::Failed(_)),
        "{outcome:?} {events:#?}"
    );
    let size = std::fs::metadata(runner.volume_dir("big", "out").join("big"))
        .unwrap()
        .len();
    assert_eq!(size, 1 << 20);
}
