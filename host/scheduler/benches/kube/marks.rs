//! When something happened to a job, as one observer saw it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omni_engine::JobId;

/// When something happened to a job, as one observer saw it.
pub(crate) type Marks = Arc<Mutex<HashMap<JobId, Instant>>>;

pub(crate) fn mark(marks: &Marks, id: JobId) {
    marks.lock().unwrap().entry(id).or_insert_with(Instant::now);
}

pub(crate) fn snapshot(marks: &Marks) -> HashMap<JobId, Instant> {
    marks.lock().unwrap().clone()
}

pub(crate) async fn wait_for(what: &str, marks: &Marks, n: usize, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        let count = marks.lock().unwrap().len();
        if count >= n {
            return true;
        }
        if Instant::now() > deadline {
            println!("(gave up waiting for {what}: {count} of {n} after {patience:?})");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
