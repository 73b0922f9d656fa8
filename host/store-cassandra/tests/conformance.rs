//! The shared conformance suite against a real Cassandra node (see `common`).

use std::sync::Arc;

use omni_store::Store;
use omni_store_cassandra::CassandraStore;

mod common;

async fn store() -> Arc<dyn Store> {
    common::share_the_node();
    let config = common::config(common::KEYSPACE);
    Arc::new(
        CassandraStore::connect(&config)
            .await
            .expect("connect to the test node"),
    )
}

omni_store::conformance_tests!(store);
