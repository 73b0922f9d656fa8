//! Pre-initialization: a plugin whose component exports `wizer-initialize` serves from a
//! snapshot made after it, answers exactly as its plain component does, and never serves a
//! template file older than the one on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use omni_runtime::{FieldError, Plugin, PluginError, Registry, Sandbox, SandboxConfig};
use omni_test_support::{component, copy_templates, job, registry, sandbox, wait_until};
use serde_json::json;

/// Waits (on this thread) until `plugin` serves from its snapshot.
fn wait_prepared(plugin: &Plugin) {
    wait_until(&format!("{}'s snapshot", plugin.label()), || {
        plugin.is_prepared()
    });
}

fn field_errors(answer: Result<(), PluginError>) -> Vec<FieldError> {
    match answer {
        Err(PluginError::InvalidParams { errors, .. }) => errors,
        other => panic!("not refused for its params: {other:?}"),
    }
}

fn srpm_params() -> String {
    json!({"spec": "Name: hello\nVersion: 1\n", "defines": {"dist": ".oe2403"}}).to_string()
}

#[test]
fn every_task_plugin_answers_from_its_snapshot_as_from_its_plain_component() {
    let sandbox = sandbox(json!({}));
    let (_dir, registry) = registry(Arc::clone(&sandbox), &["iso", "rpm", "srpm"]);
    let iso = json!({"mode": "release", "version": "24.03-LTS", "packages": ["kernel", "bash"]});
    let rpm = json!({"spec": "Name: hello\n", "defines": {"dist": ".oe2403"}});
    for (task, params, bad) in [
        (
            "iso",
            iso,
            json!({"mode": "release", "version": "1.0", "packages": []}),
        ),
        ("rpm", rpm.clone(), json!({"spec": 7})),
        (
            "srpm",
            rpm,
            json!({"spec": "x", "scm_url": "http://example.com/a.git"}),
        ),
    ] {
        let prepared = registry.get(task).unwrap();
        wait_prepared(&prepared);
        assert_eq!(registry.status(task).unwrap().preinitialized, Some(true));
        let file = format!("{task}.wasm");
        let plain = Plugin::load(&sandbox, Path::new(&file), &component(task)).unwrap();
        assert!(!plain.is_prepared());
        for arch in ["x86_64", "aarch64"] {
            let params = params.to_string();
            assert_eq!(
                prepared.serialize_blocking(&job(arch), &params).unwrap(),
                plain.serialize_blocking(&job(arch), &params).unwrap(),
                "{task} on {arch}"
            );
        }
        let bad = bad.to_string();
        let refused = field_errors(prepared.validate_blocking(&bad));
        assert!(!refused.is_empty());
        assert_eq!(
            refused,
            field_errors(plain.validate_blocking(&bad)),
            "{task}"
        );
    }
}

/// A copy of the repository's `templates/srpm` under a new templates root.
fn srpm_templates() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    copy_templates("srpm", root.path());
    root
}

#[test]
fn a_template_edit_is_served_by_the_next_call_and_then_prepared_again() {
    let templates = srpm_templates();
    let sandbox = omni_test_support::sandbox_over(templates.path(), SandboxConfig::default());
    let (_dir, registry) = registry(sandbox, &["srpm"]);
    let plugin = registry.get("srpm").unwrap();
    wait_prepared(&plugin);
    let render = || {
        let rendered = plugin
            .serialize_blocking(&job("x86_64"), &srpm_params())
            .unwrap();
        serde_json::to_string(&rendered.manifests).unwrap()
    };
    assert!(!render().contains("edited-builder"));

    // The settings (read and parsed by the initialization): the very next call sees the edit.
    let settings = templates.path().join("srpm/settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let builder = text
        .lines()
        .find(|l| l.trim_start().starts_with("builder:"))
        .expect("settings.yaml names the builder image");
    let edited = text.replace(builder, "  builder: registry.example/edited-builder:1");
    std::fs::write(&settings, edited).unwrap();
    assert!(render().contains("edited-builder"));

    // A new snapshot is made in the background, with the edit in it.
    wait_prepared(&plugin);
    assert!(render().contains("edited-builder"));

    // A compiled template: the same.
    let job_yaml = templates.path().join("srpm/job.yaml");
    let text = std::fs::read_to_string(&job_yaml).unwrap();
    std::fs::write(
        &job_yaml,
        text.replace(
            "restartPolicy: Never",
            "restartPolicy: Never\n      hostname: edited-template",
        ),
    )
    .unwrap();
    assert!(render().contains("edited-template"));
    wait_prepared(&plugin);
    assert!(render().contains("edited-template"));

    // A template removed is an error at once, not the snapshot's copy.
    std::fs::remove_file(&job_yaml).unwrap();
    let error = plugin
        .serialize_blocking(&job("x86_64"), &srpm_params())
        .unwrap_err()
        .to_string();
    assert!(error.contains("job.yaml"), "{error}");
}

/// `bytes` with every `wizer-initialize` renamed to a name of the same length: the component as
/// an SDK without pre-initialization (or any other toolchain) would build it.
fn without_initialize(bytes: &[u8]) -> Vec<u8> {
    let (from, to) = (b"wizer-initialize", b"wizer-unexported");
    let mut out = bytes.to_vec();
    let mut renamed = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            renamed += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(renamed > 0, "the component exports wizer-initialize");
    out
}

#[test]
fn a_component_without_the_initialize_export_serves_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("srpm.wasm"),
        without_initialize(&component("srpm")),
    )
    .unwrap();
    let registry = Registry::new(sandbox(json!({})), dir.path());
    registry.scan();
    let plugin = registry.get("srpm").expect("srpm serves");
    let error = plugin.prepare().unwrap_err().to_string();
    assert!(
        error.contains("does not export wizer-initialize"),
        "{error}"
    );
    assert!(!plugin.is_prepared());
    assert_eq!(registry.status("srpm").unwrap().preinitialized, Some(false));
    assert!(
        plugin
            .serialize_blocking(&job("x86_64"), &srpm_params())
            .is_ok()
    );
}

/// A sandbox over `templates` whose compile cache is `cache`.
fn sandbox_over(templates: &Path, cache: &Path) -> Arc<Sandbox> {
    let config = SandboxConfig {
        cache_dir: Some(cache.to_owned()),
        ..SandboxConfig::default()
    };
    omni_test_support::sandbox_over(templates, config)
}

/// The snapshot manifest the cache holds for srpm: its path and its JSON.
fn manifest(cache: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let path = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".preinit.json"))
        .expect("a snapshot manifest in the cache");
    let json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (path, json)
}

#[test]
fn a_restart_reuses_the_cached_snapshot_until_a_file_it_read_has_other_text() {
    let templates = srpm_templates();
    let cache = tempfile::tempdir().unwrap();
    let (_dir, first) = registry(sandbox_over(templates.path(), cache.path()), &["srpm"]);
    wait_prepared(&first.get("srpm").unwrap());
    let (path, made) = manifest(cache.path());
    let names: Vec<&str> = made["reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["settings.yaml", "configmap.yaml", "job.yaml"]);
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();

    // The same snapshot, byte for byte, from another host with its own cache.
    let other = tempfile::tempdir().unwrap();
    let (_dir, elsewhere) = registry(sandbox_over(templates.path(), other.path()), &["srpm"]);
    wait_prepared(&elsewhere.get("srpm").unwrap());
    assert_eq!(manifest(other.path()).1["snapshot"], made["snapshot"]);

    // A restart on the first cache takes the snapshot from it: the manifest is not rewritten.
    std::thread::sleep(Duration::from_millis(20));
    let (_dir, second) = registry(sandbox_over(templates.path(), cache.path()), &["srpm"]);
    let plugin = second.get("srpm").unwrap();
    wait_prepared(&plugin);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written
    );

    // Copying a file over with the same text changes nothing; other text makes a new snapshot.
    let job_yaml = templates.path().join("srpm/job.yaml");
    let text = std::fs::read_to_string(&job_yaml).unwrap();
    std::fs::write(&job_yaml, &text).unwrap();
    let (_dir, third) = registry(sandbox_over(templates.path(), cache.path()), &["srpm"]);
    wait_prepared(&third.get("srpm").unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written
    );
    std::fs::write(&job_yaml, format!("{text}\n# edited\n")).unwrap();
    let (_dir, fourth) = registry(sandbox_over(templates.path(), cache.path()), &["srpm"]);
    wait_prepared(&fourth.get("srpm").unwrap());
    let (_, remade) = manifest(cache.path());
    assert_ne!(remade["snapshot"], made["snapshot"]);
    assert_ne!(remade["reads"], made["reads"]);
}
