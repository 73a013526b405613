//! Printing: text for people, JSON for programs (`--json`).

use braidlog::Node;
use serde_json::{json, Value};

use crate::exit::StdoutError;

/// Where command output goes, and in which form.
pub struct Out {
    json: bool,
}

/// Writes one line on stdout and flushes it, returning the error instead of panicking as
/// `println!` does: a reader that went away (`braid ls | head -1`) or a full device is an
/// error the command handles (see [`crate::exit`]).
pub fn write_line(line: &str) -> Result<(), StdoutError> {
    use std::io::Write;
    let mut w = std::io::stdout().lock();
    writeln!(w, "{line}")
        .and_then(|()| w.flush())
        .map_err(StdoutError)
}

/// Many lines on stdout, buffered (for long listings), with the errors of [`write_line`].
pub struct Lines(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Lines {
    pub fn new() -> Lines {
        Lines(std::io::BufWriter::new(std::io::stdout().lock()))
    }

    pub fn line(&mut self, line: impl std::fmt::Display) -> Result<(), StdoutError> {
        use std::io::Write;
        writeln!(self.0, "{line}").map_err(StdoutError)
    }

    pub fn finish(mut self) -> Result<(), StdoutError> {
        use std::io::Write;
        self.0.flush().map_err(StdoutError)
    }
}

/// `println!` that returns its error; for functions returning `anyhow::Result`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::write_line(&format!($($arg)*))?
    };
}
pub(crate) use say;

impl Out {
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON in `--json` mode, else the text `human` builds.
    pub fn print(&self, value: Value, human: impl FnOnce() -> String) -> Result<(), StdoutError> {
        if self.json {
            write_line(&value.to_string())
        } else {
            let text = human();
            if text.is_empty() {
                return Ok(());
            }
            write_line(&text)
        }
    }

    /// [`Out::print`] for the result of a write that is already committed: failing to print
    /// it must not make a script believe the write did not happen. A reader that went away
    /// is ignored; any other error is reported on stderr with `done` (what happened, e.g.
    /// the node's hash), and the command still succeeds.
    pub fn print_committed(&self, done: &str, value: Value, human: impl FnOnce() -> String) {
        if let Err(StdoutError(e)) = self.print(value, human) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                crate::exit::warn(&format!("{done}, but printing it failed: {e}"));
            }
        }
    }
}

/// What a write command did, for [`Out::print_committed`].
pub fn committed(hash: &braidlog::Hash) -> String {
    format!("the write is committed as {hash}")
}

/// A payload shown to a person: the text when it is UTF-8, else hex.
pub fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

/// A node payload for people: key-value operations as `put [ns] key = value` /
/// `del [ns] key` (no tag in the root namespace), anything else as [`show_bytes`].
pub fn show_payload(payload: &[u8]) -> String {
    use crate::kv::show_key;
    use crate::ns::tag;
    use braidlog::kv::{KvOp, Op};
    match KvOp::decode(payload) {
        Some(KvOp {
            namespace,
            key,
            op: Op::Put(v),
        }) => format!(
            "put {}{} = {}",
            tag(&namespace),
            show_key(&key),
            show_bytes(&v)
        ),
        Some(KvOp {
            namespace,
            key,
            op: Op::Del,
        }) => format!("del {}{}", tag(&namespace), show_key(&key)),
        None => match braidlog::kv::Fold::decode(payload) {
            Some(fold) => format!(
                "fold of {}{} (links versions a write supersedes)",
                tag(&fold.namespace),
                show_key(&fold.key)
            ),
            None => show_bytes(payload),
        },
    }
}

/// Bytes as JSON: a string when UTF-8, else `{"hex": ...}`.
pub fn json_bytes(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(_) => json!({ "hex": hex::encode(bytes) }),
    }
}

/// A node payload for programs: `{"kv": {"ns", "key", "op", "value"}}` for a key-value
/// operation (`op` is `put`, `del` or `fold`), else `{"payload": bytes}`.
pub fn payload_json(payload: &[u8]) -> (Value, Value) {
    use braidlog::kv::KvOp;
    if let Some(op) = KvOp::decode(payload) {
        let kv = json!({
            "ns": crate::ns::to_json(&op.namespace),
            "key": json_bytes(&op.key),
            "op": if op.op.is_tombstone() { "del" } else { "put" },
            "value": op.op.value().map(json_bytes),
        });
        return (kv, Value::Null);
    }
    if let Some(fold) = braidlog::kv::Fold::decode(payload) {
        let kv = json!({
            "ns": crate::ns::to_json(&fold.namespace),
            "key": json_bytes(&fold.key),
            "op": "fold",
            "value": null,
        });
        return (kv, Value::Null);
    }
    (Value::Null, json_bytes(payload))
}

pub fn node_json(seq: Option<u64>, node: &Node) -> Value {
    let (kv, payload) = payload_json(node.payload());
    json!({
        "hash": node.hash().to_string(),
        "seq": seq,
        "links": node.links().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        "kv": kv,
        "payload": payload,
        "size": node.encoded_len(),
        "author": node.author().map(|a| a.to_string()),
        "timestamp_ms": node.timestamp_ms(),
    })
}

/// Author and claimed time for people: `by 9f0c3a1b2c3d at 2026-11-29 08:01:02.345Z`, or
/// `unsigned`.
pub fn show_author(auth: Option<&braidlog::Authorship>) -> String {
    match auth {
        None => "unsigned".to_string(),
        Some(a) => format!("by {} at {}", a.author.short(), show_time(a.timestamp_ms)),
    }
}

/// The author's claimed time, UTC, to the millisecond (claimed: not evidence).
/// The value is the author's to choose: past year 9999 it is shown as a number.
pub fn show_time(ms: u64) -> String {
    const END_OF_9999_MS: u64 = 253_402_300_799_999;
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)) {
        Some(t) if ms <= END_OF_9999_MS => humantime::format_rfc3339_millis(t).to_string(),
        _ => format!("{ms} ms after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_times_show_at_any_value() {
        assert_eq!(show_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(show_time(1_764_403_200_123), "2025-11-29T08:00:00.123Z");
        assert_eq!(show_time(u64::MAX), format!("{} ms after 1970", u64::MAX));
    }
}
