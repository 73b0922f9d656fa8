//! The `srpm` plugin against the repository's `templates/srpm`: golden manifests, the contract
//! (`describe`), and one test per kind of bad params, each asserting the field's JSON Pointer.
//! The params are `rpm`'s; these tests make sure `srpm` wires them up the same way.

// The whole file is test code; clippy.toml's allow-unwrap-in-tests covers only `#[test]` fns.
#![allow(clippy::unwrap_used)]

use omni_plugin_srpm::Srpm;
use omni_sdk::Plugin;
use omni_sdk::testing::{Harness, assert_prepared_answers_as_fresh, with};
use serde_json::{Value, json};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates/srpm");

const SPEC: &str = "Name: hello\nVersion: 2.12.1\nRelease: 1%{?dist}\nSummary: Says hello\n\
License: GPLv3+\nSource0: hello-2.12.1.tar.gz\n\n%description\nSays hello.\n\n%prep\n%autosetup\n\n\
%build\n%configure\n%make_build\n\n%install\n%make_install\n\n%files\n%{_bindir}/hello\n";

fn harness() -> Harness<Srpm> {
    Harness::new(TEMPLATES)
}

fn inline() -> Value {
    json!({
        "spec": SPEC,
        "sources": {"hello-2.12.1.tar.gz": "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAA"},
        "defines": {"dist": ".oe2403"},
    })
}

fn scm() -> Value {
    json!({
        "scm_url": "https://gitee.com/src-openeuler/zlib.git",
        "ref": "openEuler-24.03-LTS",
        "spec_path": "zlib.spec",
        "resources": {"cpu": "1", "memory": "1Gi"},
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

/// A source sent as an upload: its sha256 in the ConfigMap instead of its content, and the
/// `uploads` volume declared and mounted by `fetch` only.
#[test]
fn golden_upload_x86_64() {
    let params = json!({
        "spec": SPEC,
        "sources": {
            "hello-2.12.1.tar.gz": {"upload": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "mode": "0640"},
            "hello.patch": "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAA",
        },
    });
    insta::assert_snapshot!(harness().render("x86_64", &params).to_yaml());
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
        for params in [inline(), scm()] {
            let rendered = harness().render(arch, &params);
            let pod = &rendered.manifests[1].body["spec"]["template"]["spec"];
            assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], node_arch);
            let steps: Vec<&str> = ["initContainers", "containers"]
                .iter()
                .flat_map(|k| pod[k].as_array().unwrap())
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            assert_eq!(steps, Srpm::STEPS);
            let build = pod["containers"][0]["command"][2].as_str().unwrap();
            assert!(build.contains("rpmbuild -bs --nodeps"), "{build}");
        }
    }
}

#[test]
fn describe_names_the_contract() {
    let d = harness().describe();
    assert_eq!(d.task, "srpm");
    assert_eq!(d.arches, ["x86_64", "aarch64"]);
    assert_eq!(d.steps, ["fetch", "build"]);
    assert_eq!(d.params_schema["additionalProperties"], false);
    assert_eq!(d.params_schema["oneOf"].as_array().unwrap().len(), 2);
}

#[test]
fn both_forms_validate() {
    assert_eq!(harness().validate(&inline()), Ok(()));
    assert_eq!(harness().validate(&scm()), Ok(()));
}

#[test]
fn http_scm_url_is_accepted_only_when_settings_allow_it() {
    let params = with(scm(), "scm_url", json!("http://example.com/a.git"));
    assert_eq!(harness().error_paths(&params), ["/scm_url"]);

    let dir = std::env::temp_dir().join(format!("omni-srpm-insecure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(TEMPLATES).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let settings = std::fs::read_to_string(dir.join("settings.yaml")).unwrap();
    let settings = settings.replace("allow_insecure_scm: false", "allow_insecure_scm: true");
    std::fs::write(dir.join("settings.yaml"), settings).unwrap();
    let harness = Harness::<Srpm>::new(&dir);
    let result = harness.validate(&params);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result, Ok(()));
}

/// One test per kind of bad params: `name: params => the one JSON Pointer it is reported at`.
macro_rules! bad_params {
    ($($name:ident: $params:expr => $pointer:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(harness().error_paths(&$params), [$pointer]);
        }
    )*};
}

bad_params! {
    unknown_key: with(inline(), "colour", json!("red")) => "/colour";
    wrong_type: with(scm(), "timeout_seconds", json!("1h")) => "/timeout_seconds";
    timeout_too_short: with(scm(), "timeout_seconds", json!(10)) => "/timeout_seconds";
    non_https_scm_url: with(scm(), "scm_url", json!("git://example.com/a.git")) => "/scm_url";
    both_forms: with(inline(), "scm_url", json!("https://example.com/a.git")) => "/scm_url";
    neither_form: json!({"defines": {"dist": ".oe1"}}) => "/spec";
    missing_ref: json!({"scm_url": "https://example.com/a.git", "spec_path": "a.spec"}) => "/ref";
    bad_source_name: with(inline(), "sources", json!({"a/b": "YQ=="})) => "/sources/a~1b";
    bad_base64: with(inline(), "sources", json!({"a.patch": "%%%"})) => "/sources/a.patch";
    spec_path_traversal: with(scm(), "spec_path", json!("../other/x.spec")) => "/spec_path";
    absolute_spec_path: with(scm(), "spec_path", json!("/x.spec")) => "/spec_path";
    ref_like_an_option: with(scm(), "ref", json!("--upload-pack=x")) => "/ref";
    bad_define_name: with(inline(), "defines", json!({"a-b": "1"})) => "/defines/a-b";
    multi_line_define: with(inline(), "defines", json!({"dist": "1\n2"})) => "/defines/dist";
    oversize_inline_sources:
        with(inline(), "sources", json!({"a": "AAAA".repeat(360 * 1024)})) => "/sources";
    bad_memory: with(scm(), "resources", json!({"memory": "4 GiB"})) => "/resources/memory";
}

/// What the host's pre-initialized snapshot serves (settings parsed and `TEMPLATES` compiled
/// once, shared by every call) is what a fresh instance answers.
#[test]
fn a_prepared_plugin_answers_as_a_fresh_one() {
    let bad = with(inline(), "spec", json!(7));
    assert!(harness().validate(&bad).is_err());
    assert_prepared_answers_as_fresh::<Srpm>(TEMPLATES, &[inline(), scm(), bad]);
}
