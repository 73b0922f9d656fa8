//! A job's log as the local engine keeps it: its lines appended to a file in the job's directory
//! (`log.jsonl`, one JSON object a line, out of the steps' sight), read back by each follower
//! from its own place in the file. So a job that prints without end costs the engine no memory,
//! and the logs of the jobs that ended cost none until they are cleaned up with their
//! directories.
//!
//! The writer is buffered and not flushed for every line: a reader flushes it before it reads
//! (under the same lock, so it never meets half a line), and the buffer flushes itself when full.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use omni_engine::{EngineLine, LogStream};
use serde::{Deserialize, Serialize};

/// The spool's file name in the job's directory.
pub(crate) const FILE_NAME: &str = "log.jsonl";

/// A line as it is spooled.
#[derive(Serialize, Deserialize)]
struct Spooled<'a> {
    step: std::borrow::Cow<'a, str>,
    stream: LogStream,
    time: DateTime<Utc>,
    line: std::borrow::Cow<'a, str>,
}

/// The writing end of a job's spool.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    writer: Mutex<BufWriter<File>>,
}

impl Spool {
    /// A new, empty spool in `dir` (the job's directory).
    pub(crate) fn create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let file = File::create(&path)?;
        Ok(Spool {
            path,
            writer: Mutex::new(BufWriter::with_capacity(64 * 1024, file)),
        })
    }

    /// Appends a line.
    pub(crate) fn append(&self, line: &EngineLine) -> std::io::Result<()> {
        let spooled = Spooled {
            step: line.step.as_str().into(),
            stream: line.stream,
            time: line.time,
            line: line.line.as_str().into(),
        };
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        serde_json::to_writer(&mut *writer, &spooled)?;
        writer.write_all(b"\n")
    }

    /// Writes out what is buffered, so that a reader finds every line appended so far.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }

    /// A reader from the spool's first line.
    pub(crate) fn reader(&self) -> std::io::Result<Reader> {
        Ok(Reader {
            file: BufReader::new(File::open(&self.path)?),
            text: String::new(),
        })
    }
}

/// One follower's reading end of a spool.
#[derive(Debug)]
pub(crate) struct Reader {
    file: BufReader<File>,
    text: String,
}

impl Reader {
    /// The next line, which the writer has appended and flushed.
    pub(crate) fn next_line(&mut self) -> std::io::Result<EngineLine> {
        self.text.clear();
        if self.file.read_line(&mut self.text)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the log spool ends before the lines it counts",
            ));
        }
        let spooled: Spooled<'_> = serde_json::from_str(&self.text)?;
        Ok(EngineLine {
            step: spooled.step.into_owned(),
            stream: spooled.stream,
            time: spooled.time,
            line: spooled.line.into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_as_written_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(dir.path()).unwrap();
        let line = |n: usize| EngineLine {
            step: "build".into(),
            stream: if n.is_multiple_of(2) {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            },
            time: Utc::now(),
            line: format!("line {n}\t\"quoted\" \\ {}", "é".repeat(n % 3)),
        };
        let written: Vec<EngineLine> = (0..1000).map(line).collect();
        let mut early = spool.reader().unwrap();
        for line in &written[..10] {
            spool.append(line).unwrap();
        }
        spool.flush().unwrap();
        for line in &written[..10] {
            assert_eq!(&early.next_line().unwrap(), line);
        }
        for line in &written[10..] {
            spool.append(line).unwrap();
        }
        spool.flush().unwrap();
        for line in &written[10..] {
            assert_eq!(&early.next_line().unwrap(), line);
        }
        let mut late = spool.reader().unwrap();
        for line in &written {
            assert_eq!(&late.next_line().unwrap(), line);
        }
        assert!(late.next_line().is_err());
    }
}
