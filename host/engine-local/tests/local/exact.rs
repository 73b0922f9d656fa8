//! Exact builds: a package the test writes (a 0755 source, a source named with `@`, one named
//! like a shell command) built by the srpm and rpm plugins' jobs and by `rpmbuild` run directly,
//! and the packages compared as a packager would (header, files with digests and modes,
//! requires, provides, scripts); BuildRequires installed from a file:// repository into the
//! job's own root, never the host's; a root without dnf building as `--nodeps` would.

use std::path::{Path, PathBuf};

use super::*;

const SPEC: &str = "Name: omni-exact\nVersion: 1.0\nRelease: 1%{?dist}\nSummary: Built twice\n\
License: MIT\nBuildArch: noarch\nSource0: omni-exact@.service\nSource1: run.sh\n\
Source2: $(touch omni-marker)\nRequires: /bin/sh\nProvides: omni-exact-check = 1.0\n\n\
%description\nBuilt by Omni and by rpmbuild, then compared.\n\n%install\n\
install -D -m 0644 %{SOURCE0} %{buildroot}/usr/lib/systemd/system/omni-exact@.service\n\
mkdir -p %{buildroot}/usr/libexec/omni-exact\ncp -p %{SOURCE1} %{buildroot}/usr/libexec/omni-exact/run.sh\n\n\
%post\necho installed\n\n%files\n/usr/lib/systemd/system/omni-exact@.service\n/usr/libexec/omni-exact/run.sh\n";

/// The sources: name, content, mode.
const SOURCES: [(&str, &str, u32); 3] = [
    (
        "omni-exact@.service",
        "[Service]\nExecStart=/usr/libexec/omni-exact/run.sh %i\n",
        0o644,
    ),
    ("run.sh", "#!/bin/sh\necho \"$@\"\n", 0o755),
    ("$(touch omni-marker)", "not a command\n", 0o644),
];

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn params() -> Value {
    let mut sources = serde_json::Map::new();
    for (name, content, mode) in SOURCES {
        sources.insert(
            name.to_owned(),
            json!({"content": b64(content), "mode": format!("{mode:04o}")}),
        );
    }
    json!({"spec": SPEC, "sources": sources, "defines": {"dist": ".omni"}})
}

/// Builds with rpmbuild run directly, in a `_topdir` of its own: `-bs` or `-bb`.
fn direct(topdir: &Path, mode: &str) -> PathBuf {
    for dir in ["SPECS", "SOURCES"] {
        std::fs::create_dir_all(topdir.join(dir)).unwrap();
    }
    std::fs::write(topdir.join("SPECS/omni-exact.spec"), SPEC).unwrap();
    for (name, content, mode) in SOURCES {
        let path = topdir.join("SOURCES").join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    }
    let status = Command::new("rpmbuild")
        .arg(mode)
        .arg("--define")
        .arg(format!("_topdir {}", topdir.display()))
        .args(["--define", "dist .omni"])
        .arg(topdir.join("SPECS/omni-exact.spec"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let dir = if mode == "-bs" {
        "SRPMS"
    } else {
        "RPMS/noarch"
    };
    std::fs::read_dir(topdir.join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap()
}

/// What a packager compares of a package: its header (but build time and host), files with
/// size, digest, mode, owner and flags (but mtime), requires, provides and scripts.
fn inspect(package: &Path) -> Vec<String> {
    let query = |args: &[&str]| {
        let out = Command::new("rpm")
            .arg("-qp")
            .args(args)
            .arg(package)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let header = query(&[
        "--qf",
        "%{NAME} %{EPOCH} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE} %{SUMMARY}\n%{DESCRIPTION}\n\
         %{SOURCERPM} %{PAYLOADCOMPRESSOR} %{PAYLOADFLAGS}\n[%{SOURCE}\n][%{PATCH}\n]",
    ]);
    // --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink.
    let files = query(&["-l", "--dump"])
        .lines()
        .map(|line| {
            // From the right: a path may hold spaces.
            let mut fields: Vec<&str> = line.rsplitn(11, ' ').collect();
            fields.reverse();
            if fields.len() == 11 {
                fields.remove(2);
            }
            fields.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        header,
        files,
        query(&["--requires"]),
        query(&["--provides"]),
        query(&["--scripts"]),
    ]
}

#[tokio::test]
async fn omni_builds_what_rpmbuild_builds() {
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let scratch = tempfile::tempdir().unwrap();
    for (task, mode) in [("srpm", "-bs"), ("rpm", "-bb")] {
        let plan = Plan::from_rendered(&render(task, params()).await).unwrap();
        // Root of the job's own root where rpm writes as root; srpm's build changes nothing of
        // it (so no writable root is prepared), rpm's build installs into it.
        let build = plan.steps.iter().find(|s| s.name == "build").unwrap();
        assert_eq!(
            (build.user, build.read_only_root),
            (Some(0), task == "srpm")
        );
        let mut run = runner.start(task, plan).unwrap();
        let (events, outcome) = finish(&mut run).await;
        assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
        let built: Vec<PathBuf> = std::fs::read_dir(runner.volume_dir(task, "output"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(built.len(), 1, "{built:?}");
        let direct = direct(&scratch.path().join(task), mode);
        assert_eq!(
            built[0].file_name(),
            direct.file_name(),
            "{task}: the same package file"
        );
        let (ours, theirs) = (inspect(&built[0]), inspect(&direct));
        for (ours, theirs) in ours.iter().zip(&theirs) {
            assert_eq!(ours, theirs, "{task}");
        }
        if task == "srpm" {
            // The spec under its own name, each source under its literal name with its mode.
            let files = &ours[1];
            assert!(files.contains("omni-exact.spec "), "{files}");
            assert!(
                files.contains("run.sh ") && files.contains(" 0100755 "),
                "{files}"
            );
            assert!(files.contains("omni-exact@.service "), "{files}");
            assert!(files.contains("$(touch omni-marker) "), "{files}");
        } else {
            assert!(
                ours[1].contains("/usr/libexec/omni-exact/run.sh "),
                "{}",
                ours[1]
            );
        }
        // The name that looks like a command was a name: nothing ran it.
        let work = runner.volume_dir(task, "work");
        assert!(!work.join("omni-marker").exists() && !work.join("SOURCES/omni-marker").exists());
        assert!(
            run.dir()
                .join("home")
                .read_dir()
                .unwrap()
                .all(|e| e.unwrap().file_name() != "omni-marker")
        );
    }
}

/// A copy of the rpm task's templates with `deps:` replaced; the plugin registry over it.
async fn render_with_deps(params: Value, deps: &str) -> (tempfile::TempDir, Rendered) {
    let scratch = tempfile::tempdir().unwrap();
    let templates = scratch.path().join("templates");
    omni_test_support::copy_templates("rpm", &templates);
    let settings = templates.join("rpm/settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let head = &text[..text.find("\ndeps:").unwrap()];
    std::fs::write(&settings, format!("{head}\n{deps}")).unwrap();
    let sandbox =
        omni_test_support::sandbox_over(&templates, omni_runtime::SandboxConfig::default());
    let (_plugins, registry) = omni_test_support::registry(sandbox, &["rpm"]);
    let rendered = registry
        .get("rpm")
        .unwrap()
        .serialize(omni_test_support::job("x86_64"), params.to_string())
        .await
        .unwrap();
    (scratch, rendered)
}

const NEEDS_DEP: &str = "Name: omni-uses-dep\nVersion: 1\nRelease: 1\nSummary: x\nLicense: MIT\n\
BuildArch: noarch\nBuildRequires: omni-dep >= 1\n\n%description\nx\n\n%install\n\
mkdir -p %{buildroot}/usr/share/omni-uses-dep\n\
cp /usr/share/omni-dep/marker %{buildroot}/usr/share/omni-uses-dep/\n\n%files\n/usr/share/omni-uses-dep/marker\n";

/// `omni-dep`, built here and made a repository with createrepo_c, in `dir/repo`.
fn dep_repository(dir: &Path) -> PathBuf {
    let spec = dir.join("omni-dep.spec");
    std::fs::write(
        &spec,
        "Name: omni-dep\nVersion: 1\nRelease: 1\nSummary: x\nLicense: MIT\nBuildArch: noarch\n\
         AutoReqProv: no\n\n%description\nx\n\n%install\nmkdir -p %{buildroot}/usr/share/omni-dep\n\
         echo from-the-repository > %{buildroot}/usr/share/omni-dep/marker\n\n%files\n/usr/share/omni-dep/marker\n",
    )
    .unwrap();
    let built = Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", dir.join("top").display()))
        .arg(&spec)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(
        dir.join("top/RPMS/noarch/omni-dep-1-1.noarch.rpm"),
        repo.join("omni-dep-1-1.noarch.rpm"),
    )
    .unwrap();
    let made = Command::new("createrepo_c")
        .arg("-q")
        .arg(&repo)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    repo
}

/// A runner whose steps also see `extra` (read-only, or as an overlay layer), hiding `hide`.
fn runner_seeing(root: &Path, extra: &[&Path], hide: &[&str]) -> LocalRunner {
    let mut config = SandboxConfig::default();
    config
        .host_paths
        .extend(extra.iter().map(|p| p.to_path_buf()));
    config.hide.extend(hide.iter().map(PathBuf::from));
    LocalRunner::with_isolation(
        root,
        Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(config))),
    )
}

#[tokio::test]
async fn build_requires_go_into_the_jobs_own_root_from_the_operators_repository() {
    if Command::new("dnf").arg("--version").output().is_err() {
        panic!("dnf is not installed: `make setup` installs it (tests/setup.sh)");
    }
    // Where a step sees it: not below /tmp, /var or a volume's mount path (/work).
    let scratch = tempfile::tempdir_in("/run").unwrap();
    let repo = dep_repository(scratch.path());
    let deps = format!(
        "deps:\n  repositories:\n  - name: omni-test\n    baseurl: file://{}\n    gpgcheck: false\n",
        repo.display()
    );
    let (_templates, rendered) = render_with_deps(json!({"spec": NEEDS_DEP}), &deps).await;
    let root = tempfile::tempdir().unwrap();
    let runner = runner_seeing(root.path(), &[scratch.path()], &[]);
    let mut run = runner
        .start("needs-dep", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert!(
        lines(&events, "deps")
            .iter()
            .any(|l| l.contains("omni-dep-1-1.noarch.rpm")),
        "{events:#?}"
    );
    let rpm = runner
        .volume_dir("needs-dep", "output")
        .join("omni-uses-dep-1-1.noarch.rpm");
    let out = Command::new("rpm2cpio").arg(&rpm).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("from-the-repository"));
    // Installed in the job's root only: the host has no such file, and the job's root is gone.
    assert!(!Path::new("/usr/share/omni-dep").exists());
    assert!(!run.dir().join("root").exists());
}

#[tokio::test]
async fn a_root_without_dnf_builds_as_nodeps_would_unless_dnf_is_required() {
    // The host's dnf hidden: the root has none.
    let hide = ["/usr/bin/dnf", "/usr/bin/dnf-3"];
    let spec = NEEDS_DEP.replace(
        "cp /usr/share/omni-dep/marker %{buildroot}/usr/share/omni-uses-dep/",
        "echo built > %{buildroot}/usr/share/omni-uses-dep/marker",
    );
    let root = tempfile::tempdir().unwrap();
    let runner = runner_seeing(root.path(), &[], &hide);
    let (_t, rendered) =
        render_with_deps(json!({"spec": spec}), "deps:\n  require_dnf: false\n").await;
    let mut run = runner
        .start("nodeps", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let deps = lines(&events, "deps");
    assert!(
        deps.iter()
            .any(|l| l.contains("as rpmbuild --nodeps would")),
        "{deps:?}"
    );
    assert!(deps.iter().any(|l| l.contains("omni-dep >= 1")), "{deps:?}");

    let (_t, rendered) =
        render_with_deps(json!({"spec": spec}), "deps:\n  require_dnf: true\n").await;
    let mut run = runner
        .start("required", Plan::from_rendered(&rendered).unwrap())
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(
        outcome,
        Outcome::Failed("step deps exited with code 1".into()),
        "{events:#?}"
    );
    assert!(
        lines(&events, "deps")
            .iter()
            .any(|l| l.contains("deps.require_dnf"))
    );
}

#[tokio::test]
async fn rpms_own_message_names_what_is_wrong_with_a_spec() {
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    // A spec rpm cannot parse fails in deps, the first step that reads it, with rpm's message.
    let broken = SPEC.replace("%description", "%if 1\n%description");
    let plan = Plan::from_rendered(&render("rpm", json!({"spec": broken})).await).unwrap();
    let mut run = runner.start("broken", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(
        outcome,
        Outcome::Failed("step deps exited with code 1".into())
    );
    let said = lines(&events, "deps").join("\n");
    assert!(said.contains("%if"), "{said}");
    assert!(!said.contains("dnf"), "{said}");
    // A missing patch: rpmbuild's own "Bad file", not a dnf failure.
    let missing = SPEC
        .replace("Source2:", "Patch0: fix.patch\nSource2:")
        .replace(
            "%install",
            "%prep\n%setup -q -c -T\n%patch -P 0 -p1\n\n%install",
        );
    let mut sources = params()["sources"].clone();
    sources
        .as_object_mut()
        .unwrap()
        .remove("$(touch omni-marker)");
    let plan = Plan::from_rendered(
        &render("rpm", json!({"spec": missing.replace("Source2: $(touch omni-marker)\n", ""), "sources": sources})).await,
    )
    .unwrap();
    let mut run = runner.start("missing", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{events:#?}");
    let said: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Line { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert!(said.iter().any(|l| l.contains("fix.patch")), "{said:#?}");
}

/// Builds a package of someone else's through the srpm and rpm jobs, for comparing with a
/// direct rpmbuild by hand (README, "Exact builds"): `OMNI_EXACT_PACKAGE` is a directory
/// holding one `.spec` and its sources (a distribution's package repository), the packages go
/// to `OMNI_EXACT_OUT`, `OMNI_EXACT_DEFINES` is the jobs' `defines` as JSON, and
/// `OMNI_EXACT_HIDE` paths the steps must not see (`/usr/bin/dnf`, to build as `--nodeps`
/// would on a host whose dnf has no repositories); `OMNI_EXACT_TASKS` the tasks (`srpm,rpm`).
/// `cargo test -p omni-engine-local --test local -- --ignored a_package_of_someone_elses`.
#[tokio::test]
#[ignore = "needs OMNI_EXACT_PACKAGE and OMNI_EXACT_OUT"]
async fn a_package_of_someone_elses() {
    use std::os::unix::fs::PermissionsExt;
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let package = PathBuf::from(var("OMNI_EXACT_PACKAGE"));
    let out = PathBuf::from(var("OMNI_EXACT_OUT"));
    let defines: Value = std::env::var("OMNI_EXACT_DEFINES")
        .map_or(json!({}), |d| serde_json::from_str(&d).unwrap());
    let hide: Vec<String> = std::env::var("OMNI_EXACT_HIDE")
        .map(|h| h.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut spec = None;
    let mut sources = serde_json::Map::new();
    for entry in std::fs::read_dir(&package).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".spec") {
            spec = Some(std::fs::read_to_string(&path).unwrap());
        } else if path.is_file() && !name.starts_with('.') {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let content = std::fs::read(&path).unwrap();
            use base64::Engine as _;
            sources.insert(
                name,
                json!({"content": base64::engine::general_purpose::STANDARD.encode(content),
                       "mode": format!("{mode:04o}")}),
            );
        }
    }
    let params = json!({"spec": spec.expect("a .spec"), "sources": sources, "defines": defines});
    let root = tempfile::tempdir().unwrap();
    let hide: Vec<&str> = hide.iter().map(String::as_str).collect();
    let runner = runner_seeing(root.path(), &[], &hide);
    let tasks = std::env::var("OMNI_EXACT_TASKS").unwrap_or_else(|_| "srpm,rpm".into());
    for task in tasks.split(',') {
        let plan = Plan::from_rendered(&render(task, params.clone()).await).unwrap();
        let mut run = runner.start(task, plan).unwrap();
        let (events, outcome) = finish(&mut run).await;
        for event in &events {
            if let Event::Line { step, line, .. } = event {
                println!("{task}/{step}: {line}");
            }
        }
        assert_eq!(outcome, Outcome::Succeeded);
        std::fs::create_dir_all(&out).unwrap();
        for entry in std::fs::read_dir(runner.volume_dir(task, "output")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, out.join(path.file_name().unwrap())).unwrap();
        }
    }
}
