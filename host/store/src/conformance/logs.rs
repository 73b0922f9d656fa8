//! The case of [`LogStore`](crate::LogStore): ordered reads, the step filter, the cursor,
//! lines written twice.

use std::sync::Arc;

use super::{create, job, lines, log_query, unique_service};
use crate::Store;
use crate::model::*;

/// Lines come back by `seq` across steps; the step filter and the cursor select; a line written
/// twice is stored once.
pub async fn logs_read_in_order_with_step_filter_and_cursor(store: Arc<dyn Store>) {
    let job = create(&store, &job(&unique_service(), "rpm", "default")).await;
    let fetch = lines("fetch", 0, 40);
    let build = lines("build", 40, 2000);
    // Batches arrive in any order; the read is ordered.
    store.append_logs(job.id, &build[..1000]).await.unwrap();
    store.append_logs(job.id, &fetch).await.unwrap();
    store.append_logs(job.id, &build[1000..]).await.unwrap();
    // A collector resuming after a crash writes some lines again.
    store.append_logs(job.id, &build[1990..]).await.unwrap();

    let mut all = Vec::new();
    let mut query = log_query(300);
    loop {
        let page = store.read_logs(job.id, &query).await.unwrap();
        assert!(page.items.len() <= 300);
        all.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<LogLine> = fetch.iter().chain(&build).cloned().collect();
    assert_eq!(all.len(), expected.len());
    assert_eq!(all, expected);

    let only_fetch = store
        .read_logs(
            job.id,
            &LogQuery {
                step: Some("fetch".into()),
                after: Some(10),
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(only_fetch.items, fetch[11..].to_vec());
    assert_eq!(only_fetch.next, None);
    let tail = store
        .read_logs(
            job.id,
            &LogQuery {
                step: None,
                after: Some(2035),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.items, build[1996..].to_vec());
    let nothing = store
        .read_logs(
            job.id,
            &LogQuery {
                step: Some("no-such-step".into()),
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(nothing.items.is_empty());
}
