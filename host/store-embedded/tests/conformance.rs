//! The store conformance suite against the embedded store, one fresh data directory per case,
//! directly and through the measuring `Timed` wrapper.

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

/// The same suite through [`omni_store::Timed`], the measuring wrapper `omni serve` puts around
/// its store: it must change nothing the suite can see.
mod timed {
    use std::sync::Arc;

    use omni_store::{Store, Timed};

    async fn store() -> Arc<dyn Store> {
        Arc::new(Timed::new(super::store().await))
    }

    omni_store::conformance_tests!(store);
}
