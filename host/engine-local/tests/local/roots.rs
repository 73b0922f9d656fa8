//! Build roots: a root directory configured for an arch is the `/` of that arch's jobs, and
//! writable for each job alone (overlayfs when the server is root); other arches see the host's
//! paths. The root is made here from a static busybox (`busybox-static`, installed by
//! `make setup`): no image can be pulled.

use std::path::Path;

use super::*;

/// A root of busybox's applets, an `/etc/os-release` of its own and nothing of the host's.
fn busybox_root(dir: &Path) {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox: `make setup` installs busybox-static");
    for sub in ["bin", "etc", "usr/share", "var", "home"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "id", "test", "ls"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/os-release"), "ID=omni-test-root\n").unwrap();
    for file in ["etc/passwd", "etc/group"] {
        std::fs::write(dir.join(file), "").unwrap();
    }
}

fn as_root(mut step: Value) -> Value {
    step["securityContext"] = json!({"runAsUser": 0, "runAsGroup": 0});
    step
}

#[tokio::test]
async fn a_configured_root_is_its_arch_jobs_slash_and_writable_for_each_alone() {
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("x86_64-root");
    busybox_root(&rootfs);
    let config = SandboxConfig {
        roots: [("x86_64".to_owned(), rootfs.clone())].into(),
        ..SandboxConfig::default()
    };
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::with_isolation(
        root.path(),
        Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(config))),
    );
    let rendered = job(
        &json!([as_root(sh(
            "install",
            "echo from-the-job > /usr/share/installed && id -u && cat /etc/os-release"
        ))]),
        &json!([sh(
            "use",
            "cat /usr/share/installed; id -u; test -e /usr/bin/dpkg || echo no-host-usr"
        )]),
        None,
    );
    let mut plan = Plan::from_rendered(&rendered).unwrap();
    plan.arch = Some("x86_64".into());
    let mut run = runner.start("rooted", plan.clone()).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "install"), ["0", "ID=omni-test-root"]);
    let used = lines(&events, "use");
    if rustix::process::geteuid().is_root() {
        // What `install` wrote into its root is there for the job's next step...
        assert_eq!(used, ["from-the-job", "1000", "no-host-usr"]);
        // ...and nowhere else: not in the root directory, and the job's layer is gone.
        assert!(!rootfs.join("usr/share/installed").exists());
        assert!(!run.dir().join("root").exists());
        // A second job starts from the root as configured.
        let mut again = runner
            .start("rooted-again", {
                let mut plan = Plan::from_rendered(&job(
                    &json!([]),
                    &json!([sh("look", "cat /usr/share/installed || echo clean")]),
                    None,
                ))
                .unwrap();
                plan.arch = Some("x86_64".into());
                plan
            })
            .unwrap();
        let (events, outcome) = finish(&mut again).await;
        assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
        assert!(lines(&events, "look").contains(&"clean".to_owned()));
    }
    // Another arch has no root configured: the host's paths.
    plan.arch = Some("aarch64".into());
    plan.steps.retain(|s| s.name == "use");
    let mut other = runner.start("host-paths", plan).unwrap();
    let (events, _) = finish(&mut other).await;
    assert!(
        !lines(&events, "use").contains(&"no-host-usr".to_owned()),
        "{events:#?}"
    );
}
