//! The S3 server of the tests: `OMNI_TEST_S3` (an endpoint) when set, else the project's
//! testbed (`tests/testbed/s3.sh start`, once per test binary), a SeaweedFS with one identity.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Where the tests' S3 server is and how to sign in to it.
#[derive(Debug, Clone)]
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// An AWS shared credentials file (INI) whose `[default]` profile signs in.
    pub credentials_file: PathBuf,
    /// A bucket that exists; tests keep their objects under prefixes of their own in it.
    pub bucket: String,
}

/// The server the tests use. With `OMNI_TEST_S3` set, the credentials file is
/// `OMNI_TEST_S3_CREDENTIALS` and the bucket `OMNI_TEST_S3_BUCKET` (`omni-test`); else the
/// testbed is started (or reused) and says both.
pub fn server() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        match var("OMNI_TEST_S3") {
            Some(endpoint) => S3Server {
                endpoint: endpoint.trim().to_owned(),
                credentials_file: var("OMNI_TEST_S3_CREDENTIALS")
                    .expect("OMNI_TEST_S3 is set: set OMNI_TEST_S3_CREDENTIALS to an AWS credentials file for it")
                    .into(),
                bucket: var("OMNI_TEST_S3_BUCKET").unwrap_or_else(|| "omni-test".into()),
            },
            None => S3Server {
                endpoint: testbed(&["start"]),
                credentials_file: testbed(&["credentials"]).into(),
                bucket: testbed(&["bucket"]),
            },
        }
    })
}

/// Runs `tests/testbed/s3.sh` on the project's server and returns the last line it printed.
pub fn testbed(args: &[&str]) -> String {
    let mut command = Command::new(crate::workspace().join("tests/testbed/s3.sh"));
    command.args(args).env_remove("OMNI_TEST_S3");
    crate::last_line(command)
}
