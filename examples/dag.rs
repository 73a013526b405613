//! Builds a small DAG with a fork and a merge, then prints its heads and changes feed.
//!
//! `cargo run --example dag`

use braidlog::Log;

fn main() -> Result<(), braidlog::Error> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Log::open(dir.path())?;

    let root = log.append(b"root".to_vec())?;
    let left = log.add([root.hash()], b"left branch".to_vec())?;
    let right = log.add([root.hash()], b"right branch".to_vec())?;
    println!(
        "after a fork, heads: {:?}",
        log.heads()?.iter().map(|h| h.short()).collect::<Vec<_>>()
    );
    assert_eq!(log.heads()?, {
        let mut h = vec![left.hash(), right.hash()];
        h.sort();
        h
    });

    log.append(b"merge".to_vec())?;
    println!(
        "after a merge, heads: {:?}",
        log.heads()?.iter().map(|h| h.short()).collect::<Vec<_>>()
    );

    println!("changes feed (arrival order, links always first):");
    for entry in log.changes(0) {
        let entry = entry?;
        let links: Vec<String> = entry.node.links().iter().map(|h| h.short()).collect();
        println!(
            "  #{:<2} {}  {:<14} links {:?}",
            entry.seq,
            entry.node.hash().short(),
            String::from_utf8_lossy(entry.node.payload()),
            links
        );
    }
    let report = log.verify()?;
    println!(
        "verify: {} nodes, {} head(s), ok = {}",
        report.nodes,
        report.heads,
        report.is_ok()
    );
    Ok(())
}
