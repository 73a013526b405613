//! `braid watch`: each new key-value operation, as it is stored.
//!
//! It follows the changes feed, so it sees every write whatever made it: this process, another
//! `braid` (a `put`, or a `serve`/`sync --live` storing a peer's nodes). Writes by other
//! processes are not announced across processes, so it looks at the feed's end every
//! [`POLL`]: one short read transaction, whatever the size of the store.
//!
//! Each operation says where it came from by its author, which holds across processes: signed
//! with this replica's own key, it was written here (`local`); by another key, it came from a
//! peer (`peer`); unsigned, it cannot be told (`unknown`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use braidlog::kv::{KvOp, KvRead, Op};
use serde_json::json;

use crate::dag::kv_reader;
use crate::kv::show_key;
use crate::ns;
use crate::output::{json_bytes, show_author, show_bytes, Out};

/// How often the feed's end is read for writes by other processes.
pub const POLL: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Start after this feed position instead of at the end, replaying what is stored
    /// (`--since 0`: everything).
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
    /// Stop after this many operations.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

pub fn run(args: WatchArgs, dir: &Path, ns: Option<&str>, out: &Out) -> Result<ExitCode> {
    let root = kv_reader(dir)?;
    let only_ns = match ns {
        Some(_) => Some(ns::select(root.clone(), ns)?.namespace_path().to_vec()),
        None => None,
    };
    let prefix = args.prefix.unwrap_or_default().into_bytes();
    let log = root.log().clone();
    // Where an operation came from, across processes: a node signed with this replica's own
    // key was written here; any other author's came from a peer. The key is only read, never
    // made: a replica without one wrote nothing signed (it is looked for again until found,
    // since the first signed write here makes it).
    let own_key = || -> Result<Option<braidlog::PublicKey>> {
        Ok(match dir.join("identity.key").exists() {
            true => log.identity()?.map(|id| id.public_key()),
            false => None,
        })
    };
    let mut own = own_key()?;
    let mut after = match args.since {
        Some(seq) => seq,
        None => log.last_seq()?,
    };
    let mut left = args.count.unwrap_or(u64::MAX);
    while left > 0 {
        for entry in log.changes(after) {
            let entry = entry?;
            after = entry.seq;
            let Some(op) = KvOp::decode(entry.node.payload()) else {
                continue;
            };
            if only_ns.as_ref().is_some_and(|p| *p != op.namespace) || !op.key.starts_with(&prefix)
            {
                continue;
            }
            // The key's state now (it may have moved on since this operation).
            let mut kv = root.clone();
            for level in ns::levels(&op.namespace) {
                kv = kv.namespace(level)?;
            }
            let versions = kv.versions(&op.key)?;
            let auth = entry.node.authorship().copied();
            if own.is_none() && auth.is_some() {
                own = own_key()?;
            }
            let origin = match auth {
                Some(a) if Some(a.author) == own => "local",
                Some(_) => "peer",
                None => "unknown",
            };
            out.print(
                json!({
                    "seq": entry.seq,
                    "hash": entry.node.hash().to_string(),
                    "ns": ns::to_json(&op.namespace),
                    "key": json_bytes(&op.key),
                    "op": if op.op.is_tombstone() { "del" } else { "put" },
                    "value": op.op.value().map(json_bytes),
                    "origin": origin,
                    "author": auth.map(|a| a.author.to_string()),
                    "timestamp_ms": auth.map(|a| a.timestamp_ms),
                    "conflict": versions.is_conflict(),
                    "versions": versions.len(),
                }),
                || {
                    let (tag, key) = (ns::tag(&op.namespace), show_key(&op.key));
                    let what = match &op.op {
                        Op::Put(v) => format!("put {tag}{key} = {}", show_bytes(v)),
                        Op::Del => format!("del {tag}{key}"),
                    };
                    let state = if versions.is_conflict() {
                        format!("  CONFLICT: {} versions", versions.len())
                    } else {
                        String::new()
                    };
                    format!(
                        "#{:<6} {}  {what}  ({origin}, {}){state}",
                        entry.seq,
                        entry.node.hash().short(),
                        show_author(auth.as_ref())
                    )
                },
            )?;
            left -= 1;
            if left == 0 {
                break;
            }
        }
        if left > 0 {
            std::thread::sleep(POLL);
        }
    }
    Ok(ExitCode::SUCCESS)
}
