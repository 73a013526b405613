//! DAG-level commands: init, add, heads, log, show, graph, verify.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use braidlog::{Hash, Log};
use clap::Subcommand;
use serde_json::json;

use crate::exit::{NotFound, Usage};
use crate::kv::plural;
use crate::output::{committed, node_json, show_author, show_payload, show_time, Lines, Out};

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
        /// Link to this node (repeatable; any unique prefix of at least 4 hex characters).
        /// Without any, the node links to the current heads.
        #[arg(long = "link", value_name = "HASH")]
        links: Vec<String>,
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
    #[command(
        after_help = "Examples:\n  braid show 3f2a9c1b2d4e\n  braid --json show 3f2a\n\nExit status 3 when no node has the hash, 2 when the prefix is ambiguous."
    )]
    Show {
        /// The node's hash, or any unique prefix of it (at least 4 hex characters).
        hash: String,
    },
    /// Print the DAG as Graphviz dot, or with --key only that key's history (in --ns).
    /// With --json, one JSON document per node instead.
    #[command(
        after_help = "Examples:\n  braid graph | dot -Tsvg > dag.svg\n  braid --ns app graph --key color | dot -Tpng > color.png\n  braid --json graph"
    )]
    Graph {
        /// Draw only the writes of this key and which versions each superseded.
        #[arg(long)]
        key: Option<String>,
    },
    /// Check every storage invariant; exits non-zero on any violation.
    #[command(after_help = "Example:\n  braid verify")]
    Verify,
}

fn no_replica(dir: &Path) -> anyhow::Error {
    NotFound(format!(
        "no replica at {} (create one with `braid init` or any write)",
        dir.display()
    ))
    .into()
}

/// Opens an existing replica (read commands must not create one by accident).
pub fn open_existing(dir: &Path) -> Result<Log> {
    if !dir.join("data.mdb").exists() {
        return Err(no_replica(dir));
    }
    open_or_create(dir)
}

/// Opens an existing replica read-only: a reader never writes, so it works on read-only
/// media and beside a writer.
pub fn open_reader(dir: &Path) -> Result<Log> {
    if !dir.join("data.mdb").exists() {
        return Err(no_replica(dir));
    }
    Log::open_read_only(dir).with_context(|| format!("opening {} read-only", dir.display()))
}

/// Opens the key-value view for reading: read-only when its tables exist and are caught up
/// with the log, else (creating or catching up the view writes) read-write.
pub fn kv_reader(dir: &Path) -> Result<braidlog::Kv> {
    let log = open_reader(dir)?;
    match braidlog::Kv::open(&log).map_err(braidlog::Error::from) {
        Err(braidlog::Error::Storage(braidlog::StorageError::ReadOnly { .. })) => {
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
    pub fn run(self, dir: &Path, ns: Option<&str>, out: &Out) -> Result<ExitCode> {
        if ns.is_some() && !matches!(self, DagCommand::Graph { key: Some(_) }) {
            return Err(Usage(
                "--ns selects the key of `graph --key` and key-value commands; this command has none"
                    .into(),
            )
            .into());
        }
        match self {
            DagCommand::Init => {
                let log = open_or_create(dir)?;
                out.print(
                    json!({"dir": dir.display().to_string(), "peer_id": log.peer_id().to_string(), "nodes": log.len()?}),
                    || format!("replica at {} (peer {}), {}", dir.display(), log.peer_id(), plural(log.len().unwrap_or(0), "node")),
                )?;
            }
            DagCommand::Add { payload, links } => {
                let log = open_or_create(dir)?;
                let links = links
                    .iter()
                    .map(|l| log.find_hash(l).with_context(|| format!("--link {l}")))
                    .collect::<Result<Vec<Hash>>>()?;
                let node = if links.is_empty() {
                    log.append(payload.into_bytes())?
                } else {
                    log.add(links, payload.into_bytes())?
                };
                out.print_committed(
                    &committed(&node.hash()),
                    json!({"hash": node.hash().to_string()}),
                    || node.hash().to_string(),
                );
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
                )?;
            }
            DagCommand::Log {
                since,
                limit,
                author,
            } => {
                let log = open_reader(dir)?;
                let mut w = Lines::new();
                let entries = log.changes(since).filter(|e| match (e, &author) {
                    (Ok(e), Some(a)) => e.node.author().as_ref() == Some(a),
                    _ => true,
                });
                for entry in entries.take(limit.unwrap_or(usize::MAX)) {
                    let e = entry?;
                    if out.is_json() {
                        w.line(node_json(Some(e.seq), &e.node))?;
                    } else {
                        let links: Vec<String> = e.node.links().iter().map(|h| h.short()).collect();
                        w.line(format_args!(
                            "#{:<6} {}  links [{}]  {}  ({})",
                            e.seq,
                            e.node.hash().short(),
                            links.join(" "),
                            show_payload(e.node.payload()),
                            show_author(e.node.authorship())
                        ))?;
                    }
                }
                w.finish()?;
            }
            DagCommand::Show { hash } => {
                let log = open_reader(dir)?;
                let hash = log.find_hash(&hash)?;
                let Some(node) = log.get(&hash)? else {
                    return Err(NotFound(format!("no node {hash} in this replica")).into());
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
                })?;
            }
            DagCommand::Graph { key } => crate::graph::run(dir, key, ns, out)?,
            DagCommand::Verify => {
                // Every page, read with pread, before LMDB follows any.
                braidlog::check_pages(dir)?;
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
                            s.push_str(&format!("policy after seq {seq}: {} ({})\n", p.mode, plural(p.trusted.len() as u64, "trusted key")));
                            for k in &p.trusted {
                                s.push_str(&format!("  trusted {k}\n"));
                            }
                        }
                        for (k, n) in &report.authors {
                            s.push_str(&format!("signed by {k}: {}, every signature checked\n", plural(*n, "node")));
                        }
                        s.push_str(&format!("unsigned: {}\n", plural(report.unsigned, "node")));
                        if let Some(e) = &kv_error {
                            s.push_str(&format!("violation: the key-value view cannot be opened: {e}\n"));
                        }
                        s.push_str(&format!(
                            "{}: {}, {}, {} checked",
                            if ok { "ok" } else { "CORRUPT" },
                            plural(report.nodes, "node"),
                            plural(report.heads, "head"),
                            plural(report.views as u64, "view")
                        ));
                        s
                    },
                )?;
                if !ok {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
