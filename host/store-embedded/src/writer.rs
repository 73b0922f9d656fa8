//! The writer thread: one redb write transaction at a time (redb allows no more), holding as
//! many waiting operations as there are, committed with one fsync (group commit).
//!
//! Each operation runs in the shared transaction and answers only after the commit: a failed
//! commit fails every operation in it, and none was acknowledged before. An operation that
//! returns an error must not have written anything (they check first, then write).

use std::sync::Arc;

use omni_store::{Result, StoreError};
use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::tables::OpError;

/// The most operations committed together: bounds a commit's size and latency.
const MAX_BATCH: usize = 512;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Op = Box<dyn FnOnce(&WriteTransaction) -> Reply + Send>;

/// The queue to the writer thread. Dropping it closes the queue and waits until the thread has
/// committed what was queued and let go of the database, so that the file is closed when the
/// store is dropped: the same process can open it again at once (a server restarted in process).
#[derive(Debug)]
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(db: Arc<Database>) -> Result<Self> {
        let (queue, ops) = mpsc::channel(4 * MAX_BATCH);
        let thread = std::thread::Builder::new()
            .name("omni-store-writer".into())
            .spawn(move || run(&db, ops))
            .map_err(StoreError::unavailable)?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    pub(crate) async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&WriteTransaction) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let op: Op = Box::new(move |txn| {
            let result = op(txn);
            Box::new(move |commit: Result<(), String>| {
                let result = match commit {
                    Ok(()) => result.map_err(OpError::into_store),
                    Err(message) => Err(StoreError::Unavailable {
                        message,
                        source: None,
                    }),
                };
                // The caller may have gone away (its request was dropped); the write stands.
                let _ = answer.send(result);
            })
        });
        let queue = self.queue.as_ref().ok_or_else(closed)?;
        queue.send(op).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // The last handle may go with an operation the writer itself ran; it cannot wait
            // for itself, and it lets go of the database when its loop ends right after.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable {
        message: "the store's writer has stopped".into(),
        source: None,
    }
}

fn run(db: &Database, mut ops: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = ops.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let replies: Vec<Reply>;
        let commit = match db.begin_write() {
            Ok(txn) => {
                replies = batch.drain(..).map(|op| op(&txn)).collect();
                txn.commit().map_err(|e| e.to_string())
            }
            Err(error) => {
                let message = error.to_string();
                for op in batch.drain(..) {
                    // Not run: answer with the failure without touching a transaction.
                    drop(op);
                }
                tracing::error!(%message, "cannot begin a write transaction");
                continue;
            }
        };
        if let Err(message) = &commit {
            tracing::error!(%message, "a commit failed; its writes are answered with 503");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}
