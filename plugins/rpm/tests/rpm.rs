//! The `rpm` plugin against the repository's `templates/rpm`: golden manifests, the contract
//! (`describe`), and one test per kind of bad params, each asserting the field's JSON Pointer.

// The whole file is test code; clippy.toml's allow-unwrap-in-tests covers only `#[test]` fns.
#![allow(clippy::unwrap_used)]

use omni_plugin_rpm::Rpm;
use omni_sdk::testing::{Harness, assert_prepared_answers_as_fresh, check_kubernetes_types, with};
use omni_sdk::{Error, Job, Plugin};
use serde_json::{Value, json};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates/rpm");

const SPEC: &str = "Name: hello\nVersion: 2.12.1\nRelease: 1%{?dist}\nSummary: Says hello\n\
License: GPLv3+\nSource0: hello-2.12.1.tar.gz\n\n%description\nSays \"hello\" # not a comment\n\n\
%prep\n%autosetup\n\n%build\n%configure\n%make_build\n\n%install\n%make_install\n\n%files\n\
%{_bindir}/hello\n";

fn harness() -> Harness<Rpm> {
    Harness::new(TEMPLATES)
}

fn inline() -> Value {
    json!({
        "spec": SPEC,
        "sources": {"hello-2.12.1.tar.gz": "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAA", "fix-build.patch": "LS0tIGEKKysrIGIK"},
        "defines": {"dist": ".oe2403", "with_tests": "0"},
        "resources": {"cpu": "4", "memory": "8Gi"},
    })
}

fn scm() -> Value {
    json!({
        "scm_url": "https://gitee.com/src-openeuler/zlib.git",
        "ref": "openEuler-24.03-LTS",
        "spec_path": "zlib.spec",
        "timeout_seconds": 7200,
    })
}

#[test]
fn golden_inline_x86_64() {
    insta::assert_snapshot!(harness().render("x86_64", &inline()).to_yaml());
}

#[test]
fn golden_inline_aarch64() {
    insta::assert_snapshot!(harness().render("aarch64", &inline()).to_yaml());
}

#[test]
fn golden_scm_x86_64() {
    insta::assert_snapshot!(harness().render("x86_64", &scm()).to_yaml());
}

#[test]
fn golden_scm_aarch64() {
    insta::assert_snapshot!(harness().render("aarch64", &scm()).to_yaml());
}

#[test]
fn renders_the_node_arch_and_the_steps_in_order() {
    for (arch, node_arch) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        for params in [inline(), scm(), json!({"spec": SPEC})] {
            let rendered = harness().render(arch, &params);
            let job = &rendered
                .manifests
                .iter()
                .find(|m| m.kind == "Job")
                .unwrap()
                .body;
            let pod = &job["spec"]["template"]["spec"];
            assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], node_arch);
            let steps: Vec<&str> = ["initContainers", "containers"]
                .iter()
                .flat_map(|k| pod[k].as_array().unwrap())
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            assert_eq!(steps, Rpm::STEPS);
        }
    }
}

#[test]
fn job_and_config_map_carry_the_job_name_policy_and_inputs() {
    let rendered = harness().render("x86_64", &inline());
    let job_name = Job::example("x86_64").name;
    assert_eq!(rendered.primary, job_name);
    let cm = &rendered.manifests[0].body;
    assert_eq!(cm["metadata"]["name"], format!("{job_name}-input"));
    assert_eq!(cm["data"]["spec"], SPEC);
    assert_eq!(cm["data"]["macros"], "%dist .oe2403\n%with_tests 0\n");
    // Sources in name order, each under a key of its own with its mode and name beside it.
    assert_eq!(cm["binaryData"]["source-0"], "LS0tIGEKKysrIGIK");
    assert_eq!(cm["data"]["source-0.meta"], "0644 fix-build.patch");
    assert_eq!(cm["data"]["source-1.meta"], "0644 hello-2.12.1.tar.gz");
    let job = &rendered.manifests[1].body;
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86400);
    let build = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        build["resources"]["limits"],
        json!({"cpu": "4", "memory": "8Gi"})
    );
    assert_eq!(build["resources"]["requests"], build["resources"]["limits"]);
    assert!(
        build["command"][2]
            .as_str()
            .unwrap()
            .contains("rpmbuild -bb ${nodeps:+\"$nodeps\"} --define \"_topdir $OMNI_WORK\"")
    );
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["omni.io/task"], "rpm");
}

#[test]
fn scm_values_reach_the_fetch_step_only_as_env_vars() {
    let hostile = json!({
        "scm_url": "https://example.com/$(reboot)`id`.git",
        "ref": "main",
        "spec_path": "a/b.spec",
    });
    let rendered = harness().render("x86_64", &hostile);
    let job = &rendered.manifests[1].body;
    let fetch = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert!(!fetch["command"][2].as_str().unwrap().contains("reboot"));
    let env: Vec<(&str, &str)> = fetch["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(env.contains(&("SCM_URL", "https://example.com/$(reboot)`id`.git")));
    assert!(env.contains(&("SPEC_FILE", "b.spec")));
    assert!(env.contains(&("OMNI_WORK", "/work")));
    // No spec nor sources in the ConfigMap of a job built from git.
    assert!(rendered.manifests[0].body["data"].get("spec").is_none());
    assert!(rendered.manifests[0].body.get("binaryData").is_none());
}

#[test]
fn describe_names_the_contract() {
    let d = harness().describe();
    assert_eq!(d.task, "rpm");
    assert_eq!(d.arches, ["x86_64", "aarch64"]);
    assert_eq!(d.steps, ["fetch", "deps", "build"]);
    let schema = &d.params_schema;
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["oneOf"][0]["required"], json!(["spec"]));
    assert_eq!(
        schema["oneOf"][1]["required"],
        json!(["scm_url", "ref", "spec_path"])
    );
    assert_eq!(schema["properties"]["scm_url"]["pattern"], r"^https://\S+$");
    assert_eq!(schema["properties"]["timeout_seconds"]["minimum"], 60);
    assert_eq!(schema["properties"]["timeout_seconds"]["maximum"], 172_800);
    assert_eq!(schema["properties"]["timeout_seconds"]["default"], 3600);
    assert!(schema["properties"]["spec_path"]["pattern"].is_string());
    assert_eq!(schema["properties"]["sources"]["maxProperties"], 500);
    assert_eq!(schema["properties"]["defines"]["maxProperties"], 100);
    assert!(
        !schema["description"].as_str().unwrap().contains('['),
        "no rustdoc links for users"
    );
}

#[test]
fn both_forms_validate() {
    assert_eq!(harness().validate(&inline()), Ok(()));
    assert_eq!(harness().validate(&scm()), Ok(()));
    assert_eq!(harness().validate(&json!({"spec": SPEC})), Ok(()));
}

#[test]
fn unknown_key_is_reported_at_the_key() {
    let errors = harness()
        .validate(&with(inline(), "colour", json!("red")))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/colour");
    assert!(
        errors[0].message.contains("unknown field `colour`"),
        "{}",
        errors[0].message
    );
}

#[test]
fn unknown_key_inside_resources_is_reported_at_the_key() {
    let params = with(inline(), "resources", json!({"cpu": "1", "gpu": "1"}));
    assert_eq!(harness().error_paths(&params), ["/resources/gpu"]);
}

#[test]
fn wrong_type() {
    assert_eq!(
        harness().error_paths(&with(scm(), "timeout_seconds", json!("1h"))),
        ["/timeout_seconds"]
    );
    assert_eq!(
        harness().error_paths(&with(inline(), "spec", json!(["Name: x"]))),
        ["/spec"]
    );
}

#[test]
fn timeout_out_of_range() {
    assert_eq!(
        harness().error_paths(&with(scm(), "timeout_seconds", json!(59))),
        ["/timeout_seconds"]
    );
    assert_eq!(
        harness().error_paths(&with(scm(), "timeout_seconds", json!(172_801))),
        ["/timeout_seconds"]
    );
}

#[test]
fn bad_resources() {
    let params = with(scm(), "resources", json!({"cpu": "lots"}));
    assert_eq!(harness().error_paths(&params), ["/resources/cpu"]);
}

#[test]
fn non_https_scm_url_is_refused_by_default() {
    for url in [
        "http://example.com/a.git",
        "git://example.com/a.git",
        "ssh://example.com/a.git",
        "file:///etc",
    ] {
        let errors = harness()
            .validate(&with(scm(), "scm_url", json!(url)))
            .unwrap_err();
        assert_eq!(errors.len(), 1, "{url}");
        assert_eq!(errors[0].path, "/scm_url");
        assert_eq!(errors[0].message, "must be an https:// URL");
    }
}

#[test]
fn scm_url_with_credentials_is_refused() {
    let params = with(
        scm(),
        "scm_url",
        json!("https://me:token@example.com/a.git"),
    );
    assert_eq!(harness().error_paths(&params), ["/scm_url"]);
}

/// A copy of the templates with `settings.yaml` changed by `edit`, removed on drop.
struct Templates(std::path::PathBuf);

impl Templates {
    fn edited(name: &str, edit: impl Fn(String) -> String) -> Self {
        let dir = std::env::temp_dir().join(format!("omni-rpm-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(TEMPLATES).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let settings = std::fs::read_to_string(dir.join("settings.yaml")).unwrap();
        std::fs::write(dir.join("settings.yaml"), edit(settings)).unwrap();
        Self(dir)
    }
}

impl Drop for Templates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn http_and_git_scm_urls_are_accepted_when_settings_allow_them() {
    let templates = Templates::edited("insecure", |s| {
        s.replace("allow_insecure_scm: false", "allow_insecure_scm: true")
    });
    let harness = Harness::<Rpm>::new(&templates.0);
    for url in ["http://example.com/a.git", "git://example.com/a.git"] {
        let params = with(scm(), "scm_url", json!(url));
        assert_eq!(harness.validate(&params), Ok(()));
        check_kubernetes_types(&harness.serialize(&Job::example("x86_64"), &params).unwrap())
            .unwrap();
    }
    let errors = harness
        .validate(&with(scm(), "scm_url", json!("ssh://example.com/a.git")))
        .unwrap_err();
    assert_eq!(errors[0].path, "/scm_url");
    assert_eq!(
        errors[0].message,
        "must be an https://, http:// or git:// URL"
    );
}

#[test]
fn broken_settings_fail_serialize_as_a_template_error() {
    let templates = Templates::edited("broken", |s| s.replace("images:", "imagez:"));
    let harness = Harness::<Rpm>::new(&templates.0);
    // validate still answers, with the default policy.
    assert_eq!(harness.validate(&scm()), Ok(()));
    assert_eq!(
        harness.error_paths(&with(scm(), "scm_url", json!("http://e.com/a"))),
        ["/scm_url"]
    );
    let err = harness
        .serialize(&Job::example("x86_64"), &scm())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Template(m) if m.starts_with("settings.yaml: ")),
        "{err:?}"
    );
}

#[test]
fn both_spec_forms_given() {
    let mut params = inline();
    params["scm_url"] = json!("https://example.com/a.git");
    params["spec_path"] = json!("a.spec");
    let errors = harness().validate(&params).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/scm_url", "/spec_path"]);
    assert!(errors[0].message.starts_with("not allowed with `spec`"));
}

#[test]
fn neither_spec_form_given() {
    let errors = harness()
        .validate(&json!({"defines": {"dist": ".oe1"}}))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/spec");
    assert!(errors[0].message.starts_with("missing"));
}

#[test]
fn incomplete_scm_form_names_what_is_missing() {
    let errors = harness()
        .validate(&json!({"scm_url": "https://example.com/a.git"}))
        .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/ref", "/spec_path"]);
    assert!(errors.iter().all(|e| e.message.starts_with("missing")));
}

#[test]
fn sources_are_not_allowed_with_scm() {
    let params = with(scm(), "sources", json!({"a.patch": "YQ=="}));
    assert_eq!(harness().error_paths(&params), ["/sources"]);
}

#[test]
fn bad_source_names() {
    for (name, pointer) in [
        ("../etc/passwd", "/sources/..~1etc~1passwd"),
        ("a/b", "/sources/a~1b"),
        ("", "/sources/"),
        (".", "/sources/."),
        ("..", "/sources/.."),
        ("a\0b", "/sources/a\0b"),
    ] {
        let params = with(inline(), "sources", json!({ name: "YQ==" }));
        assert_eq!(harness().error_paths(&params), [pointer], "{name}");
    }
    let long = "x".repeat(256);
    let params = with(inline(), "sources", json!({ long.clone(): "YQ==" }));
    assert_eq!(harness().error_paths(&params), [format!("/sources/{long}")]);
}

#[test]
fn bad_base64() {
    for content in ["not base64!", "YQ", "Y Q==", "-_-_"] {
        let params = with(inline(), "sources", json!({"a.patch": content}));
        assert_eq!(
            harness().error_paths(&params),
            ["/sources/a.patch"],
            "{content}"
        );
    }
}

#[test]
fn oversize_inline_sources() {
    // 600 KiB of zeros: every 3 bytes are `AAAA` in base64.
    let big = "AAAA".repeat(600 * 1024 / 3);
    let params = with(inline(), "sources", json!({"a.tar": big, "b.tar": big}));
    let errors = harness().validate(&params).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/sources");
    assert!(
        errors[0].message.contains("scm_url"),
        "{}",
        errors[0].message
    );
    // One that fits is fine.
    assert_eq!(
        harness().validate(&with(inline(), "sources", json!({"a.tar": big}))),
        Ok(())
    );
}

#[test]
fn oversize_inline_spec() {
    let params = json!({"spec": "#".repeat(omni_sdk::k8s::CONFIG_MAP_DATA_LIMIT + 1)});
    assert_eq!(harness().error_paths(&params), ["/spec"]);
}

#[test]
fn spec_path_traversal_and_shape() {
    for path in [
        "../x.spec",
        "a/../../x.spec",
        "/etc/x.spec",
        "a//x.spec",
        "x.txt",
        ".spec",
        "-x.spec",
    ] {
        let params = with(scm(), "spec_path", json!(path));
        assert_eq!(harness().error_paths(&params), ["/spec_path"], "{path}");
    }
    assert_eq!(
        harness().validate(&with(scm(), "spec_path", json!("pkgs/zlib-1.3/zlib.spec"))),
        Ok(())
    );
}

#[test]
fn bad_refs() {
    for git_ref in ["-bmain", "main..dev", "a b", "$(id)", "main.", ""] {
        let params = with(scm(), "ref", json!(git_ref));
        assert_eq!(harness().error_paths(&params), ["/ref"], "{git_ref:?}");
    }
    for git_ref in [
        "v1.2.3",
        "refs/pull/7/head",
        "0123abcd",
        "openEuler-24.03-LTS",
    ] {
        assert_eq!(
            harness().validate(&with(scm(), "ref", json!(git_ref))),
            Ok(()),
            "{git_ref}"
        );
    }
}

#[test]
fn bad_define_names_and_values() {
    for (name, value, pointer) in [
        ("9lives", "1", "/defines/9lives"),
        ("with-tests", "1", "/defines/with-tests"),
        ("%dist", "1", "/defines/%dist"),
        ("dist", "a\n%_topdir /", "/defines/dist"),
        ("dist", "", "/defines/dist"),
    ] {
        let params = with(scm(), "defines", json!({ name: value }));
        assert_eq!(
            harness().error_paths(&params),
            [pointer],
            "{name} {value:?}"
        );
    }
}

#[test]
fn serialize_refuses_bad_params_and_unknown_arches() {
    let err = harness()
        .serialize(&Job::example("x86_64"), &json!({}))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParams(e) if e[0].path == "/spec"),
        "{err:?}"
    );
    let err = harness()
        .serialize(&Job::example("riscv64"), &scm())
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)));
}

/// What the host's pre-initialized snapshot serves (settings parsed and `TEMPLATES` compiled
/// once, shared by every call) is what a fresh instance answers.
#[test]
fn a_prepared_plugin_answers_as_a_fresh_one() {
    let bad = with(inline(), "spec", json!(7));
    assert!(harness().validate(&bad).is_err());
    assert_prepared_answers_as_fresh::<Rpm>(TEMPLATES, &[inline(), scm(), bad]);
}
