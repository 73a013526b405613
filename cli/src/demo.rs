//! `braid demo`: three replicas, concurrent writes, sync over loopback TCP in a line, a
//! conflict, its resolution, and convergence. Everything through the library's public API.

use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use braidlog::kv::{KvRead, MergeFn, Op};
use braidlog::sync::{self, Mode, SyncOptions};
use braidlog::{Kv, Log};
use tokio::net::TcpListener;

use crate::kv::{describe, plural};
use crate::net_report::summary;
use crate::output::say;

struct Replica {
    name: &'static str,
    log: Log,
    kv: Kv,
}

/// Serves `server` on a fresh loopback port, syncs `client` with it both ways, stops.
async fn sync_pair(client: &Replica, server: &Replica) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(sync::serve(
        listener,
        server.log.clone(),
        SyncOptions::new(Mode::Both),
        async {
            let _ = stopped.await;
        },
    ));
    let report = sync::connect(addr, &client.log, SyncOptions::new(Mode::Both)).await?;
    let _ = stop.send(());
    serving.await.context("server task")??;
    say!(
        "  {} <-> {} over {addr}: {}",
        client.name,
        server.name,
        summary(&report)
    );
    Ok(())
}

fn show_key(replicas: &[&Replica], key: &str) -> Result<()> {
    for r in replicas {
        match r.kv.get(key)? {
            Some(v) => {
                let text = describe(&r.kv, key, &v).replace('\n', "\n      ");
                say!("  {}: {key} = {text}", r.name);
            }
            None => say!("  {}: {key} is absent", r.name),
        }
    }
    Ok(())
}

pub fn run() -> Result<ExitCode> {
    let tmp = tempfile::tempdir().context("a temporary directory")?;
    say!("braid demo: three replicas in {}\n", tmp.path().display());
    let open = |name: &'static str| -> Result<Replica> {
        let log = Log::open(tmp.path().join(name))?;
        let kv = Kv::open(&log)?;
        Ok(Replica { name, log, kv })
    };
    let (a, b, c) = (open("a")?, open("b")?, open("c")?);

    say!("1. All three write at the same time, with no master. a and c both set `color`.");
    std::thread::scope(|s| -> Result<()> {
        let wa = s.spawn(|| -> braidlog::Result<()> {
            a.kv.put("color", "red")?;
            a.kv.put("greeting", "hello from a")?;
            Ok(())
        });
        let wb = s.spawn(|| -> braidlog::Result<()> {
            b.kv.put("size", "large")?;
            b.kv.put("greeting/b", "hi from b")?;
            Ok(())
        });
        let wc = s.spawn(|| -> braidlog::Result<()> {
            c.kv.put("color", "green")?;
            c.kv.put("shape", "circle")?;
            Ok(())
        });
        for w in [wa, wb, wc] {
            w.join().expect("writer thread")?;
        }
        Ok(())
    })?;
    for r in [&a, &b, &c] {
        say!(
            "  {}: {}, {}",
            r.name,
            plural(r.log.len()?, "node"),
            plural(r.log.heads()?.len() as u64, "head")
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    say!("\n2. Sync over loopback TCP in a line a - b - c (a and c never talk).");
    rt.block_on(async {
        sync_pair(&a, &b).await?;
        sync_pair(&c, &b).await?;
        sync_pair(&a, &b).await
    })?;

    say!("\n3. Every replica shows the concurrent writes to `color` as an explicit conflict:");
    show_key(&[&a, &b, &c], "color")?;
    ensure!(
        a.kv.get("color")?.is_some_and(|v| v.is_conflict()),
        "a should see the conflict"
    );

    say!("\n4. c resolves it with a new write that supersedes both versions:");
    let merged = std::cell::Cell::new(0);
    let resolution = c.kv.resolve(
        "color",
        MergeFn::new(|_: &[u8], versions: &[braidlog::kv::Version]| {
            merged.set(versions.iter().filter_map(|v| v.value()).count());
            Op::Put(b"teal".to_vec())
        }),
    )?;
    say!("  c merges {} versions into \"teal\"", merged.get());
    ensure!(resolution.is_some(), "c saw the conflict");

    say!("\n5. Sync again along the line:");
    rt.block_on(async {
        sync_pair(&c, &b).await?;
        sync_pair(&a, &b).await
    })?;

    say!("\n6. All three agree:");
    show_key(&[&a, &b, &c], "color")?;
    for r in [&a, &b, &c] {
        let keys: Vec<String> =
            r.kv.iter()
                .map(|e| e.map(|e| String::from_utf8_lossy(&e.key).into_owned()))
                .collect::<braidlog::kv::Result<_>>()?;
        let report = r.log.verify()?;
        let heads = r.log.heads()?;
        let mut digest = blake3::Hasher::new();
        for h in &heads {
            digest.update(h.as_bytes());
        }
        say!(
            "  {}: {}, {} (digest {}), keys {:?}, verify {}",
            r.name,
            plural(r.log.len()?, "node"),
            plural(heads.len() as u64, "head"),
            &digest.finalize().to_hex()[..12],
            keys,
            if report.is_ok() { "ok" } else { "FAILED" }
        );
        ensure!(
            report.is_ok(),
            "verify failed on {}: {:?}",
            r.name,
            report.violations
        );
    }
    ensure!(
        a.log.heads()? == b.log.heads()? && b.log.heads()? == c.log.heads()?,
        "heads differ"
    );
    let history: Vec<String> =
        c.kv.history("color")
            .map(|h| {
                h.map(|h| {
                    format!(
                        "{}{}",
                        h.hash.short(),
                        if h.current { " (current)" } else { "" }
                    )
                })
            })
            .collect::<braidlog::kv::Result<_>>()?;
    say!(
        "\n`color` keeps its whole history (newest first): {}",
        history.join(", ")
    );
    say!("\nConverged: same heads, same keys, every store verified.");
    say!("(A put or a resolution links its key's versions, which it supersedes, and the replica's");
    say!(" heads, which it does not. The heads left are each replica's latest concurrent writes,");
    say!(" the same everywhere. `braid graph` draws the DAG.)");
    Ok(ExitCode::SUCCESS)
}
