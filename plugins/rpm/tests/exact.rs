//! What makes an `rpm` job's inputs exactly a packager's: the spec's own file name, sources of
//! any name rpm takes with their modes, and the repositories BuildRequires come from. Names a
//! hostile submitter picks reach the job only as ConfigMap data, never as shell text or keys.

// The whole file is test code; clippy.toml's allow-unwrap-in-tests covers only `#[test]` fns.
#![allow(clippy::unwrap_used)]

use omni_plugin_rpm::Rpm;
use omni_sdk::testing::{Harness, with};
use omni_sdk::{Error, Job};
use serde_json::{Value, json};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates/rpm");

const SPEC: &str = "%global srcname vsftpd\nName: %{srcname}\nVersion: 3.0.5\nRelease: 1\n\
Summary: x\nLicense: GPLv2\nSource0: vsftpd@.service\nSource1: run.sh\n\n%description\nx\n";

fn harness() -> Harness<Rpm> {
    Harness::new(TEMPLATES)
}

fn inline(sources: impl Into<Value>) -> Value {
    let sources: Value = sources.into();
    json!({"spec": SPEC, "sources": sources})
}

/// The rendered ConfigMap's body and the Job's `fetch` script and env.
fn rendered(params: &Value) -> (Value, String, Vec<(String, String)>) {
    let rendered = harness().render("x86_64", params);
    let cm = rendered.manifests[0].body.clone();
    let fetch = &rendered.manifests[1].body["spec"]["template"]["spec"]["initContainers"][0];
    let script = fetch["command"][2].as_str().unwrap().to_owned();
    let env = fetch["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (cm, script, env)
}

#[test]
fn any_name_rpm_takes_is_data_with_its_mode() {
    let hostile = [
        "vsftpd@.service",
        "a b",
        "-rf",
        "$(touch omni-marker)",
        "`id`;x",
        "'quoted\"",
        ".hidden",
        "macros",
        "spec",
        "line\nbreak",
    ];
    let mut sources = serde_json::Map::new();
    for name in hostile {
        sources.insert(name.to_owned(), json!("YQ=="));
    }
    sources.insert(
        "run.sh".to_owned(),
        json!({"content": "IyEvYmluL3NoCg==", "mode": "0755"}),
    );
    sources.insert(
        "conf".to_owned(),
        json!({"content": "YQ==", "mode": 416}), // 0640
    );
    let params = inline(Value::Object(sources.clone()));
    assert_eq!(harness().validate(&params), Ok(()));
    let (cm, script, _) = rendered(&params);
    let metas: Vec<&str> = cm["data"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with(".meta"))
        .map(|(_, v)| v.as_str().unwrap())
        .collect();
    // Every name once, literally, with its mode; keys are the plugin's own.
    for name in hostile {
        assert!(metas.contains(&format!("0644 {name}").as_str()), "{name:?}");
        if name.contains(['$', '`', '\'', '"', ' ', '@', '\n']) {
            assert!(!script.contains(name), "{name:?} reached the script");
        }
    }
    assert!(metas.contains(&"0755 run.sh") && metas.contains(&"0640 conf"));
    let keys: Vec<&String> = cm["binaryData"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), sources.len());
    assert!(
        keys.iter()
            .all(|k| k.starts_with("source-") && omni_sdk::k8s::is_config_map_key(k))
    );
    // The spec and macros keep their keys: a source named `spec` or `macros` is no clash.
    assert_eq!(cm["data"]["spec"], SPEC);
}

#[test]
fn modes_are_permission_bits_only() {
    for (mode, ok) in [
        (json!("0755"), true),
        (json!("644"), true),
        (json!(0), true),
        (json!(511), true),
        (json!("4755"), false),
        (json!("2755"), false),
        (json!("1777"), false),
        (json!(755), false), // 0o1363: sticky; an integer is the value, 493 is 0755
        (json!(2541), false), // 0o4755
        (json!("0x1ed"), false),
        (json!("rwxr-xr-x"), false),
    ] {
        let params = inline(json!({"run.sh": {"content": "YQ==", "mode": mode}}));
        if ok {
            assert_eq!(harness().validate(&params), Ok(()), "{mode}");
        } else {
            assert_eq!(
                harness().error_paths(&params),
                ["/sources/run.sh/mode"],
                "{mode}"
            );
        }
    }
    for wrong in [
        json!(-1),
        json!(1.5),
        json!(true),
        json!({"content": "YQ==", "owner": "root"}),
        json!({"mode": "0755"}),
    ] {
        let source = if wrong.is_object() {
            wrong.clone()
        } else {
            json!({"content": "YQ==", "mode": wrong})
        };
        let errors = harness()
            .validate(&inline(json!({ "run.sh": source })))
            .unwrap_err();
        assert!(
            errors[0].path.starts_with("/sources"),
            "{wrong}: {errors:?}"
        );
    }
}

#[test]
fn the_spec_keeps_its_name() {
    let spec_file = |params: &Value| {
        let (_, _, env) = rendered(params);
        env.into_iter().find(|(k, _)| k == "SPEC_FILE").unwrap().1
    };
    // From `Name:`, its macro expanded.
    assert_eq!(spec_file(&inline(json!({}))), "vsftpd.spec");
    // From the job's defines when the spec does not define it.
    let spec = SPEC.replace("%global srcname vsftpd\n", "");
    let params = json!({"spec": spec, "defines": {"srcname": "ftpd"}});
    assert_eq!(spec_file(&params), "ftpd.spec");
    // Left as written when the plugin cannot know it.
    let params = json!({"spec": SPEC.replace("%{srcname}", "%{lua: print('x')}")});
    assert_eq!(spec_file(&params), "%{lua: print('x')}.spec");
    // `spec_name` wins.
    let params = with(inline(json!({})), "spec_name", json!("my package.spec"));
    assert_eq!(spec_file(&params), "my package.spec");
}

#[test]
fn spec_names_that_cannot_be() {
    let cases = [
        (
            with(inline(json!({})), "spec_name", json!("a/b.spec")),
            "/spec_name",
        ),
        (
            with(inline(json!({})), "spec_name", json!("..")),
            "/spec_name",
        ),
        (
            with(inline(json!({})), "spec_name", json!("")),
            "/spec_name",
        ),
        (
            json!({"spec": SPEC.replace("%{srcname}", "%(echo ../../etc)")}),
            "/spec",
        ),
        (json!({"spec": "Summary: no name\n"}), "/spec"),
        (
            inline(json!({"vsftpd.spec": "YQ=="})),
            "/sources/vsftpd.spec",
        ),
        (
            json!({"scm_url": "https://example.com/a.git", "ref": "main",
                   "spec_path": "a.spec", "spec_name": "b.spec"}),
            "/spec_name",
        ),
    ];
    for (params, pointer) in cases {
        assert_eq!(harness().error_paths(&params), [pointer], "{params}");
    }
}

/// A copy of the templates with `settings.yaml`'s `deps:` replaced, removed on drop.
struct Templates(std::path::PathBuf);

impl Templates {
    fn with_deps(name: &str, deps: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("omni-rpm-exact-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(TEMPLATES).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let settings = std::fs::read_to_string(dir.join("settings.yaml")).unwrap();
        let head = &settings[..settings.find("\ndeps:").unwrap()];
        std::fs::write(dir.join("settings.yaml"), format!("{head}\n{deps}")).unwrap();
        Self(dir)
    }
}

impl Drop for Templates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn operator_repositories_reach_deps_as_a_repo_file() {
    let templates = Templates::with_deps(
        "repos",
        "deps:\n  repositories:\n  - name: local\n    baseurl: file:///srv/repo/$basearch\n    gpgcheck: false\n  require_dnf: true\n",
    );
    let harness = Harness::<Rpm>::new(&templates.0);
    let rendered = harness
        .serialize(&Job::example("x86_64"), &inline(json!({})))
        .unwrap();
    assert_eq!(
        rendered.manifests[0].body["data"]["omni.repo"],
        "[local]\nname=local\nbaseurl=file:///srv/repo/$basearch\nenabled=1\ngpgcheck=0\n"
    );
    let deps = &rendered.manifests[1].body["spec"]["template"]["spec"]["initContainers"][1];
    assert!(
        deps["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "REQUIRE_DNF", "value": "true"}))
    );
    // Without repositories, the root's own configuration: no repo file.
    let rendered = self::harness().render("x86_64", &inline(json!({})));
    assert!(
        rendered.manifests[0].body["data"]
            .get("omni.repo")
            .is_none()
    );

    // A repository that would inject lines into the .repo file is a settings error.
    for bad in [
        "  - name: \"a]\\n[b\"\n    baseurl: file:///x\n",
        "  - name: a\n    baseurl: \"file:///x\\ngpgcheck=0\"\n",
        "  - name: a\n    baseurl: ftp://example.com/x\n",
    ] {
        let templates = Templates::with_deps("bad", &format!("deps:\n  repositories:\n{bad}"));
        let harness = Harness::<Rpm>::new(&templates.0);
        match harness.serialize(&Job::example("x86_64"), &inline(json!({}))) {
            Err(Error::Template(message)) => assert!(message.contains("deps.repositories")),
            other => panic!("{bad}: {other:?}"),
        }
    }
}
