//! The `iso` plugin against the repository's `templates/iso`: golden manifests of both modes on
//! two arches, the contract (`describe`), and one test per kind of bad params, each asserting
//! the field's JSON Pointer.

// The whole file is test code; clippy.toml's allow-unwrap-in-tests covers only `#[test]` fns.
#![allow(clippy::unwrap_used)]

use omni_plugin_iso::Iso;
use omni_sdk::testing::{
    Harness, assert_prepared_answers_as_fresh, check_kubernetes_types, job_pod, step_names, with,
    without,
};
use omni_sdk::{Error, Job, Plugin};
use serde_json::{Value, json};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates/iso");

const SHA256: &str = "4C1D4B8E3F2A6B7C8D9E0F1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E";

fn harness() -> Harness<Iso> {
    Harness::new(TEMPLATES)
}

fn release() -> Value {
    json!({
        "mode": "release",
        "version": "24.03-LTS-SP1",
        "packages": ["kernel", "bash", "openssh-server", "gcc-c++", "python3-pip"],
    })
}

fn customize() -> Value {
    json!({
        "mode": "customize",
        "base_iso": "https://repo.openeuler.org/openEuler-24.03-LTS-SP1/ISO/x86_64/openEuler-24.03-LTS-SP1-x86_64-dvd.iso",
        "base_iso_sha256": SHA256,
        "volume_label": "OE_2403_SP1_CUSTOM",
        "kickstart": "text\nlang en_US.UTF-8\nrootpw --lock\n%packages\n@core\n%end\n",
        "files": {
            "/EFI/BOOT/grub.cfg": "set timeout=5\nmenuentry 'Install' {\n  linux /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=OE_2403_SP1_CUSTOM inst.ks=hd:LABEL=OE_2403_SP1_CUSTOM:/ks.cfg\n}\n",
            "/etc/motd": "Built by \"omni\" # $(not a command)\n",
        },
        "resources": {"cpu": "2", "memory": "2Gi"},
        "timeout_seconds": 3600,
    })
}

#[test]
fn golden_release_x86_64() {
    insta::assert_snapshot!(harness().render("x86_64", &release()).to_yaml());
}

#[test]
fn golden_release_aarch64() {
    insta::assert_snapshot!(harness().render("aarch64", &release()).to_yaml());
}

#[test]
fn golden_customize_x86_64() {
    insta::assert_snapshot!(harness().render("x86_64", &customize()).to_yaml());
}

#[test]
fn golden_customize_aarch64() {
    insta::assert_snapshot!(harness().render("aarch64", &customize()).to_yaml());
}

#[test]
fn steps_of_each_mode_are_in_the_order_describe_lists() {
    let release_steps = step_names(job_pod(&harness().render("x86_64", &release()))).join(",");
    let customize_steps = step_names(job_pod(&harness().render("x86_64", &customize()))).join(",");
    assert_eq!(release_steps, "rootfs-download,image-build,collect");
    assert_eq!(customize_steps, "fetch,customize");
    assert_eq!(
        format!("{release_steps},{customize_steps}"),
        Iso::STEPS.join(",")
    );
}

#[test]
fn renders_the_node_arch_and_the_release_of_the_arch() {
    for (arch, node_arch) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        let rendered = harness().render(arch, &release());
        let release_pod = job_pod(&rendered);
        assert_eq!(release_pod["nodeSelector"]["kubernetes.io/arch"], node_arch);
        let download = &release_pod["initContainers"][0];
        let rootfs = download["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "ROOTFS_URL")
            .unwrap();
        assert!(
            rootfs["value"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/24.03-LTS-SP1/{arch}/rootfs.tar.gz"))
        );
        assert_eq!(
            job_pod(&harness().render(arch, &customize()))["nodeSelector"]["kubernetes.io/arch"],
            node_arch
        );
    }
}

#[test]
fn release_config_map_holds_conf_packages_and_repo() {
    let rendered = harness().render("x86_64", &release());
    let cm = &rendered.manifests[0].body;
    assert_eq!(
        cm["metadata"]["name"],
        format!("{}-input", Job::example("x86_64").name)
    );
    let packages: Value =
        serde_json::from_str(cm["data"]["openEuler-customized.json"].as_str().unwrap()).unwrap();
    assert_eq!(packages, json!({"packages": release()["packages"]}));
    let conf = cm["data"]["conf.yaml"].as_str().unwrap();
    assert!(
        conf.contains("working_dir: /work/omni-workspace\n"),
        "{conf}"
    );
    assert!(
        conf.contains("repo_file: /input/openEuler.repo\n"),
        "{conf}"
    );
    assert!(
        conf.contains("cached_rootfs_gz: /work/rootfs_cache/rootfs.tar.gz\n"),
        "{conf}"
    );
    let repo = cm["data"]["openEuler.repo"].as_str().unwrap();
    assert!(repo.starts_with("[OS]\n"), "{repo}");
    assert!(
        repo.contains("baseurl=https://repo.openeuler.org/openEuler-24.03-LTS-SP1/OS/$basearch/\n")
    );
    let build = &job_pod(&rendered)["initContainers"][1];
    assert_eq!(build["securityContext"]["privileged"], true);
    assert_eq!(
        build["resources"]["limits"],
        json!({"cpu": "4", "memory": "8Gi"})
    );
    let job = &rendered.manifests[1].body["spec"];
    assert_eq!(job["activeDeadlineSeconds"], 14_400);
    assert_eq!(job["backoffLimit"], 0);
}

#[test]
fn customize_config_map_maps_keys_to_iso_paths() {
    let rendered = harness().render("x86_64", &customize());
    let data = &rendered.manifests[0].body["data"];
    assert_eq!(
        data["manifest"],
        "kickstart /ks.cfg\nfile-0 /EFI/BOOT/grub.cfg\nfile-1 /etc/motd\n"
    );
    assert_eq!(data["kickstart"], customize()["kickstart"]);
    assert_eq!(data["file-1"], customize()["files"]["/etc/motd"]);
    let spec = job_pod(&rendered);
    let fetch_env = spec["initContainers"][0]["env"].as_array().unwrap();
    let sha = fetch_env
        .iter()
        .find(|e| e["name"] == "BASE_ISO_SHA256")
        .unwrap();
    assert_eq!(sha["value"], SHA256.to_ascii_lowercase());
    let script = spec["containers"][0]["command"][2].as_str().unwrap();
    assert!(script.contains("-boot_image any replay"));
    assert!(
        !script.contains("OE_2403"),
        "user values go through env vars"
    );
}

#[test]
fn customize_without_optional_fields() {
    let params =
        json!({"mode": "customize", "base_iso": "https://h.example/a.iso", "volume_label": "A"});
    let rendered = harness().render("aarch64", &params);
    assert_eq!(rendered.manifests[0].body["data"], json!({"manifest": ""}));
    let fetch_env = job_pod(&rendered)["initContainers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(fetch_env.iter().all(|e| e["name"] != "BASE_ISO_SHA256"));
}

#[test]
fn the_largest_package_list_fits_in_the_config_map() {
    let packages: Vec<String> = (0..5000).map(|i| format!("{i:0>128}")).collect();
    let rendered = harness().render("x86_64", &with(release(), "packages", json!(packages)));
    let data = rendered.manifests[0].body["data"].as_object().unwrap();
    let size: usize = data
        .iter()
        .map(|(k, v)| k.len() + v.as_str().unwrap().len())
        .sum();
    assert!(size < omni_sdk::k8s::CONFIG_MAP_DATA_LIMIT, "{size}");
}

#[test]
fn describe_names_the_contract() {
    let d = harness().describe();
    assert_eq!(d.task, "iso");
    assert_eq!(d.arches, ["x86_64", "aarch64"]);
    assert_eq!(
        d.steps,
        [
            "rootfs-download",
            "image-build",
            "collect",
            "fetch",
            "customize"
        ]
    );
    let schema = &d.params_schema;
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["oneOf"][0]["required"],
        json!(["mode", "version", "packages"])
    );
    assert_eq!(
        schema["oneOf"][1]["required"],
        json!(["mode", "base_iso", "volume_label"])
    );
    let properties = &schema["properties"];
    assert_eq!(properties["packages"]["uniqueItems"], true);
    assert_eq!(properties["packages"]["maxItems"], 5000);
    assert_eq!(properties["files"]["maxProperties"], 200);
    assert_eq!(properties["volume_label"]["pattern"], "^[A-Z0-9_-]{1,32}$");
    assert_eq!(properties["timeout_seconds"]["default"], 14_400);
    let package = &schema["$defs"]["PackageName"];
    assert_eq!(package["pattern"], "^[A-Za-z0-9_+][A-Za-z0-9._+-]*$");
}

#[test]
fn both_modes_validate() {
    assert_eq!(harness().validate(&release()), Ok(()));
    assert_eq!(harness().validate(&customize()), Ok(()));
}

#[test]
fn unknown_key_is_reported_at_the_key() {
    let errors = harness()
        .validate(&with(release(), "colour", json!("red")))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/colour");
}

#[test]
fn wrong_type() {
    assert_eq!(
        harness().error_paths(&with(release(), "packages", json!("kernel"))),
        ["/packages"]
    );
    assert_eq!(
        harness().error_paths(&with(release(), "packages", json!(["kernel", 7]))),
        ["/packages/1"]
    );
}

#[test]
fn unknown_mode() {
    assert_eq!(
        harness().error_paths(&with(release(), "mode", json!("rebuild"))),
        ["/mode"]
    );
    assert_eq!(
        harness().error_paths(&without(release(), "mode")),
        ["/mode"]
    );
}

#[test]
fn empty_package_list() {
    assert_eq!(
        harness().error_paths(&with(release(), "packages", json!([]))),
        ["/packages"]
    );
}

#[test]
fn too_many_packages() {
    let packages: Vec<String> = (0..5001).map(|i| format!("p{i}")).collect();
    assert_eq!(
        harness().error_paths(&with(release(), "packages", json!(packages))),
        ["/packages"]
    );
}

#[test]
fn bad_and_duplicate_package_names() {
    assert_eq!(
        harness().error_paths(&with(release(), "packages", json!(["bash", "-rf"]))),
        ["/packages/1"]
    );
    assert_eq!(
        harness().error_paths(&with(release(), "packages", json!(["bash", "a b"]))),
        ["/packages/1"]
    );
    let errors = harness()
        .validate(&with(release(), "packages", json!(["bash", "vim", "bash"])))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/packages/2");
    assert_eq!(errors[0].message, "duplicate of /packages/0");
}

#[test]
fn bad_version_shape() {
    assert_eq!(
        harness().error_paths(&with(release(), "version", json!("24.03 LTS"))),
        ["/version"]
    );
}

#[test]
fn version_not_offered_by_the_settings() {
    let errors = harness()
        .validate(&with(release(), "version", json!("20.03-LTS-SP3")))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/version");
    assert!(
        errors[0]
            .message
            .contains("22.03-LTS-SP4, 24.03-LTS, 24.03-LTS-SP1"),
        "{}",
        errors[0].message
    );
}

#[test]
fn release_fields_missing_and_not_allowed() {
    let params = json!({"mode": "release", "volume_label": "X", "files": {}});
    let errors = harness().validate(&params).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/version", "/packages", "/volume_label", "/files"]);
    assert_eq!(
        errors[0].message,
        "missing: required when mode is `release`"
    );
    assert_eq!(errors[2].message, "not allowed when mode is `release`");
}

#[test]
fn customize_fields_missing_and_not_allowed() {
    let params =
        json!({"mode": "customize", "version": "24.03-LTS", "base_iso": "https://h/a.iso"});
    let errors = harness().validate(&params).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/volume_label", "/version"]);
}

#[test]
fn non_https_base_iso() {
    let errors = harness()
        .validate(&with(
            customize(),
            "base_iso",
            json!("http://h.example/a.iso"),
        ))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/base_iso");
    assert_eq!(errors[0].message, "must be an https:// URL");
}

#[test]
fn http_base_iso_is_accepted_when_settings_allow_it() {
    let dir = std::env::temp_dir().join(format!("omni-iso-insecure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(TEMPLATES).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let settings = std::fs::read_to_string(dir.join("settings.yaml")).unwrap();
    let settings = settings.replace(
        "allow_insecure_base_iso: false",
        "allow_insecure_base_iso: true",
    );
    std::fs::write(dir.join("settings.yaml"), settings).unwrap();
    let harness = Harness::<Iso>::new(&dir);
    let params = with(customize(), "base_iso", json!("http://h.example/a.iso"));
    let result = harness.serialize(&Job::example("x86_64"), &params);
    let _ = std::fs::remove_dir_all(&dir);
    check_kubernetes_types(&result.unwrap()).unwrap();
}

#[test]
fn bad_sha256() {
    assert_eq!(
        harness().error_paths(&with(customize(), "base_iso_sha256", json!("abc"))),
        ["/base_iso_sha256"]
    );
}

#[test]
fn bad_volume_label() {
    for label in ["lower", "", "WITH SPACE", "A".repeat(33).as_str()] {
        assert_eq!(
            harness().error_paths(&with(customize(), "volume_label", json!(label))),
            ["/volume_label"],
            "{label}"
        );
    }
}

#[test]
fn path_traversal_in_files() {
    let params = with(
        customize(),
        "files",
        json!({"/etc/../../root/.ssh/authorized_keys": "key"}),
    );
    assert_eq!(
        harness().error_paths(&params),
        ["/files/~1etc~1..~1..~1root~1.ssh~1authorized_keys"]
    );
}

#[test]
fn relative_and_odd_file_paths() {
    for (path, pointer) in [
        ("etc/motd", "/files/etc~1motd"),
        ("/a b", "/files/~1a b"),
        ("/a/./b", "/files/~1a~1.~1b"),
    ] {
        assert_eq!(
            harness().error_paths(&with(customize(), "files", json!({ path: "x" }))),
            [pointer],
            "{path}"
        );
    }
}

#[test]
fn file_at_the_kickstart_path_conflicts_with_kickstart() {
    assert_eq!(
        harness().error_paths(&with(customize(), "files", json!({"/ks.cfg": "x"}))),
        ["/files/~1ks.cfg"]
    );
    // Without a kickstart, /ks.cfg is an ordinary file.
    assert_eq!(
        harness().validate(&without(
            with(customize(), "files", json!({"/ks.cfg": "x"})),
            "kickstart"
        )),
        Ok(())
    );
}

#[test]
fn too_many_files() {
    let files: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("/f{i}"), json!("x"))).collect();
    assert_eq!(
        harness().error_paths(&with(customize(), "files", Value::Object(files))),
        ["/files"]
    );
}

#[test]
fn oversize_files() {
    let big = "x".repeat(600 * 1024);
    let params = with(customize(), "files", json!({"/a": big, "/b": big}));
    assert_eq!(harness().error_paths(&params), ["/files"]);
}

#[test]
fn bad_resources_and_timeout() {
    assert_eq!(
        harness().error_paths(&with(release(), "resources", json!({"cpu": "-1"}))),
        ["/resources/cpu"]
    );
    assert_eq!(
        harness().error_paths(&with(release(), "timeout_seconds", json!(200_000))),
        ["/timeout_seconds"]
    );
}

#[test]
fn serialize_refuses_bad_params_and_unknown_arches() {
    let err = harness()
        .serialize(&Job::example("x86_64"), &json!({"mode": "release"}))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParams(e) if e[0].path == "/version"),
        "{err:?}"
    );
    let err = harness()
        .serialize(&Job::example("s390x"), &release())
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)));
}

/// What the host's pre-initialized snapshot serves (settings parsed and `TEMPLATES` compiled
/// once, shared by every call) is what a fresh instance answers.
#[test]
fn a_prepared_plugin_answers_as_a_fresh_one() {
    let bad = with(release(), "packages", json!(7));
    assert!(harness().validate(&bad).is_err());
    assert_prepared_answers_as_fresh::<Iso>(TEMPLATES, &[release(), customize(), bad]);
}
