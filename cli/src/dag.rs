//! DAG-level commands: init, add, heads, log, show, graph, verify.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use braidlog::{Hash, Log};
use clap::Subcommand;
use serde_json::json;

use crate::output::{node_json, show_author, show_bytes, show_payload, show_time, Out};

#[derive(Subcommand)]
pub enum DagCommand {
    /// Create a replica in --dir (writes also create it).
    #[command(after_help = "Example:\n  braid --dir ./replica init")]
    Init,
    /// Add a raw node to the DAG; prints its hash.
    #[command(
        after_help = "Examples:\n  braid add 'first entry'\n  braid add --link 3f2a...e1 'child of 3f2a'"
    )]
    Add {
        /// The payload (text).
        payload: String,
        /// Link to this node (repeatable). Without any, the node links to the current heads.
        #[arg(long = "link", value_name = "HASH")]
        links: Vec<Hash>,
    },
    /// List the heads: nodes nothing links to yet.
    #[command(after_help = "Example:\n  braid heads")]
    Heads,
    /// Print the changes feed (arrival order, links always first).
    #[command(after_help = "Example:\n  braid log --since 10")]
    Log {
        /// Start after this seq.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Print at most this many entries.
        #[arg(long)]
        limit: Option<usize>,
        /// Only nodes signed by this public key (64 hex characters).
        #[arg(long, value_name = "KEY")]
        author: Option<braidlog::PublicKey>,
    },
    /// Show one node.
    #[command(after_help = "Example:\n  braid show 3f2a...e1")]
    Show {
        /// The node's hash (64 hex characters).
        hash: Hash,
    },
    /// Print the DAG as Graphviz dot, or with --key only that key's history.
    #[command(
        after_help = "Examples:\n  braid graph | dot -Tsvg > dag.svg\n  braid graph --key color | dot -Tpng > color.png"
    )]
    Graph {
        /// Draw only the writes of this key and which versions each superseded.
        #[arg(long)]
        key: Option<String>,
        /// The key's namespace (with --key).
        #[arg(long = "ns", requires = "key")]
        ns: Option<String>,
    },
    /// Check every storage invariant; exits non-zero on any violation.
    #[command(after_help = "Example:\n  braid verify")]
    Verify,
}

/// Opens an existing replica (read commands must not create one by accident).
pub fn open_existing(dir: &Path) -> Result<Log> {
    if !dir.join("data.mdb").exists() {
        bail!(
            "no replica at {} (create one with `braid init` or any write)",
            dir.display()
        );
    }
    open_or_create(dir)
}

/// Opens an existing replica read-only: a reader never writes, so it works on read-only
/// media and beside a writer.
pub fn open_reader(dir: &Path) -> Result<Log> {
    if !dir.join("data.mdb").exists() {
        bail!(
            "no replica at {} (create one with `braid init` or any write)",
            dir.display()
        );
    }
    Log::open_read_only(dir).with_context(|| format!("opening {} read-only", dir.display()))
}

/// Opens the key-value view for reading: read-only when its tables exist and are caught up
/// with the log, else (creating or catching up the view writes) read-write.
pub fn kv_reader(dir: &Path) -> Result<braidlog::Kv> {
    let log = open_reader(dir)?;
    match braidlog::Kv::open(&log) {
        Err(braidlog::Error::ReadOnly { .. }) => {
            drop(log);
            Ok(braidlog::Kv::open(&open_existing(dir)?)?)
        }
        other => Ok(other?),
    }
}

/// Opens the replica, creating it when missing.
pub fn open_or_create(dir: &Path) -> Result<Log> {
    Log::open(dir).with_context(|| format!("opening {}", dir.display()))
}

impl DagCommand {
    pub fn run(self, dir: &Path, out: &Out) -> Result<ExitCode> {
        match self {
            DagCommand::Init => {
                let log = open_or_create(dir)?;
                out.print(
                    json!({"dir": dir.display().to_string(), "peer_id": log.peer_id().to_string(), "nodes": log.len()?}),
                    || format!("replica at {} (peer {}), {} nodes", dir.display(), log.peer_id(), log.len().unwrap_or(0)),
                );
            }
            DagCommand::Add { payload, links } => {
                let log = open_or_create(dir)?;
                let node = if links.is_empty() {
                    log.append(payload.into_bytes())?
                } else {
                    log.add(links, payload.into_bytes())?
                };
                out.print(json!({"hash": node.hash().to_string()}), || {
                    node.hash().to_string()
                });
            }
            DagCommand::Heads => {
                let log = open_reader(dir)?;
                let heads = log.heads()?;
                out.print(
                    json!(heads.iter().map(|h| h.to_string()).collect::<Vec<_>>()),
                    || {
                        heads
                            .iter()
                            .map(|h| h.to_string())
                            .collect::<Vec<_>>()
                            .join("\n")
                    },
                );
            }
            DagCommand::Log {
                since,
                limit,
                author,
            } => {
                let log = open_reader(dir)?;
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                let entries = log.changes(since).filter(|e| match (e, &author) {
                    (Ok(e), Some(a)) => e.node.author().as_ref() == Some(a),
                    _ => true,
                });
                for entry in entries.take(limit.unwrap_or(usize::MAX)) {
                    let e = entry?;
                    if out.is_json() {
                        writeln!(w, "{}", node_json(Some(e.seq), &e.node))?;
                    } else {
                        let links: Vec<String> = e.node.links().iter().map(|h| h.short()).collect();
                        writeln!(
                            w,
                            "#{:<6} {}  links [{}]  {}  ({})",
                            e.seq,
                            e.node.hash().short(),
                            links.join(" "),
                            show_payload(e.node.payload()),
                            show_author(e.node.authorship())
                        )?;
                    }
                }
                w.flush()?;
            }
            DagCommand::Show { hash } => {
                let log = open_reader(dir)?;
                let Some(node) = log.get(&hash)? else {
                    bail!("no node {hash} in this replica")
                };
                let seq = log.seq_of(&hash)?;
                out.print(node_json(seq, &node), || {
                    let mut s = format!("node    {}\nseq     {}\n", node.hash(), seq.unwrap_or(0));
                    for l in node.links() {
                        s.push_str(&format!("link    {l}\n"));
                    }
                    if let Some(a) = node.authorship() {
                        s.push_str(&format!(
                            "author  {}\nclaimed {} (the author's clock)\n",
                            a.author,
                            show_time(a.timestamp_ms)
                        ));
                    } else {
                        s.push_str("author  (unsigned)\n");
                    }
                    s.push_str(&format!(
                        "size    {} bytes\npayload {}",
                        node.encoded_len(),
                        show_payload(node.payload())
                    ));
                    s
                });
            }
            DagCommand::Graph { key, ns } => {
                let log = match key {
                    Some(_) => kv_reader(dir)?.log().clone(),
                    None => open_reader(dir)?,
                };
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                writeln!(
                    w,
                    "digraph braid {{\n  rankdir=BT;\n  node [shape=box, fontname=monospace];"
                )?;
                let node_line = |hash: &Hash, label: &str, current: bool| {
                    let label: String = label.chars().take(32).collect();
                    format!(
                        "  \"{}\" [label=\"{}\\n{}\"{}];",
                        hash.short(),
                        hash.short(),
                        label.replace('\\', "\\\\").replace('"', "\\\""),
                        if current { ", style=bold" } else { "" }
                    )
                };
                match key {
                    None => {
                        for entry in log.changes(0) {
                            let e = entry?;
                            writeln!(
                                w,
                                "{}",
                                node_line(&e.node.hash(), &show_payload(e.node.payload()), false)
                            )?;
                            for l in e.node.links() {
                                writeln!(
                                    w,
                                    "  \"{}\" -> \"{}\";",
                                    e.node.hash().short(),
                                    l.short()
                                )?;
                            }
                        }
                    }
                    Some(key) => {
                        let mut kv = braidlog::Kv::open(&log)?;
                        if let Some(ns) = ns {
                            kv = kv.namespace(ns)?;
                        }
                        for h in kv.history(&key) {
                            let h = h?;
                            let what = match &h.op {
                                braidlog::kv::Op::Put(v) => format!("put {}", show_bytes(v)),
                                braidlog::kv::Op::Del => "del".to_string(),
                            };
                            writeln!(w, "{}", node_line(&h.hash, &what, h.current))?;
                            for s in &h.supersedes {
                                writeln!(w, "  \"{}\" -> \"{}\";", h.hash.short(), s.short())?;
                            }
                        }
                    }
                }
                writeln!(w, "}}")?;
                w.flush()?;
            }
            DagCommand::Verify => {
                // Every page, read with pread, before LMDB follows any.
                braidlog::store_file::check_pages(dir)?;
                // Through the key-value view, so it is compared with a rebuild too: `get` and
                // `ls` read it, so damage there must not pass as a healthy store. A view that
                // cannot be opened (not caught up past a damaged node, say) fails the check,
                // and everything else is still checked.
                let (log, kv_error) = match kv_reader(dir) {
                    Ok(kv) => (kv.log().clone(), None),
                    Err(e) => (open_reader(dir)?, Some(format!("{e:#}"))),
                };
                let report = log.verify()?;
                let ok = report.is_ok() && kv_error.is_none();
                out.print(
                    json!({
                        "ok": ok,
                        "kv_view_error": kv_error,
                        "nodes": report.nodes,
                        "heads": report.heads,
                        "views": report.views,
                        "violations": report.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                        "unlisted": report.unlisted,
                        "unsigned": report.unsigned,
                        "authors": report.authors.iter().map(|(k, n)| json!({"key": k.to_string(), "nodes": n})).collect::<Vec<_>>(),
                        "policies": report.policies.iter().map(|(seq, p)| json!({
                            "after_seq": seq,
                            "policy": p.mode.to_string(),
                            "trusted": p.trusted.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    }),
                    || {
                        let mut s = report.violations.iter().map(|v| format!("violation: {v}\n")).collect::<String>();
                        // What an auditor needs: who signed what, and the rules each node met.
                        for (seq, p) in &report.policies {
                            s.push_str(&format!("policy after seq {seq}: {} ({} trusted keys)\n", p.mode, p.trusted.len()));
                            for k in &p.trusted {
                                s.push_str(&format!("  trusted {k}\n"));
                            }
                        }
                        for (k, n) in &report.authors {
                            s.push_str(&format!("signed by {k}: {n} nodes, every signature checked\n"));
                        }
                        s.push_str(&format!("unsigned: {} nodes\n", report.unsigned));
                        if let Some(e) = &kv_error {
                            s.push_str(&format!("violation: the key-value view cannot be opened: {e}\n"));
                        }
                        s.push_str(&format!(
                            "{}: {} nodes, {} heads, {} views checked",
                            if ok { "ok" } else { "CORRUPT" },
                            report.nodes,
                            report.heads,
                            report.views
                        ));
                        s
                    },
                );
                if !ok {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
