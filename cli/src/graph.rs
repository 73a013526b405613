//! `braid graph`: the DAG, or one key's history, as Graphviz dot or JSON lines.

use std::path::Path;

use anyhow::Result;
use braidlog::kv::Op;
use braidlog::Hash;
use serde_json::json;

use crate::dag::{kv_reader, open_reader};
use crate::kv::show_key;
use crate::output::{json_bytes, node_json, show_bytes, show_payload, Lines, Out};

/// Characters of a payload shown in a graph's box; longer ones end with `…`.
pub const LABEL_CHARS: usize = 32;

/// A label cut to [`LABEL_CHARS`] characters (never inside a character), marked when cut,
/// and escaped for a dot string.
pub fn label(text: &str) -> String {
    let mut cut: String = text.chars().take(LABEL_CHARS).collect();
    if text.chars().nth(LABEL_CHARS).is_some() {
        cut.pop();
        cut.push('…');
    }
    cut.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn node_line(hash: &Hash, text: &str, current: bool) -> String {
    format!(
        "  \"{}\" [label=\"{}\\n{}\"{}];",
        hash.short(),
        hash.short(),
        label(text),
        if current { ", style=bold" } else { "" }
    )
}

pub fn run(dir: &Path, key: Option<String>, ns: Option<&str>, out: &Out) -> Result<()> {
    // A key without history is not found (with where it is), not an empty drawing.
    let history = match &key {
        None => None,
        Some(key) => {
            let kv = crate::ns::select(kv_reader(dir)?, ns)?;
            let mut history = kv.history(key).peekable();
            if history.peek().is_none() {
                return Err(crate::kv::no_key(&kv, key, "graph --key"));
            }
            Some((kv, key, history))
        }
    };
    let mut w = Lines::new();
    let dot = !out.is_json();
    if dot {
        w.line("digraph braid {\n  rankdir=BT;\n  node [shape=box, fontname=monospace];")?;
    }
    match history {
        None => {
            let log = open_reader(dir)?;
            for entry in log.changes(0) {
                let e = entry?;
                if !dot {
                    w.line(node_json(Some(e.seq), &e.node))?;
                    continue;
                }
                let hash = e.node.hash();
                w.line(node_line(&hash, &show_payload(e.node.payload()), false))?;
                for l in e.node.links() {
                    w.line(format_args!("  \"{}\" -> \"{}\";", hash.short(), l.short()))?;
                }
            }
        }
        Some((kv, key, history)) => {
            for h in history {
                let h = h?;
                if !dot {
                    w.line(json!({
                        "ns": crate::ns::to_json(kv.namespace_path()),
                        "key": json_bytes(key.as_bytes()),
                        "hash": h.hash.to_string(),
                        "seq": h.seq,
                        "depth": h.depth,
                        "op": if h.op.is_tombstone() { "del" } else { "put" },
                        "value": h.op.value().map(json_bytes),
                        "supersedes": h.supersedes.iter().map(Hash::to_string).collect::<Vec<_>>(),
                        "current": h.current,
                    }))?;
                    continue;
                }
                let what = match &h.op {
                    Op::Put(v) => format!("put {}", show_bytes(v)),
                    Op::Del => format!("del {}", show_key(key.as_bytes())),
                };
                w.line(node_line(&h.hash, &what, h.current))?;
                for s in &h.supersedes {
                    w.line(format_args!(
                        "  \"{}\" -> \"{}\";",
                        h.hash.short(),
                        s.short()
                    ))?;
                }
            }
        }
    }
    if dot {
        w.line("}")?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_between_characters_and_marked() {
        assert_eq!(label("short"), "short");
        let long = "é".repeat(40);
        let cut = label(&long);
        assert_eq!(cut.chars().count(), LABEL_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(label(&"x".repeat(LABEL_CHARS)), "x".repeat(LABEL_CHARS));
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
