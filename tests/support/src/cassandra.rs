//! The Cassandra node of the tests: `OMNI_TEST_CASSANDRA` when set, else the project's testbed
//! (`tests/testbed/cassandra.sh start`, once per test binary), and a lock that keeps a test that
//! kills the node away from every other test binary using it.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// `host:port` of the node the tests use.
pub fn contact_point() -> String {
    static POINT: OnceLock<String> = OnceLock::new();
    POINT
        .get_or_init(|| match std::env::var("OMNI_TEST_CASSANDRA") {
            Ok(point) if !point.trim().is_empty() => point.trim().to_owned(),
            _ => testbed(&["start"], false),
        })
        .clone()
}

/// Runs `tests/testbed/cassandra.sh` and returns the last line it printed. With `own_node`,
/// ignores `OMNI_TEST_CASSANDRA`: the command acts on the project's node.
pub fn testbed(args: &[&str], own_node: bool) -> String {
    let mut command = Command::new(crate::workspace().join("tests/testbed/cassandra.sh"));
    command.args(args);
    if own_node {
        command.env_remove("OMNI_TEST_CASSANDRA");
    }
    crate::last_line(command)
}

fn lock_file() -> File {
    let dir = match std::env::var("OMNI_TESTBED_CACHE") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .join(".cache/omni-testbed"),
    };
    std::fs::create_dir_all(&dir).expect("testbed cache dir");
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("cassandra-tests.lock"))
        .expect("lock file")
}

/// Holds a shared lock on the test node for the rest of this test binary: the restart test
/// (which takes it exclusively) waits until this binary has exited, and this one waits for it.
pub fn share_the_node() {
    static SHARED: OnceLock<File> = OnceLock::new();
    SHARED.get_or_init(|| {
        let file = lock_file();
        file.lock_shared().expect("shared lock on the test node");
        file
    });
}

/// The node to oneself (to kill it): waits for every other test binary using it.
pub fn own_the_node() -> File {
    let file = lock_file();
    file.lock().expect("exclusive lock on the test node");
    file
}
