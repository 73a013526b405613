//! Printing: text for people, JSON for programs (`--json`).

use braidlog::Node;
use serde_json::{json, Value};

/// Where command output goes, and in which form.
pub struct Out {
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON in `--json` mode, else the text `human` builds.
    pub fn print(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }
}

/// A payload shown to a person: the text when it is UTF-8, else hex.
pub fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

/// A node payload for people: key-value operations as `put key = value` / `del key`, anything
/// else as [`show_bytes`].
pub fn show_payload(payload: &[u8]) -> String {
    use braidlog::kv::{KvOp, Op};
    match KvOp::decode(payload) {
        Some(KvOp {
            key,
            op: Op::Put(v),
            ..
        }) => format!("put {} = {}", show_bytes(&key), show_bytes(&v)),
        Some(KvOp {
            key, op: Op::Del, ..
        }) => format!("del {}", show_bytes(&key)),
        None => match braidlog::kv::fold::Fold::decode(payload) {
            Some(fold) => format!(
                "fold of {} (links versions a write supersedes)",
                show_bytes(&fold.key)
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

pub fn node_json(seq: Option<u64>, node: &Node) -> Value {
    json!({
        "hash": node.hash().to_string(),
        "seq": seq,
        "links": node.links().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        "payload": json_bytes(node.payload()),
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
