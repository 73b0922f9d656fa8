//! The engine conformance suite against the local engine: real processes in a temp directory.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use omni_engine::conformance::{Fixture, Shape};
use omni_engine::{Engine, EngineJob};
use omni_engine_local::{LocalEngine, LocalEngineConfig};
use serde_json::{Value, json};

struct Local(Arc<LocalEngine>);

fn root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir")
            .keep()
    })
    .clone()
}

fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "none", "command": ["/bin/sh", "-c", script]})
}

#[async_trait]
impl Fixture for Local {
    fn engine(&self) -> Arc<dyn Engine> {
        self.0.clone()
    }

    async fn job(&self, shape: Shape) -> EngineJob {
        let (init, containers) = match shape {
            Shape::Succeeds => (
                vec![container("first", "echo one; echo two")],
                vec![container("second", "echo three")],
            ),
            Shape::Fails => (
                vec![container("first", "echo failing; exit 3")],
                vec![container("second", "echo never")],
            ),
            Shape::RunsLong => (vec![], vec![container("first", "sleep 600")]),
        };
        omni_engine::conformance::one_job(&json!({
            "restartPolicy": "Never", "initContainers": init, "containers": containers,
        }))
    }
}

async fn fixture() -> Arc<dyn Fixture> {
    Arc::new(Local(Arc::new(LocalEngine::new(
        &LocalEngineConfig::new(),
        root(),
    ))))
}

omni_engine::engine_conformance_tests!(fixture);
