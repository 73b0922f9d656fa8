//! What a step cannot do in the sandbox: reach the network unasked, run a spec's commands on
//! the host, see the server or other jobs, exceed its limits.

use super::*;

/// A step gets no network unless it asks and the engine allows: without, a socket to the
/// host's loopback (where Omni's API listens) reaches nothing; asking where the engine gives
/// none (`network = "none"`) fails before the step starts, saying why; with the default
/// (`"user"`) the host's loopback stays out of reach; with `network = "host"` it connects.
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
    let none = Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(SandboxConfig {
        network: Network::None,
        ..SandboxConfig::default()
    })));
    let (_, outcome) = run_on(LocalRunner::with_isolation(root.path(), none), "n2", true).await;
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("asks for network") && m.contains("network = \"none\"")),
        "{outcome:?}"
    );
    // The default ("user", `network.rs`): a network of its own, whose 127.0.0.1 is not the
    // host's.
    let (events, outcome) = run_on(LocalRunner::new(root.path()), "n4", true).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "net").last().unwrap(), "refused");
    let (events, outcome) = run_on(
        LocalRunner::with_isolation(root.path(), host_network()),
        "n3",
        true,
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "net"), ["connected"]);
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
/// root of the job's own root only, the job's uid outside.
#[tokio::test]
async fn a_spec_that_runs_commands_runs_them_in_the_sandbox() {
    let spec = SPEC.replace(
        "Summary: Says hello",
        "Summary: uid %(id -u)%(touch /home/omni/made-by-the-spec)%(touch /tmp/omni-attack-spec)",
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
    // srpm's build runs as root of its own root (securityContext.runAsUser: 0), which is the
    // job's own uid outside, never the host's root: what it made in its home is that uid's.
    assert_eq!(
        String::from_utf8_lossy(&summary.stdout),
        "uid 0",
        "{srpm:?}"
    );
    let made = run.dir().join("home/made-by-the-spec");
    let outside = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&made).unwrap());
    if rustix::process::geteuid().is_root() {
        assert!(outside >= SandboxConfig::default().first_uid, "{outside}");
    } else {
        assert_eq!(outside, rustix::process::geteuid().as_raw());
    }
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
