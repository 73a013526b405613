//! How key-value results look: text for people, JSON for programs, and the hints that name
//! the flags to act on them.

use anyhow::Result;
use braidlog::kv::{Entry, HistoryEntry, KvRead, Op, Version, Versions};
use braidlog::{Hash, Kv};
use serde_json::{json, Value};

use crate::exit::NotFound;
use crate::ns;
use crate::output::{json_bytes, show_author, show_bytes, Out};

/// Who signed the node that wrote `hash`, and when they say they did.
fn authorship(log: &braidlog::Log, hash: &Hash) -> Option<braidlog::Authorship> {
    log.get(hash).ok().flatten()?.authorship().copied()
}

fn version_json(log: &braidlog::Log, v: &Version) -> Value {
    let auth = authorship(log, &v.hash);
    json!({
        "hash": v.hash.to_string(),
        "value": v.value().map(json_bytes),
        "deleted": v.is_tombstone(),
        "depth": v.depth,
        "author": auth.map(|a| a.author.to_string()),
        "timestamp_ms": auth.map(|a| a.timestamp_ms),
    })
}

pub fn versions_json(kv: &Kv, key: &[u8], versions: &Versions) -> Value {
    json!({
        "ns": ns::to_json(kv.namespace_path()),
        "key": json_bytes(key),
        "conflict": versions.is_conflict(),
        "versions": versions.iter().map(|v| version_json(kv.log(), v)).collect::<Vec<_>>(),
    })
}

fn show_version(v: &Version) -> String {
    match v.value() {
        Some(value) => show_bytes(value),
        None => "(deleted)".to_string(),
    }
}

/// A key for people: its text, `""` when empty (empty keys are valid keys).
pub fn show_key(key: &[u8]) -> String {
    if key.is_empty() {
        "\"\"".to_string()
    } else {
        show_bytes(key)
    }
}

/// How a key looks to a person: the value (once, even when several authors wrote it alike),
/// or a clearly marked conflict listing each version's author, and the command that resolves
/// it (with the flags that select its namespace).
pub fn describe(kv: &Kv, key: &str, versions: &Versions) -> String {
    if !versions.is_conflict() {
        return versions.iter().next().map(show_version).unwrap_or_default();
    }
    let path = kv.namespace_path();
    let place = ns::label(path)
        .map(|l| format!(" in namespace {l}"))
        .unwrap_or_default();
    let mut s = format!(
        "CONFLICT on {key:?}{place}: {} concurrent versions",
        versions.len()
    );
    for v in versions.iter() {
        s.push_str(&format!(
            "\n  {}  {}  ({})",
            v.hash.short(),
            show_version(v),
            show_author(authorship(kv.log(), &v.hash).as_ref())
        ));
    }
    s.push_str(&format!(
        "\nresolve with: braid {}resolve {} VALUE   (or --pick HASH, or --auto)",
        ns::flag(path),
        ns::shell_word(key)
    ));
    s
}

/// `key<TAB>value`, or `key<TAB>CONFLICT: v1 | v2`; `tag` names the namespace in listings
/// that span several.
fn entry_line(tag: &str, e: &Entry) -> String {
    let key = show_key(&e.key);
    if e.versions.is_conflict() {
        let values: Vec<String> = e.versions.iter().map(show_version).collect();
        format!("{tag}{key}\tCONFLICT: {}", values.join(" | "))
    } else {
        format!(
            "{tag}{key}\t{}",
            e.versions.iter().map(show_version).collect::<String>()
        )
    }
}

pub fn print_entries(
    kv: &Kv,
    tag: &str,
    out: &Out,
    entries: impl Iterator<Item = braidlog::kv::Result<Entry>>,
) -> Result<()> {
    for e in entries {
        let e = e?;
        out.print(versions_json(kv, &e.key, &e.versions), || {
            entry_line(tag, &e)
        })?;
    }
    Ok(())
}

/// The "not found" error for KEY, naming the other namespaces that hold it.
pub fn no_key(kv: &Kv, key: &str, command: &str) -> anyhow::Error {
    let here = ns::label(kv.namespace_path())
        .map(|l| format!(" in namespace {l}"))
        .unwrap_or_default();
    let mut msg = format!("no key {key:?}{here}");
    // One lookup per namespace: cheap next to what a person reads.
    let root = Kv::open(kv.log()).map(|k| ns::select(k, None));
    if let Ok(Ok(root)) = root {
        let elsewhere: Vec<String> = ns::all(&root)
            .filter_map(|item| item.ok())
            .filter(|(path, other)| {
                path != kv.namespace_path() && matches!(other.get(key), Ok(Some(_)))
            })
            .take(3)
            .map(|(path, _)| format!("braid {}{command} {}", ns::flag(&path), ns::shell_word(key)))
            .collect();
        if !elsewhere.is_empty() {
            msg.push_str(&format!(
                "; it is in another namespace: {}",
                elsewhere.join(", ")
            ));
        }
    }
    NotFound(msg).into()
}

pub fn written_json(kv: &Kv, key: &str, hash: &Hash) -> Value {
    json!({"ns": ns::to_json(kv.namespace_path()), "key": key, "hash": hash.to_string()})
}

/// `1 key`, `2 keys`.
pub fn plural(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

pub fn history_line(kv: &Kv, key: &str, h: &HistoryEntry, out: &Out) -> Result<()> {
    let auth = authorship(kv.log(), &h.hash);
    let op = match &h.op {
        Op::Put(v) => json_bytes(v),
        Op::Del => Value::Null,
    };
    out.print(
        json!({
            "ns": ns::to_json(kv.namespace_path()),
            "key": key,
            "seq": h.seq,
            "hash": h.hash.to_string(),
            "depth": h.depth,
            "op": if h.op.is_tombstone() { "del" } else { "put" },
            "value": op,
            "deleted": h.op.is_tombstone(),
            "supersedes": h.supersedes.iter().map(Hash::to_string).collect::<Vec<_>>(),
            "folds": h.folds.iter().map(Hash::to_string).collect::<Vec<_>>(),
            "current": h.current,
            "author": auth.map(|a| a.author.to_string()),
            "timestamp_ms": auth.map(|a| a.timestamp_ms),
        }),
        || {
            let what = match &h.op {
                Op::Put(v) => format!("put {}", show_bytes(v)),
                Op::Del => "del".to_string(),
            };
            let sup: Vec<String> = h.supersedes.iter().map(Hash::short).collect();
            let mut sup = format!("supersedes [{}]", sup.join(" "));
            if !h.folds.is_empty() {
                // A write that superseded more versions than a node may link.
                let folds: Vec<String> = h.folds.iter().map(Hash::short).collect();
                sup.push_str(&format!(
                    " and the versions under fold nodes [{}]",
                    folds.join(" ")
                ));
            }
            format!(
                "{} {}  depth {:<4} {:<24} {}  {}{}",
                if h.current { "*" } else { " " },
                h.hash.short(),
                h.depth,
                what,
                sup,
                show_author(auth.as_ref()),
                if h.current { "  (current)" } else { "" }
            )
        },
    )?;
    Ok(())
}
