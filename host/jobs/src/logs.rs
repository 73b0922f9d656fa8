//! Jobs' logs past the store: the limits every stored line keeps to, and the live fan-out to
//! followers.
//!
//! The collector (the scheduler, on the replica that runs the job) makes lines with
//! [`LogLimits::admit`], writes each batch to the store and then hands it to [`LogHub::publish`]:
//! one `Arc` per batch whatever the number of followers, so followers never slow collection.
//! A follower ([`crate::JobService::follow_logs`]) reads the store after its cursor, then takes
//! the published batches; on a replica that does not collect the job it reads the store again
//! every [`POLL`]. Each follower has a bounded buffer ([`LogLimits::follower_batches`] batches);
//! one that falls behind it is ended with [`FollowEvent::Lagged`], which says where to resume.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use omni_store::{JobId, JobState, LogLine, LogStream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How often a follower reads the store when no batch came (the job is collected on another
/// replica, or it waits to start or end).
pub const POLL: Duration = Duration::from_millis(500);

/// What each stored line counts against [`LogLimits::max_job_bytes`] beyond its text: what the
/// store keeps of a line besides it (its job, step, number, time and stream, and the row's
/// keys). So a job printing empty lines reaches the limit too.
pub const LINE_OVERHEAD: u64 = 64;

/// The start of every marker line: a line that begins so on stderr is one.
const MARKER_PREFIX: &str = "[omni] this job's log reached its limit of ";

/// The marker stored once a job's log reaches [`LogLimits::max_job_bytes`] (`cap` names the
/// limit: `"67108864 bytes"`) or [`LogLimits::max_job_lines`]; nothing follows it.
pub fn truncation_marker(cap: &str) -> String {
    format!("{MARKER_PREFIX}{cap}: the lines it prints from here on are not kept")
}

/// What a job's stored log keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogLimits {
    /// The longest stored line, in bytes; longer ones are split into pieces of this size.
    pub max_line_bytes: usize,
    /// The most bytes stored per job, each line counting its text and [`LINE_OVERHEAD`]; then
    /// one marker line, and nothing more.
    pub max_job_bytes: u64,
    /// The most lines stored per job; then one marker line, and nothing more.
    pub max_job_lines: u64,
    /// How many published batches a follower may be behind before it is dropped.
    pub follower_batches: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_line_bytes: 16 * 1024,
            max_job_bytes: 64 * 1024 * 1024,
            max_job_lines: 1_000_000,
            follower_batches: 256,
        }
    }
}

/// How much of a job's log is stored, as the collector counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// The last line's `seq` (0: none yet).
    pub seq: u64,
    /// Bytes stored as [`LogLimits::max_job_bytes`] counts them (the marker not counted).
    pub bytes: u64,
    /// Lines stored (the marker not counted).
    pub lines: u64,
    /// The limit was reached: the marker is stored, nothing more is.
    pub truncated: bool,
}

impl Stored {
    /// Counts lines stored already (read back, page by page, when a collector resumes).
    pub fn count(&mut self, lines: &[LogLine]) {
        for line in lines {
            self.seq = self.seq.max(line.seq);
            if line.stream == LogStream::Stderr && line.line.starts_with(MARKER_PREFIX) {
                self.truncated = true;
            } else {
                self.bytes += line.line.len() as u64 + LINE_OVERHEAD;
                self.lines += 1;
            }
        }
    }
}

impl LogLimits {
    /// Makes a printed line into stored lines: split to [`Self::max_line_bytes`], numbered after
    /// `stored`, and counted against [`Self::max_job_bytes`] and [`Self::max_job_lines`] — the
    /// line that would pass a limit becomes the marker naming it, and later ones are dropped.
    pub fn admit(
        &self,
        stored: &mut Stored,
        step: &str,
        stream: LogStream,
        time: chrono::DateTime<chrono::Utc>,
        text: &str,
        out: &mut Vec<LogLine>,
    ) {
        let max = self.max_line_bytes.max(4);
        let mut rest = text;
        loop {
            if stored.truncated {
                return;
            }
            let mut cut = rest.len().min(max);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, after) = rest.split_at(cut);
            stored.seq += 1;
            let cost = piece.len() as u64 + LINE_OVERHEAD;
            let cap = if stored.bytes + cost > self.max_job_bytes {
                Some(format!("{} bytes", self.max_job_bytes))
            } else if stored.lines >= self.max_job_lines {
                Some(format!("{} lines", self.max_job_lines))
            } else {
                None
            };
            if let Some(cap) = cap {
                stored.truncated = true;
                out.push(LogLine {
                    step: step.to_owned(),
                    time,
                    seq: stored.seq,
                    stream: LogStream::Stderr,
                    line: truncation_marker(&cap),
                });
                return;
            }
            stored.bytes += cost;
            stored.lines += 1;
            out.push(LogLine {
                step: step.to_owned(),
                time,
                seq: stored.seq,
                stream,
                line: piece.to_owned(),
            });
            if after.is_empty() {
                return;
            }
            rest = after;
        }
    }
}

/// What a follower gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEvent {
    /// Lines, in order (shared with the other followers when they are the same).
    Lines(Batch),
    /// The job has ended and every line was sent: nothing follows.
    End {
        /// The job's final state.
        state: JobState,
    },
    /// The follower fell too far behind and is dropped: it resumes after this `seq` (from the
    /// start when none).
    Lagged {
        /// The last line it got.
        after: Option<u64>,
    },
}

/// A batch of stored lines, shared by every follower.
pub type Batch = Arc<[LogLine]>;

#[derive(Debug, Default)]
struct Channel {
    /// Made when the first follower comes: its buffer ([`LogLimits::follower_batches`] slots)
    /// is allocated whole, and thousands of running jobs nobody follows need none.
    sender: Option<broadcast::Sender<Batch>>,
    /// A collector publishes into it.
    publishing: bool,
}

impl Channel {
    fn followed(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| s.receiver_count() > 0)
    }
}

/// The live fan-out of stored log lines on this replica.
#[derive(Debug, Clone)]
pub struct LogHub {
    limits: LogLimits,
    channels: Arc<Mutex<HashMap<JobId, Channel>>>,
}

impl LogHub {
    /// A hub with `limits`.
    pub fn new(limits: LogLimits) -> Self {
        LogHub {
            limits,
            channels: Arc::default(),
        }
    }

    /// The limits stored lines keep to.
    pub fn limits(&self) -> &LogLimits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks job `id` as collected here until the returned guard is dropped.
    pub fn publisher(&self, id: JobId) -> Publisher {
        self.lock().entry(id).or_default().publishing = true;
        Publisher {
            hub: self.clone(),
            id,
        }
    }

    /// Whether a collector on this replica publishes job `id`'s lines.
    pub fn collected_here(&self, id: JobId) -> bool {
        self.lock().get(&id).is_some_and(|c| c.publishing)
    }

    pub(crate) fn subscribe(&self, id: JobId) -> broadcast::Receiver<Batch> {
        let capacity = self.limits.follower_batches.max(1);
        self.lock()
            .entry(id)
            .or_default()
            .sender
            .get_or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe()
    }

    /// Forgets job `id`'s channel once nobody publishes or follows.
    pub(crate) fn unsubscribe(&self, id: JobId, receiver: broadcast::Receiver<Batch>) {
        drop(receiver);
        let mut map = self.lock();
        if map.get(&id).is_some_and(|c| !c.publishing && !c.followed()) {
            map.remove(&id);
        }
    }

    /// How many jobs have a channel (collected or followed here).
    pub fn channels(&self) -> usize {
        self.lock().len()
    }
}

/// A collector's handle: it publishes the batches it stored.
#[derive(Debug)]
pub struct Publisher {
    hub: LogHub,
    id: JobId,
}

impl Publisher {
    /// The job it publishes for.
    pub fn job(&self) -> JobId {
        self.id
    }

    /// Hands a stored batch to this replica's followers (none may be listening).
    pub fn publish(&self, lines: &[LogLine]) {
        if lines.is_empty() {
            return;
        }
        let sender = self
            .hub
            .lock()
            .get(&self.id)
            .and_then(|c| c.sender.clone())
            .filter(|s| s.receiver_count() > 0);
        if let Some(sender) = sender {
            let _ = sender.send(Arc::from(lines));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut map = self.hub.lock();
        if let Some(channel) = map.get_mut(&self.id) {
            channel.publishing = false;
            if !channel.followed() {
                map.remove(&self.id);
            }
        }
    }
}

/// One follower: the store after its cursor, then the published batches (or the store again
/// every [`POLL`]), until the job has ended and its log was read to the end.
pub(crate) fn follow(
    service: crate::JobService,
    id: JobId,
    step: Option<String>,
    after: Option<u64>,
) -> impl futures::Stream<Item = Result<FollowEvent, crate::JobError>> + Send + 'static {
    // Small: the real buffer is the broadcast's, which a slow follower overflows.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let hub = service.logs().clone();
        // Before the first read, so that nothing stored after it is missed.
        let mut live = hub.subscribe(id);
        let mut follower = Follower {
            service,
            id,
            step,
            after,
            tx,
        };
        let _ = follower.run(&mut live).await;
        hub.unsubscribe(id, live);
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Why a follower stopped early.
enum Stop {
    /// Nobody reads it any more.
    Gone,
}

struct Follower {
    service: crate::JobService,
    id: JobId,
    step: Option<String>,
    after: Option<u64>,
    tx: tokio::sync::mpsc::Sender<Result<FollowEvent, crate::JobError>>,
}

impl Follower {
    async fn send(&self, event: Result<FollowEvent, crate::JobError>) -> Result<(), Stop> {
        self.tx.send(event).await.map_err(|_| Stop::Gone)
    }

    /// Sends what of `batch` is after the cursor (and of the step asked for), as one item: the
    /// batch itself when all of it is, so followers share it.
    async fn lines(&mut self, batch: &Batch) -> Result<(), Stop> {
        let after = self.after.unwrap_or(0);
        let Some(last) = batch.last().map(|l| l.seq) else {
            return Ok(());
        };
        if last <= after {
            return Ok(());
        }
        self.after = Some(last);
        let wanted = |l: &LogLine| l.seq > after && self.step.as_ref().is_none_or(|s| *s == l.step);
        let lines = if batch.iter().all(wanted) {
            Arc::clone(batch)
        } else {
            batch.iter().filter(|l| wanted(l)).cloned().collect()
        };
        if lines.is_empty() {
            return Ok(());
        }
        self.send(Ok(FollowEvent::Lines(lines))).await
    }

    /// Everything stored after the cursor.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let query = omni_store::LogQuery {
                step: None,
                after: self.after,
                limit: 1000,
            };
            let page = loop {
                match self.service.store.read_logs(self.id, &query).await {
                    Ok(page) => break page,
                    Err(omni_store::StoreError::Unavailable { .. }) => {
                        // The store comes back; the follower waits for it.
                        tokio::time::sleep(POLL).await;
                        if self.tx.is_closed() {
                            return Err(Stop::Gone);
                        }
                    }
                    Err(error) => {
                        self.send(Err(error.into())).await?;
                        return Err(Stop::Gone);
                    }
                }
            };
            let next = page.next;
            self.lines(&Batch::from(page.items)).await?;
            if next.is_none() {
                return Ok(());
            }
        }
    }

    /// The job's state when it has ended.
    async fn ended(&self) -> Option<JobState> {
        match self.service.get(self.id).await {
            Ok(job) if job.state.is_final() => Some(job.state),
            // Purged while followed: it is over.
            Err(crate::JobError::NotFound(_)) => Some(JobState::Cancelled),
            _ => None,
        }
    }

    async fn run(&mut self, live: &mut broadcast::Receiver<Batch>) -> Result<(), Stop> {
        let mut events = self.service.subscribe();
        let mut ended = self.ended().await;
        loop {
            self.catch_up().await?;
            if let Some(state) = ended {
                return self.send(Ok(FollowEvent::End { state })).await;
            }
            // Batches while they come; the store again after a gap, a quiet while, or the end.
            // Batches first: a follower that fell behind learns it before it hears of the end.
            loop {
                tokio::select! {
                    biased;
                    batch = live.recv() => match batch {
                        Ok(batch) => {
                            let gap = batch.first().is_some_and(|first| {
                                first.seq > self.after.unwrap_or(0) + 1
                            });
                            if gap {
                                break;
                            }
                            self.lines(&batch).await?;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let after = self.after;
                            return self.send(Ok(FollowEvent::Lagged { after })).await;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep(POLL).await;
                            break;
                        }
                    },
                    event = events.recv() => match event {
                        Ok(event) if event.job_id == self.id && event.to.is_final() => {
                            ended = Some(event.to);
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            ended = self.ended().await;
                            break;
                        }
                    },
                    () = tokio::time::sleep(POLL) => {
                        ended = self.ended().await;
                        break;
                    }
                    () = self.tx.closed() => return Err(Stop::Gone),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(limits: &LogLimits, stored: &mut Stored, text: &str) -> Vec<LogLine> {
        let mut out = Vec::new();
        limits.admit(
            stored,
            "build",
            LogStream::Stdout,
            chrono::Utc::now(),
            text,
            &mut out,
        );
        out
    }

    #[test]
    fn long_lines_are_split_and_numbered() {
        let limits = LogLimits {
            max_line_bytes: 4,
            ..LogLimits::default()
        };
        let mut stored = Stored::default();
        let lines = admit(&limits, &mut stored, "abcdefghij");
        let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(texts, ["abcd", "efgh", "ij"]);
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3]);
        // Characters are not cut.
        let lines = admit(&limits, &mut stored, "ééé");
        let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(texts, ["éé", "é"]);
        // An empty line is a line.
        assert_eq!(admit(&limits, &mut stored, "").len(), 1);
        assert_eq!(stored.seq, 6);
    }

    #[test]
    fn the_line_past_the_limit_becomes_the_marker_and_nothing_follows() {
        let limits = LogLimits {
            max_job_bytes: 2 * LINE_OVERHEAD + 10,
            ..LogLimits::default()
        };
        let mut stored = Stored::default();
        assert_eq!(admit(&limits, &mut stored, "12345678").len(), 1);
        let lines = admit(&limits, &mut stored, "abc");
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].line,
            truncation_marker(&format!("{} bytes", 2 * LINE_OVERHEAD + 10))
        );
        assert_eq!(lines[0].stream, LogStream::Stderr);
        assert!(stored.truncated);
        assert!(admit(&limits, &mut stored, "more").is_empty());
        // A collector that resumes over what was stored knows it.
        let mut all = vec![];
        let mut again = Stored::default();
        all.extend(admit(&limits, &mut again, "12345678"));
        all.extend(admit(&limits, &mut again, "abc"));
        let mut counted = Stored::default();
        counted.count(&all);
        assert_eq!(counted, stored);
    }

    #[test]
    fn empty_lines_count_against_both_caps() {
        // A million empty lines under a 1 KiB cap: 16 stored, then the marker.
        let limits = LogLimits {
            max_job_bytes: 1024,
            ..LogLimits::default()
        };
        let mut stored = Stored::default();
        let mut kept = Vec::new();
        for _ in 0..1_000_000 {
            kept.extend(admit(&limits, &mut stored, ""));
        }
        assert_eq!(kept.len(), 1024 / LINE_OVERHEAD as usize + 1);
        assert!(kept.last().unwrap().line.contains("limit of 1024 bytes"));

        let limits = LogLimits {
            max_job_lines: 3,
            ..LogLimits::default()
        };
        let mut stored = Stored::default();
        let kept: Vec<LogLine> = (0..10)
            .flat_map(|n| admit(&limits, &mut stored, &format!("line {n}")))
            .collect();
        let texts: Vec<&str> = kept.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            texts,
            ["line 0", "line 1", "line 2", &truncation_marker("3 lines")]
        );
        let mut counted = Stored::default();
        counted.count(&kept);
        assert_eq!(counted, stored);
        assert_eq!(counted.lines, 3);
    }

    #[test]
    fn a_channel_goes_when_nobody_publishes_or_follows() {
        let hub = LogHub::new(LogLimits::default());
        let id = omni_store::new_job_id();
        let publisher = hub.publisher(id);
        let receiver = hub.subscribe(id);
        assert!(hub.collected_here(id));
        drop(publisher);
        assert!(!hub.collected_here(id));
        assert_eq!(hub.channels(), 1);
        hub.unsubscribe(id, receiver);
        assert_eq!(hub.channels(), 0);
    }
}
