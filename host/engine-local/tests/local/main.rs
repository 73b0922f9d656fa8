//! The local runner with jobs rendered by the real plugins and run for real: a source RPM built
//! by rpmbuild from the srpm plugin's job, a binary RPM from the rpm plugin's, an ISO remastered
//! by xorriso from the iso plugin's; failing steps, the deadline and cancel killing whole
//! process groups; what it refuses to run.
//!
//! # Layout
//! - `plugins`: the real plugins' jobs (srpm, rpm, iso) building real packages and images.
//! - `roots`: a root directory configured for an arch as its jobs' `/`, writable per job.
//! - `exact`: the srpm and rpm jobs' packages compared with rpmbuild's own; BuildRequires
//!   installed into the job's root; a root without dnf; rpm's own messages.
//! - `steps`: how steps run: environment, mounts, working directory, failures, the deadline
//!   and cancel, output, what the runner refuses.
//! - `sandbox`: what a step cannot do: reach the network, see the server or other jobs, run a
//!   spec's commands outside, exceed its limits.
//! - `network`: a step's own network through slirp4netns: the host's address reached, its
//!   loopback not; slirp4netns ending with the step; a missing one; what it costs.

mod exact;
mod network;
mod plugins;
mod roots;
mod sandbox;
mod steps;

use std::process::Command;
use std::time::Duration;

use omni_engine::{Manifest, Rendered};
use omni_engine_local::sandbox::Network;
use omni_engine_local::{
    Event, Isolation, LocalRunner, Outcome, Plan, PlanError, RunError, Sandbox, SandboxConfig,
};
use omni_test_support::sleeping;
use serde_json::{Value, json};

async fn render(task: &str, params: Value) -> Rendered {
    let (_dir, registry) =
        omni_test_support::registry(omni_test_support::sandbox(json!({})), &[task]);
    let plugin = registry.get(task).unwrap();
    plugin
        .serialize(omni_test_support::job("x86_64"), params.to_string())
        .await
        .unwrap()
}

async fn finish(run: &mut omni_engine_local::Run) -> (Vec<Event>, Outcome) {
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(120), run.events.recv())
        .await
        .expect("the run went quiet")
    {
        if let Event::Ended(outcome) = event {
            return (events, outcome);
        }
        events.push(event);
    }
    panic!("the run ended without an outcome: {events:?}");
}

fn lines(events: &[Event], step: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Line { step: s, line, .. } if s == step => Some(line.clone()),
            _ => None,
        })
        .collect()
}

const SPEC: &str = "Name: hello\nVersion: 1.0\nRelease: 1%{?dist}\nSummary: Says hello\nLicense: MIT\nSource0: hello.sh\nBuildArch: noarch\n\n%description\nSays hello.\n\n%install\ninstall -D -m 755 %{SOURCE0} %{buildroot}/usr/bin/hello\n\n%files\n/usr/bin/hello\n";

/// A rendered job of one Job object with these containers, volumes and deadline.
fn job(init: &Value, containers: &Value, deadline: Option<u64>) -> Rendered {
    let mut spec = json!({
        "backoffLimit": 0,
        "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": init,
            "containers": containers,
            "volumes": [{"name": "input", "configMap": {"name": "in"}}, {"name": "out", "emptyDir": {}}],
        }},
    });
    if let Some(seconds) = deadline {
        spec["activeDeadlineSeconds"] = json!(seconds);
    }
    Rendered {
        manifests: vec![
            Manifest {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "in".into(),
                body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "in"},
                             "data": {"greeting": "hi there", "word": "pineapple"}}),
            },
            Manifest {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "j".into(),
                body: json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": spec}),
            },
        ],
        primary: "j".into(),
    }
}

fn sh(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "none", "command": ["/bin/sh", "-c", script],
           "env": [{"name": "IN", "value": "/in"}, {"name": "OUT", "value": "/out/sub"},
                   {"name": "WORD", "valueFrom": {"configMapKeyRef": {"name": "in", "key": "word"}}}],
           "volumeMounts": [{"name": "input", "mountPath": "/in"}, {"name": "out", "mountPath": "/out"}]})
}

async fn started(run: &mut omni_engine_local::Run) {
    loop {
        match run.events.recv().await.unwrap() {
            Event::Line { line, .. } if line == "started" => return,
            Event::Ended(outcome) => panic!("ended early: {outcome:?}"),
            _ => {}
        }
    }
}

/// A step that leaves `sleep` behind, waiting for it or not; `seconds` makes it findable.
fn leaves_a_sleep(seconds: &str, wait: bool) -> Value {
    let wait = if wait { "; wait" } else { "" };
    // "started" once the sleep has become `sleep` (not a shell still forking it).
    sh(
        "slow",
        &format!(
            "sleep {seconds} & until grep -qs {seconds} /proc/$!/cmdline; do :; done; echo started{wait}"
        ),
    )
}

/// This machine's primary IPv4 address (the source of its route to the outside): what a
/// step's slirp4netns connects to as the host would. A machine with loopback alone has none;
/// give it one (`ip link add omni0 type dummy; ip addr add 192.0.2.2/24 dev omni0; ip link set
/// omni0 up`) to run these tests.
fn host_address() -> std::net::IpAddr {
    let out = Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .expect("ip (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|a: &std::net::IpAddr| !a.is_loopback())
        .unwrap_or_else(|| panic!("this machine has no IPv4 address but loopback ({text})"))
}

/// A sandbox that gives the steps that ask for it the host's network.
fn host_network() -> Isolation {
    Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(SandboxConfig {
        network: Network::Host,
        ..SandboxConfig::default()
    })))
}
