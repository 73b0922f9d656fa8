//! Stored records: how the backends write the model's JSON so that two server versions can
//! share one database during a rolling upgrade.
//!
//! A record is the model value's JSON with a `format` number first:
//! `{"format":1,"id":...}`. Reading is lenient: the model ignores fields it does not know and
//! reads states it does not know as [`JobState::Other`](crate::JobState::Other). Writing back
//! keeps what it did not understand: a record whose `format` is newer than [`FORMAT`] is merged
//! ([`merge`]) rather than replaced, so the fields a newer server added survive this one's
//! changes. A record of this format or older holds nothing this server does not know, and is
//! simply replaced.
//!
//! The rule for changing the model, which this depends on: a version that adds a field to a
//! stored record raises [`FORMAT`]; fields are never removed or given another meaning, only
//! added (as `Option` or with a default); and every known field is always written (no
//! `skip_serializing_if`), so that a merge can tell a field set to nothing from one it does not
//! know.

use serde::Serialize;
use serde_json::{Map, Value};

/// The newest record format this server writes and fully understands. Records written before
/// formats existed have none and read as format 0.
pub const FORMAT: u64 = 1;

/// The key holding a record's format.
pub const FORMAT_KEY: &str = "format";

/// The prefix of every record this format writes, when it is not merging: a record that begins
/// with it needs no parsing to know it holds nothing unknown.
const PREFIX: &str = "{\"format\":1,";

/// `value` as a record, written over `previous` (the stored record it replaces, if any).
///
/// When `previous` is of a newer format, its fields this server does not know are kept (see
/// [`merge`]; `opaque` names top-level fields whose value is replaced whole, such as a job's
/// params) and so is its format. Otherwise the record is `value` with this [`FORMAT`].
pub fn encode<T: Serialize>(
    value: &T,
    previous: Option<&str>,
    opaque: &[&str],
) -> serde_json::Result<String> {
    match previous.filter(|previous| !previous.starts_with(PREFIX)) {
        Some(previous) => {
            let old: Value = serde_json::from_str(previous)?;
            let format = format_of(&old);
            if format <= FORMAT {
                return encode_fresh(value);
            }
            let Value::Object(mut merged) = merge(old, serde_json::to_value(value)?, opaque) else {
                // The value is not an object (never so for a record): nothing to keep.
                return serde_json::to_string(value);
            };
            merged.insert(FORMAT_KEY.to_owned(), Value::from(format));
            serde_json::to_string(&merged)
        }
        None => encode_fresh(value),
    }
}

/// `value` written over `previous` by [`merge`], for JSON kept beside a record that has no
/// format of its own (a list such as a job's history in a row whose record is of a newer
/// format).
pub fn encode_over<T: Serialize>(value: &T, previous: &str) -> serde_json::Result<String> {
    let old: Value = serde_json::from_str(previous)?;
    serde_json::to_string(&merge(old, serde_json::to_value(value)?, &[]))
}

/// Whether a stored record is of a newer format than this server's: its unknown fields must be
/// kept when it is written back.
pub fn is_newer(record: &str) -> bool {
    !record.starts_with(PREFIX)
        && serde_json::from_str::<FormatOnly>(record).is_ok_and(|r| r.format > FORMAT)
}

#[derive(serde::Deserialize)]
struct FormatOnly {
    #[serde(default)]
    format: u64,
}

/// The format of a parsed record (0 when it has none: written before formats existed).
pub fn format_of(record: &Value) -> u64 {
    record.get(FORMAT_KEY).and_then(Value::as_u64).unwrap_or(0)
}

fn encode_fresh<T: Serialize>(value: &T) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Record<'a, T> {
        format: u64,
        #[serde(flatten)]
        value: &'a T,
    }
    serde_json::to_string(&Record {
        format: FORMAT,
        value,
    })
}

/// `new` written over `old`, keeping what only `old` has: objects are merged key by key (a key
/// only `old` has is kept; one `new` has wins, merged again if both are objects or arrays,
/// except the top-level keys named in `opaque`, which `new` replaces whole); arrays are merged
/// element by element, `new` deciding the length (so an appended history entry is added and
/// the entries before keep their unknown fields); anything else is `new`'s.
pub fn merge(old: Value, new: Value, opaque: &[&str]) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            Value::Object(merge_objects(old, new, |key| opaque.contains(&key)))
        }
        (old, new) => merge_nested(old, new),
    }
}

fn merge_nested(old: Value, new: Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            Value::Object(merge_objects(old, new, |_| false))
        }
        (Value::Array(old), Value::Array(new)) => {
            let mut old = old.into_iter();
            Value::Array(
                new.into_iter()
                    .map(|new| match old.next() {
                        Some(old) => merge_nested(old, new),
                        None => new,
                    })
                    .collect(),
            )
        }
        (_, new) => new,
    }
}

fn merge_objects(
    mut old: Map<String, Value>,
    new: Map<String, Value>,
    opaque: impl Fn(&str) -> bool,
) -> Map<String, Value> {
    for (key, new) in new {
        let merged = match old.remove(&key) {
            Some(old) if !opaque(&key) => merge_nested(old, new),
            _ => new,
        };
        old.insert(key, merged);
    }
    old
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_fresh_record_starts_with_its_format() {
        let text = encode(&json!({"b": 1, "a": [1]}), None, &[]).unwrap();
        assert!(text.starts_with(PREFIX), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, json!({"format": 1, "a": [1], "b": 1}));
    }

    #[test]
    fn records_of_this_format_or_older_are_replaced() {
        for previous in [
            r#"{"format":1,"a":1,"gone":true}"#,
            r#"{"a":1,"gone":true}"#,
            r#"{"gone":true,"format":1}"#,
        ] {
            let text = encode(&json!({"a": 2}), Some(previous), &[]).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, json!({"format": 1, "a": 2}), "over {previous}");
        }
    }

    #[test]
    fn a_newer_record_keeps_what_this_server_does_not_know() {
        let previous = json!({
            "format": 7,
            "state": "verifying",
            "shiny": {"x": 1},
            "plugin": {"task": "rpm", "signature": "abc"},
            "steps": [{"name": "a", "state": "running", "started_at": "t1"},
                      {"name": "b", "state": "pending", "started_at": null}],
            "params": {"old": 1},
            "engine": "k8s",
        });
        let new = json!({
            "state": "failed",
            "plugin": {"task": "rpm"},
            "steps": [{"name": "a", "state": "failed"}, {"name": "b", "state": "skipped"},
                      {"name": "c", "state": "skipped"}],
            "params": {"new": 1},
            "engine": null,
        });
        let text = encode(&new, Some(&previous.to_string()), &["params"]).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            json!({
                "format": 7,
                "state": "failed",
                "shiny": {"x": 1},
                "plugin": {"task": "rpm", "signature": "abc"},
                "steps": [{"name": "a", "state": "failed", "started_at": "t1"},
                          {"name": "b", "state": "skipped", "started_at": null},
                          {"name": "c", "state": "skipped"}],
                "params": {"new": 1},
                "engine": null,
            })
        );
    }

    #[test]
    fn a_shorter_array_drops_the_old_tail() {
        let merged = merge(
            json!({"h": [{"a": 1}, {"b": 2}]}),
            json!({"h": [{"c": 3}]}),
            &[],
        );
        assert_eq!(merged, json!({"h": [{"a": 1, "c": 3}]}));
    }

    #[test]
    fn a_damaged_previous_record_is_an_error() {
        assert!(encode(&json!({"a": 1}), Some("{not json"), &[]).is_err());
    }
}
