//! The sandbox against hostile plugins: each misbehaviour ends in its own clear error naming
//! the plugin and version, and other calls keep being served meanwhile. Each runs on both
//! compilers' code: Cranelift's (what a plugin ends up on) and Winch's (what a new plugin serves
//! first).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use omni_runtime::{Plugin, PluginError, Tier};
use omni_test_support::memories::many_memories;
use omni_test_support::{component, job, registry, sandbox};
use serde_json::json;

/// The hostile plugin loaded twice: on optimized code and on quick code.
fn hostile(limits: serde_json::Value) -> [Arc<Plugin>; 2] {
    let sandbox = sandbox(limits);
    let (path, bytes) = (std::path::Path::new("hostile.wasm"), component("hostile"));
    let optimized = Plugin::load(&sandbox, path, &bytes).expect("hostile plugin loads");
    let quick = Plugin::load_quick(&sandbox, path, &bytes).expect("hostile plugin loads");
    assert_eq!(
        (optimized.tier(), quick.tier()),
        (Tier::Optimized, Tier::Quick)
    );
    [Arc::new(optimized), Arc::new(quick)]
}

fn behave(
    plugin: &omni_runtime::Plugin,
    behaviour: &str,
) -> Result<omni_runtime::Rendered, PluginError> {
    plugin.serialize_blocking(&job("x86_64"), &json!({"behaviour": behaviour}).to_string())
}

#[test]
fn a_plugin_that_loops_forever_is_stopped_at_its_deadline() {
    for plugin in hostile(json!({"tasks": {"hostile": {"timeout_ms": 200}}})) {
        let err = behave(&plugin, "loop").unwrap_err();
        assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "plugin hostile@0.1.0 timed out after 200ms"
        );
    }
}

#[test]
fn a_plugin_that_allocates_without_end_hits_its_memory_cap() {
    for plugin in hostile(json!({"tasks": {"hostile": {"memory_mib": 32}}})) {
        let err = behave(&plugin, "alloc").unwrap_err();
        let PluginError::MemoryExceeded {
            limit, requested, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*limit, 32 << 20);
        assert!(*requested > 32 << 20);
        assert!(
            err.to_string()
                .starts_with("plugin hostile@0.1.0 exceeded its memory limit of 33554432 bytes"),
            "{err}"
        );
    }
}

#[test]
fn the_memory_cap_counts_every_memory_of_an_instance() {
    // Eight more memories of 9 MiB each: none is near the cap of 64 MiB, together they are past
    // it. Three of them fit, and the plugin behaves as before.
    let sandbox = sandbox(json!({}));
    let path = std::path::Path::new("hostile.wasm");
    let fits = many_memories(&component("hostile"), 3, 9);
    let plugin = Plugin::load(&sandbox, path, &fits).expect("hostile with three more memories");
    assert!(behave(&plugin, "behave").is_ok());

    let err = Plugin::load(&sandbox, path, &many_memories(&component("hostile"), 7, 9))
        .expect_err("seven more memories of 9 MiB are past the 64 MiB cap");
    assert!(
        err.to_string()
            .contains("exceeded its memory limit of 67108864 bytes"),
        "{err}"
    );

    // Empty memories cost the cap nothing, but each takes a slot of the pool all plugins share.
    let err = Plugin::load(&sandbox, path, &many_memories(&component("hostile"), 8, 0))
        .expect_err("nine memories are more than a plugin may have");
    assert!(err.to_string().contains("memories"), "{err}");
}

#[test]
fn a_panic_is_reported_with_its_message() {
    for plugin in hostile(json!({})) {
        let err = behave(&plugin, "panic").unwrap_err();
        assert!(matches!(err, PluginError::Panicked { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "plugin hostile@0.1.0 panicked: the hostile plugin panics on purpose (at "
            ),
            "{text}"
        );
    }
}

#[test]
fn an_answer_over_the_output_cap_is_refused() {
    // Memory large enough to build the 50 MiB answer, so the output cap is what stops it.
    for plugin in hostile(
        json!({"tasks": {"hostile": {"memory_mib": 512, "output_kib": 4096, "timeout_ms": 30000}}}),
    ) {
        let err = behave(&plugin, "huge").unwrap_err();
        let PluginError::OutputTooLarge { size, limit, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(*size > 50 << 20);
        assert_eq!(*limit, 4 << 20);
        assert!(
            err.to_string()
                .starts_with("plugin hostile@0.1.0 answered "),
            "{err}"
        );
    }
}

#[test]
fn with_the_default_memory_cap_a_50_mib_answer_cannot_even_be_built() {
    for plugin in hostile(json!({"tasks": {"hostile": {"timeout_ms": 30000}}})) {
        let err = behave(&plugin, "huge").unwrap_err();
        assert!(matches!(err, PluginError::MemoryExceeded { .. }), "{err:?}");
    }
}

#[test]
fn opening_a_file_is_a_failed_call_the_plugin_sees() {
    // The runtime asks for its preopened directories (none) and fails the open itself: the
    // plugin goes on and reports the failure as its own error.
    for plugin in hostile(json!({})) {
        let err = behave(&plugin, "read-file").unwrap_err();
        let PluginError::Failed { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with("reading /etc/passwd failed: "),
            "{message}"
        );
    }
}

#[test]
fn what_a_language_runtime_asks_at_start_gets_empty_answers() {
    for plugin in hostile(json!({})) {
        let rendered = behave(&plugin, "startup").expect("the plugin goes on");
        let report = rendered.manifests[0].body["metadata"]["annotations"]["extra"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(report.starts_with("env 0; args 0; cwd "), "{report}");
        assert!(report.contains("; /etc/passwd error ("), "{report}");
    }
}

#[test]
fn a_plugin_that_sleeps_past_its_deadline_is_stopped_when_it_asks() {
    for plugin in hostile(json!({})) {
        let err = behave(&plugin, "sleep").unwrap_err();
        let PluginError::WaitPastDeadline { asked, limit, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (*asked, *limit),
            (Duration::from_secs(600), Duration::from_secs(1))
        );
        assert_eq!(
            err.to_string(),
            "plugin hostile@0.1.0 was stopped: it asked to wait 600s, past its deadline of 1s"
        );
    }
}

#[test]
fn a_wait_within_the_deadline_returns_and_the_plugin_goes_on() {
    for plugin in hostile(json!({})) {
        behave(&plugin, "nap").expect("a 1 ms sleep returns");
    }
}

#[test]
fn an_answer_that_breaks_the_contract_is_refused() {
    for plugin in hostile(json!({})) {
        let err = behave(&plugin, "bad-output").unwrap_err();
        assert!(matches!(err, PluginError::BadOutput { .. }), "{err:?}");
        assert!(err.to_string().contains("is not a JSON object"), "{err}");
    }
}

#[test]
fn the_host_keeps_serving_while_a_plugin_misbehaves() {
    let (_dir, registry) = registry(
        sandbox(json!({"tasks": {"hostile": {"timeout_ms": 3000, "memory_mib": 48}}})),
        &["hostile", "srpm"],
    );
    let hostile = registry.get("hostile").unwrap();
    let srpm = registry.get("srpm").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (done, served) = (Arc::clone(&done), Arc::clone(&served));
        std::thread::spawn(move || {
            let params = json!({"spec": "Name: x\n"}).to_string();
            while !done.load(Ordering::Acquire) {
                srpm.serialize_blocking(&job("x86_64"), &params)
                    .expect("srpm keeps rendering");
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for behaviour in ["loop", "sleep", "alloc", "panic", "read-file"] {
        assert!(behave(&hostile, behaviour).is_err());
    }
    done.store(true, Ordering::Release);
    worker.join().unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    // And the hostile plugin itself still works for a well-behaved call.
    assert!(behave(&hostile, "behave").is_ok());
}

#[tokio::test]
async fn the_outer_timeout_bounds_an_async_call() {
    for plugin in hostile(json!({"tasks": {"hostile": {"timeout_ms": 100}}})) {
        let err = plugin
            .serialize(job("x86_64"), json!({"behaviour": "loop"}).to_string())
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    }
}
