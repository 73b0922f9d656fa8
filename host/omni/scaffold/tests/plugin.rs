//! The `@TASK@` plugin run natively against its `templates/@TASK@/`, with the SDK's harness: the
//! contract (`describe`), the rendered Job for each arch, and one test per kind of bad params,
//! each naming the field's JSON Pointer.

use @CRATE_IDENT@::@TYPE@;
use omni_sdk::testing::{
    Harness, assert_prepared_answers_as_fresh, job_pod, step_names, with, without,
};
use omni_sdk::{Job, Plugin};
use serde_json::{Value, json};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/@TASK@");

fn harness() -> Harness<@TYPE@> {
    Harness::new(TEMPLATES)
}

fn params() -> Value {
    json!({"message": "hello", "count": 3})
}

#[test]
fn describe_names_the_contract() {
    let described = harness().describe();
    assert_eq!(described.task, "@TASK@");
    assert_eq!(described.steps, @TYPE@::STEPS);
    assert_eq!(described.arches, @TYPE@::ARCHES);
    let schema = &described.params_schema;
    assert_eq!(schema["properties"]["message"]["type"], "string");
    assert_eq!(schema["required"], json!(["message"]));
}

#[test]
fn renders_one_job_per_arch_with_its_node_arch_and_steps() {
    for (arch, node_arch) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        let job = Job::example(arch);
        let rendered = harness().serialize(&job, &params()).unwrap();
        assert_eq!(rendered.primary, job.name);
        assert_eq!(rendered.manifests.len(), 1);
        let pod = job_pod(&rendered);
        assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], node_arch);
        assert_eq!(step_names(pod), @TYPE@::STEPS);
        let env = &pod["containers"][0]["env"];
        assert_eq!(env[0], json!({"name": "MESSAGE", "value": "hello"}));
        assert_eq!(env[1], json!({"name": "COUNT", "value": "3"}));
        // The SDK labels every object with the job and the task.
        let labels = &rendered.manifests[0].body["metadata"]["labels"];
        assert_eq!(labels["omni.io/task"], "@TASK@");
    }
}

#[test]
fn count_defaults_to_one() {
    let rendered = harness()
        .serialize(&Job::example("x86_64"), &without(params(), "count"))
        .unwrap();
    assert_eq!(job_pod(&rendered)["containers"][0]["env"][1]["value"], "1");
}

#[test]
fn bad_params_name_the_field() {
    let harness = harness();
    for (params, path) in [
        (without(params(), "message"), "/message"),
        (with(params(), "message", json!("")), "/message"),
        (with(params(), "message", json!(42)), "/message"),
        (with(params(), "count", json!(0)), "/count"),
        // Above the operator's max_count (settings.yaml).
        (with(params(), "count", json!(11)), "/count"),
        (with(params(), "colour", json!("red")), "/colour"),
    ] {
        assert_eq!(harness.error_paths(&params), [path], "{params}");
    }
    assert!(harness.validate(&params()).is_ok());
}

/// The host serves from a snapshot taken after the plugin parsed its settings and compiled
/// `TEMPLATES`: it must answer as a fresh instance does, and every listed file must exist.
#[test]
fn a_prepared_plugin_answers_as_a_fresh_one() {
    let bad = with(params(), "count", json!(0));
    assert!(harness().validate(&bad).is_err());
    assert_prepared_answers_as_fresh::<@TYPE@>(TEMPLATES, &[params(), bad]);
}
