//! The Kubernetes cluster of the tests: `OMNI_TEST_KUBECONFIG` when set, else the project's
//! testbed (`tests/testbed/kubernetes.sh start`, once per test binary; it reuses a running one).
//! The testbed's kwok plays the pods' lives, with the extra stages of
//! `tests/testbed/kubernetes/kwok-omni-stages.yaml` (a cluster of one's own needs those too).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The kubeconfig of the cluster the tests use.
pub fn kubeconfig() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var("OMNI_TEST_KUBECONFIG") {
        Ok(path) if !path.trim().is_empty() => PathBuf::from(path.trim()),
        _ => PathBuf::from(testbed(&["start"])),
    })
    .clone()
}

/// Runs `tests/testbed/kubernetes.sh` and returns the last line it printed.
pub fn testbed(args: &[&str]) -> String {
    let mut command = Command::new(crate::workspace().join("tests/testbed/kubernetes.sh"));
    command.args(args);
    crate::last_line(command)
}
