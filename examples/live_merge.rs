//! A live watcher that merges on arrival: two replicas edit a shared list while a live sync
//! session connects them; the first replica watches the list and, when a change from the
//! peer leaves it in conflict, merges it at once with a three-way merge of lines.
//!
//! Application merges that need a person's judgement, or run outside the write path, are
//! written like this: [`braidlog::kv::Kv::watch_prefix`] says where each change came from and
//! whether the key is in conflict; [`braidlog::kv::Kv::merge_base`] gives the common
//! ancestor to merge against; [`braidlog::kv::Kv::resolve`] with a fallible [`braidlog::kv::MergeFn`] reads and resolves in one
//! transaction, so a version that arrives meanwhile is never superseded unseen.
//!
//! `cargo run --example live_merge`

use braidlog::kv::MergeFn;
use braidlog::kv::{Kv, Op, Version};
use braidlog::kv::{KvRead, Write};
use braidlog::sync::{sync, Mode, SyncOptions};
use braidlog::Log;
use braidlog::Origin;

/// A three-way merge of line sets: keeps the lines of the first version, drops those another
/// version deleted since the base, and appends the lines others added, in version order.
fn merge_lines(base: &str, versions: &[&str]) -> String {
    let base: Vec<&str> = base.lines().collect();
    let kept = |line: &&str| {
        !base.contains(line) || versions.iter().all(|v| v.lines().any(|l| l == *line))
    };
    let mut out: Vec<&str> = Vec::new();
    for v in versions {
        for line in v.lines().filter(kept) {
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out.iter().map(|l| format!("{l}\n")).collect()
}

fn text(v: &Version) -> &str {
    std::str::from_utf8(v.value().unwrap_or_default()).unwrap_or("")
}

/// Runs the example (also called by `tests/kv_examples.rs`).
#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (a, b) = (Log::open(da.path())?, Log::open(db.path())?);
    let (ka, kb) = (Kv::open(&a)?, Kv::open(&b)?);
    let base = ka.put("doc/shopping", "milk\nbread\ntea\n")?;
    let mut watch_a = ka.watch_prefix("doc/");
    let mut watch_b = kb.watch("doc/shopping");

    // A live session: each side forwards new nodes as they are written.
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let (la, lb) = (a.clone(), b.clone());
    let live = SyncOptions::new(Mode::Both).live();
    let live_b = live.clone();
    let session_a = tokio::spawn(async move { sync(&la, sa, live).await });
    let session_b = tokio::spawn(async move { sync(&lb, sb, live_b).await });

    // b receives the base, then edits the list: removes tea, adds butter.
    loop {
        if watch_b.next().await?.hash == base {
            break;
        }
    }
    kb.put("doc/shopping", "milk\nbread\nbutter\n")?;
    // a edits concurrently, before b's edit reaches it: adds eggs, linking only the base.
    ka.write(
        "doc/shopping",
        Write::from(Op::Put(b"milk\nbread\ntea\neggs\n".to_vec())).superseding([base]),
    )?;

    // a's watcher: merge each conflict as soon as it appears. Usually b's edit arrives after
    // a's (origin: the peer); if it won the race, a's own write shows the conflict.
    let merged = loop {
        let event = watch_a.next().await?;
        if !event.conflict {
            continue;
        }
        let from = match event.origin {
            Origin::Peer(peer) => format!("peer {peer}"),
            _ => "this replica".to_string(),
        };
        println!(
            "conflict on {:?} after a change from {from}",
            String::from_utf8_lossy(&event.key)
        );
        let key = event.key.clone();
        let resolved = ka.resolve(
            &key,
            MergeFn::fallible(|key, versions| {
                let hashes: Vec<_> = versions.iter().map(|v| v.hash).collect();
                let bases = ka.merge_base(key, &hashes)?;
                // One common ancestor: merge against it. None (or several, after criss-cross
                // merges): merge against nothing, which keeps every line.
                let base_text = match bases.as_slice() {
                    [one] => ka.read(|snap| snap.ancestry(key)?.op(one))?,
                    _ => None,
                };
                let base_text = base_text.as_ref().and_then(Op::value).unwrap_or_default();
                let base_text = String::from_utf8_lossy(base_text);
                let texts: Vec<&str> = versions.iter().map(text).collect();
                Ok::<_, braidlog::Error>(Op::Put(merge_lines(&base_text, &texts).into_bytes()))
            }),
        )?;
        if let Some(hash) = resolved {
            break hash;
        }
    };
    let list = ka.get("doc/shopping")?.expect("present");
    let list = String::from_utf8_lossy(list.value().expect("merged")).into_owned();
    println!("merged list:\n{list}");
    // Versions come in hash order, so which edit's lines come first varies.
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["bread", "butter", "eggs", "milk"],
        "tea deleted, both additions kept"
    );

    // The merge reaches b through the same live session.
    loop {
        if watch_b.next().await?.hash == merged {
            break;
        }
    }
    assert_eq!(
        kb.get("doc/shopping")?.expect("present").value(),
        Some(list.as_bytes())
    );
    session_a.abort();
    session_b.abort();
    Ok(())
}
