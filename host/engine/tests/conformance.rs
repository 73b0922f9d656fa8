//! The engine conformance suite against the scripted engine (`omni_engine::testing`): each job
//! plays its shape's life as soon as the engine takes it.

use std::sync::Arc;

use async_trait::async_trait;
use omni_engine::conformance::{Fixture, Shape};
use omni_engine::testing::{Act, Scripted};
use omni_engine::{Engine, EngineJob, Outcome, StepState};
use serde_json::json;

struct Played(Arc<Scripted>);

fn step(name: &str, state: StepState) -> Act {
    Act::Step(name.into(), state)
}

fn log(step: &str, line: &str) -> Act {
    Act::Log(step.into(), line.into())
}

#[async_trait]
impl Fixture for Played {
    fn engine(&self) -> Arc<dyn Engine> {
        self.0.clone()
    }

    async fn job(&self, shape: Shape) -> EngineJob {
        let job = omni_engine::conformance::one_job(&json!({"containers": []}));
        let life = match shape {
            Shape::Succeeds => vec![
                Act::Wait(Some("pulling".into())),
                Act::Run,
                step("first", StepState::Running),
                log("first", "one"),
                log("first", "two"),
                step("first", StepState::Succeeded),
                step("second", StepState::Running),
                log("second", "three"),
                step("second", StepState::Succeeded),
                Act::End(Outcome::Succeeded),
            ],
            Shape::Fails => vec![
                Act::Run,
                step("first", StepState::Running),
                Act::LogErr("first".into(), "failing".into()),
                step("first", StepState::Failed),
                Act::End(Outcome::Failed("step first exited with 3".into())),
            ],
            Shape::RunsLong => vec![Act::Run, step("first", StepState::Running)],
        };
        self.0.prepare(job.id, life);
        job
    }
}

async fn fixture() -> Arc<dyn Fixture> {
    Arc::new(Played(Scripted::builder("scripted").build()))
}

omni_engine::engine_conformance_tests!(fixture);
