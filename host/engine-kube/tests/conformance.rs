//! The engine conformance suite on the Kubernetes testbed: kwok plays each shape's pod (the
//! default stages for `Succeeds`, `omni.io/kwok-stage=fail-first-init` for `Fails`,
//! `omni.io/kwok-stage=run` for `RunsLong`), and the steps' lines come from log files named by
//! kwok `Logs` objects.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use omni_engine::conformance::{Fixture, Shape};
use omni_engine::{Engine, EngineJob};

use common::JobSpec;

const NAMESPACE: &str = "omni-test-conformance";

struct Kube {
    engine: Arc<dyn Engine>,
    client: kube::Client,
    logs: common::Keep,
}

#[async_trait]
impl Fixture for Kube {
    fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    async fn job(&self, shape: Shape) -> EngineJob {
        let id = common::new_id();
        let (spec, lines): (JobSpec<'_>, &[(&str, &[&str])]) = match shape {
            Shape::Succeeds => (
                JobSpec {
                    init: &["first"],
                    containers: &["second"],
                    stage: None,
                    node_arch: "amd64",
                    gated: true,
                },
                &[("first", &["one", "two"]), ("second", &["three"])],
            ),
            Shape::Fails => (
                JobSpec {
                    init: &["first"],
                    containers: &["second"],
                    stage: Some("fail-first-init"),
                    node_arch: "amd64",
                    gated: true,
                },
                &[("first", &["failing"]), ("second", &["never"])],
            ),
            Shape::RunsLong => (
                JobSpec {
                    init: &[],
                    containers: &["first"],
                    stage: Some("run"),
                    node_arch: "amd64",
                    gated: true,
                },
                &[("first", &["running"])],
            ),
        };
        let files = common::write_logs(self.logs.path(), id, lines);
        common::release(self.client.clone(), NAMESPACE.to_owned(), id, files);
        common::engine_job(id, vec![common::job_manifest(id, &spec)])
    }
}

async fn fixture() -> Arc<dyn Fixture> {
    Arc::new(Kube {
        engine: Arc::new(common::engine(NAMESPACE).await),
        client: common::client().await,
        logs: Arc::new(tempfile::tempdir().unwrap()),
    })
}

omni_engine::engine_conformance_tests!(fixture);
