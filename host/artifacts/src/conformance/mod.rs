//! The conformance suite: what every [`ArtifactStore`] must do, as tests a backend's tests
//! instantiate with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn store() -> Arc<dyn ArtifactStore> { /* a fresh or shared backend */ }
//! omni_artifacts::conformance_tests!(store);
//! ```
//!
//! Each case keeps its objects under a prefix no other case (or earlier run against the same
//! bucket) uses, so the cases run in parallel against one shared store. [`LARGE`] is the size of
//! a "big" object: more than two parts of the smallest multipart part S3 allows (5 MiB), which
//! the S3 tests configure so that big objects go as multipart uploads.
//!
//! `objects` holds round trips, ranges, names and listings; `failures` the puts that must store
//! nothing and the races.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::{ArtifactError, ArtifactStore, ByteRange, ByteStream, PutLimits, Sha256, Stored};

pub mod failures;
pub mod objects;

/// The size of a big object: two 5 MiB parts and a piece of a third.
pub const LARGE: usize = 2 * 5 * 1024 * 1024 + 1_234_567;

/// Instantiates every case as a `#[tokio::test]` over the stores `$make()` returns.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make; objects:
            round_trip_empty_small_and_large,
            ranges_start_middle_suffix_and_past_the_end,
            names_with_subdirectories,
            bad_names_are_refused_everywhere,
            replacing_and_deleting,
            missing_objects_are_not_found,
            list_and_delete_a_prefix,
            children_are_the_names_one_level_down,
        );
        $crate::conformance_tests!(@cases $make; failures:
            a_wrong_sha256_stores_nothing,
            the_size_cap_stores_nothing,
            a_failing_body_stores_nothing,
            concurrent_puts_leave_one_whole_object,
        );
    };
    (@cases $make:path; $group:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::ArtifactStore> = $make().await;
                $crate::conformance::$group::$case(store).await;
            }
        )*
    };
}

/// A prefix no other case uses.
fn unique_prefix() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// `len` bytes that do not repeat within a part (so a misplaced part shows), from `seed`.
pub fn data(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// `data` as a stream of `chunk`-byte pieces, as a client's body arrives.
pub fn body(data: &Bytes, chunk: usize) -> ByteStream {
    let pieces: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    futures::stream::iter(pieces).boxed()
}

async fn put(store: &Arc<dyn ArtifactStore>, key: &str, data: &Bytes) -> Stored {
    let stored = store
        .put(key, body(data, 65_537), PutLimits::default())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    assert_eq!(stored.size, data.len() as u64, "{key}: size");
    assert_eq!(stored.sha256, Sha256::of(data), "{key}: sha256");
    stored
}

/// The whole object under `key`.
async fn read(store: &Arc<dyn ArtifactStore>, key: &str) -> Result<Bytes, ArtifactError> {
    read_range(store, key, None).await
}

async fn read_range(
    store: &Arc<dyn ArtifactStore>,
    key: &str,
    range: Option<ByteRange>,
) -> Result<Bytes, ArtifactError> {
    let download = store.get(key, range).await?;
    let expected = download.range.end - download.range.start;
    let chunks: Vec<Bytes> = download
        .stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading {key}: {e}"));
    let bytes: Bytes = chunks.concat().into();
    assert_eq!(bytes.len() as u64, expected, "{key}: the stream's length");
    Ok(bytes)
}

fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what}: {} bytes differ from the {} expected (sha256 {} against {})",
        actual.len(),
        expected.len(),
        Sha256::of(actual),
        Sha256::of(expected)
    );
}

async fn keys(store: &Arc<dyn ArtifactStore>, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
        .into_iter()
        .map(|info| info.key)
        .collect()
}
