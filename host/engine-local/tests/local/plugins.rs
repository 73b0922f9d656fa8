//! The real plugins' jobs, rendered by the plugins and run for real.

use super::*;

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
        files.contains("hello.sh") && files.contains("hello.spec"),
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

/// The iso plugin's customize mode: a base ISO fetched over HTTP from a server on this
/// machine's own address by the template's `fetch`, the step it gives network
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
    let listener = tokio::net::TcpListener::bind((host_address(), 0))
        .await
        .unwrap();
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

    // The base ISO comes over the network: the template's `fetch` asks for it, and gets a
    // network of its own (slirp4netns), which reaches the server on this machine's address.
    let plan = Plan::from_rendered(&rendered).unwrap();
    let asking: Vec<(&str, bool)> = plan
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.network))
        .collect();
    assert_eq!(asking, [("fetch", true), ("customize", false)]);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner.start("iso-1", plan).unwrap();
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

fn git(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// The srpm plugin's job with `scm_url`: its `fetch` step (the one step the template gives
/// network) clones a git repository served over HTTP ("dumb" protocol) on this machine's own
/// address through slirp4netns, and `build`, which has none, makes the source RPM from it.
#[tokio::test]
async fn an_srpm_job_clones_its_scm_url_through_the_steps_own_network() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    std::fs::create_dir_all(work.join("hello")).unwrap();
    std::fs::write(work.join("hello/hello.spec"), SPEC).unwrap();
    std::fs::write(work.join("hello/hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "hello"]);
    let served = scratch.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = served.join("hello.git");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(&work)
        .arg(&bare)
        .status()
        .unwrap();
    assert!(status.success());
    git(&bare, &["update-server-info"]);

    let listener = tokio::net::TcpListener::bind((host_address(), 0))
        .await
        .unwrap();
    let url = format!("http://{}/hello.git", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&requests);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let path = served.join(uri.path().trim_start_matches('/'));
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            match std::fs::read(&path) {
                Ok(bytes) if !uri.path().contains("..") => Ok(bytes),
                _ => Err(axum::http::StatusCode::NOT_FOUND),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let templates = scratch.path().join("templates");
    omni_test_support::copy_templates("srpm", &templates);
    let settings = templates.join("srpm/settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(text.contains("allow_insecure_scm: false"), "{text}");
    std::fs::write(
        &settings,
        text.replace("allow_insecure_scm: false", "allow_insecure_scm: true"),
    )
    .unwrap();
    let sandbox =
        omni_test_support::sandbox_over(&templates, omni_runtime::SandboxConfig::default());
    let (_plugins, registry) = omni_test_support::registry(sandbox, &["srpm"]);
    let params = json!({"scm_url": url, "ref": "main", "spec_path": "hello/hello.spec"});
    let rendered = registry
        .get("srpm")
        .unwrap()
        .serialize(omni_test_support::job("x86_64"), params.to_string())
        .await
        .unwrap();
    let plan = Plan::from_rendered(&rendered).unwrap();
    let asking: Vec<(&str, bool)> = plan
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.network))
        .collect();
    assert_eq!(asking, [("fetch", true), ("build", false)]);
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let mut run = runner.start("scm-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(
        lines(&events, "fetch")
            .iter()
            .any(|l| l.starts_with("checked out main at ")),
        "{events:#?}"
    );
    let srpm = runner
        .volume_dir("scm-1", "output")
        .join("hello-1.0-1.src.rpm");
    let files = Command::new("rpm").arg("-qpl").arg(&srpm).output().unwrap();
    let files = String::from_utf8_lossy(&files.stdout);
    assert!(
        files.contains("hello.sh") && files.contains(".spec"),
        "{files}"
    );
}
