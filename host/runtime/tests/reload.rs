//! The plugins directory: loading, broken files, swaps, removal, conflicts, half-written files,
//! the watcher and the compile cache.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use omni_runtime::{Plugin, Registry, Sandbox, SandboxConfig, Tier};
use omni_test_support::{component, job, rebuilt, registry, sandbox, sandbox_with};
use serde_json::json;

fn status<'a>(
    list: &'a [omni_runtime::PluginStatus],
    file: &str,
) -> &'a omni_runtime::PluginStatus {
    list.iter()
        .find(|s| s.file == file)
        .unwrap_or_else(|| panic!("{file} not listed in {list:?}"))
}

fn behave(registry: &Registry) -> Result<omni_runtime::Rendered, omni_runtime::PluginError> {
    let plugin = registry.get("hostile").expect("hostile serves");
    plugin.serialize_blocking(&job("x86_64"), &json!({"behaviour": "behave"}).to_string())
}

#[test]
fn broken_and_foreign_files_are_reported_and_others_still_load() {
    let (dir, registry) = registry(sandbox(json!({})), &["hostile"]);
    std::fs::write(dir.path().join("garbage.wasm"), b"not wasm at all").unwrap();
    std::fs::write(
        dir.path().join("empty-world.wasm"),
        wat::parse_str("(component)").unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    std::fs::write(dir.path().join(".hidden.wasm"), b"ignored").unwrap();
    registry.scan();
    let list = registry.list();
    assert_eq!(list.len(), 3, "{list:?}");
    let hostile = status(&list, "hostile.wasm");
    assert_eq!(
        (
            hostile.status,
            hostile.task.as_deref(),
            hostile.version.as_deref()
        ),
        ("ready", Some("hostile"), Some("0.1.0"))
    );
    assert_eq!(hostile.steps, ["run"]);
    assert_eq!(hostile.digest.as_deref().map(str::len), Some(64));
    let garbage = status(&list, "garbage.wasm");
    assert_eq!(garbage.status, "error");
    assert!(
        garbage
            .error
            .as_deref()
            .unwrap()
            .contains("garbage.wasm: not a valid WebAssembly component"),
        "{garbage:?}"
    );
    let empty = status(&list, "empty-world.wasm");
    assert!(
        empty
            .error
            .as_deref()
            .unwrap()
            .contains("does not fit omni:plugin/job-handler@0.1.0"),
        "{empty:?}"
    );
    assert!(behave(&registry).is_ok());
}

#[test]
fn a_component_importing_another_contract_version_is_refused() {
    let (dir, registry) = registry(sandbox(json!({})), &[]);
    let other_version = r#"(component
        (import "omni:plugin/host@0.2.0" (instance
            (export "log" (func (param "message" string)))))
    )"#;
    std::fs::write(
        dir.path().join("future.wasm"),
        wat::parse_str(other_version).unwrap(),
    )
    .unwrap();
    registry.scan();
    let error = registry.list()[0].error.clone().unwrap();
    assert!(
        error.contains("future.wasm: does not fit omni:plugin/job-handler@0.1.0"),
        "{error}"
    );
    assert!(error.contains("omni:plugin/host@0.2.0"), "{error}");
}

#[test]
fn a_broken_update_keeps_the_previous_version_serving_until_a_good_one_arrives() {
    let (dir, registry) = registry(sandbox(json!({})), &["hostile"]);
    let path = dir.path().join("hostile.wasm");
    let first = registry.get("hostile").unwrap().digest().to_owned();
    let bytes = component("hostile");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    registry.scan();
    let s = status(&registry.list(), "hostile.wasm").clone();
    assert_eq!(s.status, "ready");
    assert_eq!(s.digest.as_deref(), Some(first.as_str()));
    assert!(
        s.error
            .unwrap()
            .contains("not a valid WebAssembly component")
    );
    assert!(behave(&registry).is_ok());

    std::fs::write(&path, rebuilt(&bytes, "v2")).unwrap();
    registry.scan();
    let s = status(&registry.list(), "hostile.wasm").clone();
    assert_ne!(s.digest.as_deref(), Some(first.as_str()));
    assert_eq!(s.error, None);
}

#[test]
fn a_removed_file_unloads_its_task_while_calls_in_flight_finish() {
    let (dir, registry) = registry(sandbox(json!({})), &["hostile"]);
    let in_flight = registry.get("hostile").unwrap();
    std::fs::remove_file(dir.path().join("hostile.wasm")).unwrap();
    registry.scan();
    assert!(registry.get("hostile").is_none());
    assert!(registry.list().is_empty());
    in_flight
        .serialize_blocking(&job("x86_64"), &json!({"behaviour": "behave"}).to_string())
        .unwrap();
}

#[test]
fn two_files_claiming_one_task_is_an_error_for_the_newer_one() {
    let (dir, registry) = registry(sandbox(json!({})), &[]);
    let bytes = component("hostile");
    std::fs::write(dir.path().join("b-old.wasm"), &bytes).unwrap();
    registry.scan();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("a-new.wasm"), rebuilt(&bytes, "copy")).unwrap();
    registry.scan();
    let list = registry.list();
    assert_eq!(status(&list, "b-old.wasm").status, "ready");
    let newer = status(&list, "a-new.wasm");
    assert_eq!(newer.status, "error");
    assert!(
        newer
            .error
            .as_deref()
            .unwrap()
            .contains("task \"hostile\" is already provided by"),
        "{newer:?}"
    );

    // Updating the serving file keeps it the owner even though it is now the newer file.
    std::fs::write(dir.path().join("b-old.wasm"), rebuilt(&bytes, "update")).unwrap();
    registry.scan();
    assert!(
        registry
            .get("hostile")
            .unwrap()
            .path()
            .ends_with("b-old.wasm")
    );

    std::fs::remove_file(dir.path().join("b-old.wasm")).unwrap();
    registry.scan();
    assert!(
        registry
            .get("hostile")
            .unwrap()
            .path()
            .ends_with("a-new.wasm")
    );
}

#[test]
fn a_half_written_file_is_never_loaded() {
    let (dir, registry) = registry(sandbox(json!({})), &[]);
    let bytes = component("hostile");
    let path = dir.path().join("hostile.wasm");
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    registry.scan();
    assert!(registry.get("hostile").is_none());
    std::fs::write(&path, &bytes).unwrap();
    registry.scan();
    assert!(registry.get("hostile").is_some());
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

fn write_then_rename(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_loads_renamed_files_and_unloads_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::new(sandbox(json!({})), dir.path()));
    registry.rescan().await;
    let _watch = registry.watch().unwrap();
    let bytes = component("hostile");
    write_then_rename(dir.path(), "hostile.wasm", &bytes);
    wait_for("the new plugin", || registry.get("hostile").is_some()).await;
    let first = registry.get("hostile").unwrap().digest().to_owned();

    write_then_rename(dir.path(), "hostile.wasm", &rebuilt(&bytes, "v2"));
    wait_for("the changed plugin", || {
        registry.get("hostile").is_some_and(|p| p.digest() != first)
    })
    .await;

    std::fs::remove_file(dir.path().join("hostile.wasm")).unwrap();
    wait_for("the removal", || registry.get("hostile").is_none()).await;
}

/// A sandbox whose compile cache is `cache`.
fn cached_sandbox(cache: &tempfile::TempDir) -> Arc<Sandbox> {
    sandbox_with(json!({}), Some(cache.path().to_owned()))
}

/// Waits (on this thread) for a plugin's optimized code, compiled in the background.
fn wait_optimized(plugin: &Plugin) {
    omni_test_support::wait_until(&format!("{}'s optimized code", plugin.label()), || {
        plugin.tier() == Tier::Optimized
    });
}

#[test]
fn a_new_plugin_serves_quick_code_until_its_optimized_code_is_swapped_in() {
    let cache = tempfile::tempdir().unwrap();
    let (_dir, first) = registry(cached_sandbox(&cache), &["srpm"]);
    let plugin = first.get("srpm").unwrap();
    // The same manifests from quick code and from the optimized code swapped in.
    let quick =
        Plugin::load_quick(first.sandbox(), Path::new("srpm.wasm"), &component("srpm")).unwrap();
    assert_eq!(quick.tier(), Tier::Quick);
    let params = json!({"spec": "Name: hello\n"}).to_string();
    let before = quick.serialize_blocking(&job("aarch64"), &params).unwrap();
    wait_optimized(&plugin);
    assert_eq!(first.status("srpm").unwrap().tier, Some(Tier::Optimized));
    let after = plugin.serialize_blocking(&job("aarch64"), &params).unwrap();
    assert_eq!(before, after);
    let digest = plugin.digest().to_owned();
    assert!(
        std::fs::read_dir(cache.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&digest)),
        "the optimized code is cached"
    );

    // A host that finds it in the cache starts on it.
    let (_dir, second) = registry(cached_sandbox(&cache), &["srpm"]);
    assert_eq!(second.get("srpm").unwrap().tier(), Tier::Optimized);
    assert_eq!(second.status("srpm").unwrap().tier, Some(Tier::Optimized));

    // With quick compiling off, a load waits for the optimized code.
    let sandbox = Arc::new(
        Sandbox::new(
            SandboxConfig {
                quick_compile: false,
                ..SandboxConfig::default()
            },
            Arc::clone(second.sandbox().templates()),
        )
        .unwrap(),
    );
    let (_dir, third) = registry(sandbox, &["srpm"]);
    assert_eq!(third.get("srpm").unwrap().tier(), Tier::Optimized);
}

#[test]
fn compiled_components_are_cached_by_digest_and_engine() {
    let cache = tempfile::tempdir().unwrap();
    let (_dir, first) = registry(cached_sandbox(&cache), &["hostile"]);
    wait_optimized(&first.get("hostile").unwrap());
    let digest = first.get("hostile").unwrap().digest().to_owned();
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].to_string_lossy().into_owned();
    assert!(
        name.starts_with(&digest) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A second host loads the cached artifact, and it works.
    let (_dir, second) = registry(cached_sandbox(&cache), &["hostile"]);
    assert!(behave(&second).is_ok());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);

    // A corrupted cache entry is recompiled, not trusted.
    std::fs::write(cache.path().join(&name), b"corrupt").unwrap();
    let (_dir, third) = registry(cached_sandbox(&cache), &["hostile"]);
    assert!(behave(&third).is_ok());
}

/// A sandbox over a templates root of the test's own, where `templates/hostile/describe` says
/// how the hostile plugin's `describe` misbehaves, with these limits.
fn describing(says: &str, limits: serde_json::Value) -> (tempfile::TempDir, Arc<Sandbox>) {
    let templates = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(templates.path().join("hostile")).unwrap();
    std::fs::write(templates.path().join("hostile/describe"), says).unwrap();
    let config = SandboxConfig {
        cache_dir: Some(omni_test_support::workspace().join("target/omni-test-cache")),
        limits: serde_json::from_value(limits).unwrap(),
        ..SandboxConfig::default()
    };
    let sandbox = omni_test_support::sandbox_over(templates.path(), config);
    (templates, sandbox)
}

#[test]
fn a_plugin_that_sleeps_in_describe_fails_to_load_with_its_own_error_and_others_load() {
    let (_templates, sandbox) = describing("sleep", json!({}));
    let (_dir, registry) = registry(sandbox, &["hostile", "srpm"]);
    let list = registry.list();
    let hostile = status(&list, "hostile.wasm");
    assert_eq!(hostile.status, "error");
    assert!(
        hostile.error.as_deref().unwrap().ends_with(
            "hostile.wasm: describe: plugin hostile.wasm was stopped: it asked to wait 600s, \
             past its deadline of 1s"
        ),
        "{hostile:?}"
    );
    assert_eq!(status(&list, "srpm.wasm").status, "ready");
}

#[test]
fn a_plugin_whose_memories_together_are_past_the_cap_fails_to_load_and_others_load() {
    let (dir, registry) = registry(sandbox(json!({})), &["srpm"]);
    let spliced = omni_test_support::memories::many_memories(&component("hostile"), 7, 9);
    std::fs::write(dir.path().join("hostile.wasm"), spliced).unwrap();
    registry.scan();
    let list = registry.list();
    let hostile = status(&list, "hostile.wasm");
    assert_eq!(hostile.status, "error");
    assert!(
        hostile
            .error
            .as_deref()
            .unwrap()
            .contains("exceeded its memory limit of 67108864 bytes"),
        "{hostile:?}"
    );
    assert_eq!(status(&list, "srpm.wasm").status, "ready");
    assert!(registry.get("hostile").is_none());
}

#[test]
fn a_describe_that_runs_on_holds_back_no_other_reload() {
    // Its task's own limits let it run for ten minutes (the default would stop it after 1 s):
    // only ending its loop, below, lets its load finish.
    let (templates, sandbox) = describing(
        "loop",
        json!({"tasks": {"hostile": {"timeout_ms": 600_000}}}),
    );
    let (dir, registry) = registry(sandbox, &[]);
    let hostile = dir.path().join("hostile.wasm");
    std::fs::write(&hostile, component("hostile")).unwrap();
    let slow_scan = {
        let registry = Arc::clone(&registry);
        std::thread::spawn(move || registry.scan())
    };
    omni_test_support::wait_until("hostile's load to start", || {
        registry.loading().contains(&hostile)
    });

    // Another plugin arrives: its scan leaves hostile to the scan loading it, loads srpm, and
    // swaps it in while hostile's describe still runs.
    std::fs::write(dir.path().join("srpm.wasm"), component("srpm")).unwrap();
    registry.scan();
    assert!(registry.get("srpm").is_some());
    assert!(registry.loading().contains(&hostile));
    assert!(registry.get("hostile").is_none());

    std::fs::write(templates.path().join("hostile/describe"), "behave").unwrap();
    slow_scan.join().unwrap();
    assert!(registry.get("hostile").is_some());
    assert!(registry.get("srpm").is_some());
}

#[tokio::test]
async fn a_replaced_version_is_still_found_by_its_digest_and_loaded_again_from_its_copy() {
    let sandbox = sandbox(json!({}));
    let (dir, first) = registry(Arc::clone(&sandbox), &["hostile"]);
    let old = first.get("hostile").unwrap().digest().to_owned();
    write_then_rename(
        dir.path(),
        "hostile.wasm",
        &rebuilt(&component("hostile"), "2"),
    );
    first.scan();
    let new = first.get("hostile").unwrap().digest().to_owned();
    assert_ne!(old, new);

    // The replaced version stays loaded; the serving one is found by its own digest.
    let found = first
        .version("hostile", &old)
        .await
        .expect("the replaced version");
    assert_eq!(found.digest(), old);
    assert!(
        found
            .serialize_blocking(&job("x86_64"), r#"{"behaviour":"behave"}"#)
            .is_ok()
    );
    assert_eq!(first.version("hostile", &new).await.unwrap().digest(), new);

    // A registry over the same directories (a restarted server) has only the new file, and
    // loads the old version from its kept copy.
    let versions = dir.path().join(omni_test_support::VERSIONS);
    let second = Registry::new(Arc::clone(&sandbox), dir.path()).keeping_versions_in(&versions);
    second.scan();
    assert_eq!(second.version("hostile", &old).await.unwrap().digest(), old);

    // Not a version of that task, not a digest, not kept: nothing.
    assert!(second.version("srpm", &old).await.is_none());
    assert!(second.version("hostile", "../hostile").await.is_none());
    assert!(second.version("hostile", &"0".repeat(64)).await.is_none());

    // A kept copy whose bytes are not its digest's is never run.
    let third = Registry::new(sandbox, dir.path()).keeping_versions_in(&versions);
    third.scan();
    std::fs::write(
        versions.join(format!("{old}.wasm")),
        rebuilt(&component("hostile"), "3"),
    )
    .unwrap();
    assert!(third.version("hostile", &old).await.is_none());
}
