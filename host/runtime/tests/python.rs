//! A plugin written in Python (componentize-py, `tests/plugins/python`, built by `make
//! plugins`) in the real sandbox: CPython asks WASI for its preopened directories while it
//! handles an exception and gets none instead of a trap, so params it rejects come back as field
//! errors; a file it opens fails as a call, it sees no environment, and a Python exception in
//! `serialize` is the plugin's error, not a crash. On both compilers' code. And the `sign` plugin
//! served from the host's snapshot of it answers as its plain component does.

use std::sync::Arc;

use omni_runtime::{FieldError, Plugin, PluginError, Tier};
use omni_test_support::{component, job, sandbox};
use serde_json::json;

fn pyfixture() -> [Arc<Plugin>; 2] {
    let sandbox = sandbox(json!({}));
    let (path, bytes) = (
        std::path::Path::new("pyfixture.wasm"),
        component("pyfixture"),
    );
    let optimized = Plugin::load(&sandbox, path, &bytes).expect("the Python fixture loads");
    let quick = Plugin::load_quick(&sandbox, path, &bytes).expect("the Python fixture loads");
    assert_eq!(
        (optimized.tier(), quick.tier()),
        (Tier::Optimized, Tier::Quick)
    );
    [Arc::new(optimized), Arc::new(quick)]
}

fn note(plugin: &Plugin, behaviour: &str) -> String {
    let rendered = plugin
        .serialize_blocking(&job("x86_64"), &json!({"behaviour": behaviour}).to_string())
        .unwrap_or_else(|e| panic!("{behaviour}: {e}"));
    rendered.manifests[0].body["metadata"]["annotations"]["note"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn describes_itself_and_renders() {
    for plugin in pyfixture() {
        let info = plugin.info();
        assert_eq!(
            (info.task.as_str(), info.version.as_str()),
            ("pyfixture", "0.1.0")
        );
        assert_eq!(info.params_schema["required"], json!(["behaviour"]));
        assert_eq!(note(&plugin, "behave"), "behaved");
    }
}

#[test]
fn rejected_params_are_field_errors_not_a_trap() {
    for plugin in pyfixture() {
        let params = json!({"behaviour": "fly", "count": 0, "colour": "red"}).to_string();
        for result in [
            plugin.validate_blocking(&params),
            plugin.serialize_blocking(&job("x86_64"), &params).map(drop),
        ] {
            let Err(PluginError::InvalidParams { errors, .. }) = result else {
                panic!("{result:?}")
            };
            let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, ["/behaviour", "/colour", "/count"], "{errors:?}");
        }
        // The plugin's own check, after the schema.
        let err = plugin
            .validate_blocking(&json!({"behaviour": "behave", "count": 11}).to_string())
            .unwrap_err();
        let PluginError::InvalidParams { errors, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            errors,
            [FieldError {
                path: "/count".into(),
                message: "at most 10 when behaving".into()
            }]
        );
    }
}

#[test]
fn files_and_environment_are_empty_and_an_exception_is_the_plugins_error() {
    for plugin in pyfixture() {
        assert_eq!(note(&plugin, "open"), "open failed: FileNotFoundError");
        assert_eq!(note(&plugin, "environ"), "environ has 0 names");
        let err = plugin
            .serialize_blocking(&job("x86_64"), &json!({"behaviour": "raise"}).to_string())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin pyfixture@0.1.0 failed: ValueError: asked to raise"
        );
        // And it goes on serving.
        assert_eq!(note(&plugin, "behave"), "behaved");
    }
}

/// The host's own pre-initialization works on a componentize-py component: the SDK exports
/// `wizer-initialize` (settings parsed, templates compiled), the host snapshots the instance
/// after it, and the `sign` plugin answers from that snapshot exactly as its plain component
/// does, refusals included.
#[test]
fn the_python_sign_plugin_answers_from_its_snapshot_as_from_its_plain_component() {
    let sandbox = sandbox(json!({}));
    let path = std::path::Path::new("sign.wasm");
    let prepared = Plugin::load(&sandbox, path, &component("sign")).unwrap();
    prepared
        .prepare()
        .expect("the host snapshots the Python plugin");
    assert!(prepared.is_prepared());
    let plain = Plugin::load(&sandbox, path, &component("sign")).unwrap();
    assert!(!plain.is_prepared());
    let params = json!({"rpms": {"hello-1.0-1.x86_64.rpm": {"upload": "a".repeat(64)}}});
    for arch in ["x86_64", "aarch64"] {
        assert_eq!(
            prepared
                .serialize_blocking(&job(arch), &params.to_string())
                .unwrap(),
            plain
                .serialize_blocking(&job(arch), &params.to_string())
                .unwrap(),
            "{arch}"
        );
    }
    let bad = json!({"rpms": {"x.rpm": {"upload": "A"}}, "key": "k"}).to_string();
    let refused = prepared.validate_blocking(&bad).unwrap_err().to_string();
    assert_eq!(
        refused,
        plain.validate_blocking(&bad).unwrap_err().to_string()
    );
}
