//! The test node (from `omni_test_support::cassandra`) and configs for it.

#![allow(dead_code, unused_imports)] // each test binary uses a part

use std::time::Duration;

use omni_store_cassandra::CassandraConfig;
pub use omni_test_support::cassandra::{contact_point, own_the_node, share_the_node, testbed};

/// The keyspace the conformance suite shares (each case uses its own service names).
pub const KEYSPACE: &str = "omni_test";

/// A config for the test node and `keyspace`.
pub fn config(keyspace: &str) -> CassandraConfig {
    let mut config = CassandraConfig::new([contact_point()]);
    config.keyspace = keyspace.to_owned();
    config.request_timeout = Duration::from_secs(20);
    config
}
