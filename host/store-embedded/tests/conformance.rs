//! The store conformance suite against the embedded store, one fresh data directory per case.

use std::sync::Arc;

use omni_store::Store;
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};

async fn store() -> Arc<dyn Store> {
    // The directory lives as long as the test process; each case gets its own.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    Arc::new(EmbeddedStore::open(&dir, EmbeddedConfig::default()).expect("open"))
}

omni_store::conformance_tests!(store);
