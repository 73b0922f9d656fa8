//! What the model says of a job's log lines.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A stream a newer server wrote, by its name: read, shown and kept as it is (like
    /// [`JobState::Other`](crate::JobState::Other)).
    Other(&'static str),
}

impl LogStream {
    /// The streams this server knows.
    pub const ALL: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];

    /// The name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Other(name) => name,
        }
    }

    /// The stream stored as `name`: one this server knows, or [`LogStream::Other`]; `None` when
    /// `name` is not a name at all (damaged data).
    pub fn from_stored(name: &str) -> Option<Self> {
        match LogStream::ALL.into_iter().find(|s| s.as_str() == name) {
            Some(stream) => Some(stream),
            None => crate::unknown::intern("a log line of stream", name).map(LogStream::Other),
        }
    }
}

impl Serialize for LogStream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reads stored streams: one this server does not know becomes [`LogStream::Other`].
impl<'de> Deserialize<'de> for LogStream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        LogStream::from_stored(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("not a log stream: {name:?}")))
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_round_trip_and_unknown_ones_are_kept() {
        for stream in LogStream::ALL {
            let text = serde_json::to_string(&stream).unwrap();
            assert_eq!(serde_json::from_str::<LogStream>(&text).unwrap(), stream);
        }
        let other: LogStream = serde_json::from_str("\"system\"").unwrap();
        assert_eq!(other, LogStream::Other("system"));
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"system\"");
        assert!(serde_json::from_str::<LogStream>("\"no such/thing\"").is_err());
    }
}
