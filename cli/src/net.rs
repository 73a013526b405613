//! Network commands: serve and sync, with progress on a terminal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use braidlog::sync::{self, Mode, ServeEvent, ServeOptions, SyncOptions};
use clap::{ArgGroup, Subcommand};
use serde_json::json;
use tokio::sync::mpsc;

use crate::dag::open_or_create;
use crate::kv::plural;
use crate::limits::{ServerLimits, Timeouts};
use crate::net_report::ServeLog;
pub(crate) use crate::net_report::{progress_bar, report_json, summary};
use crate::output::Out;

#[derive(Subcommand)]
pub enum NetCommand {
    /// Serve this replica to peers until Ctrl-C: over plain TCP (unauthenticated and
    /// unencrypted: for loopback and trusted networks), or over iroh with --iroh (encrypted,
    /// admitted by key). Prints the bound address, or the iroh ticket, first.
    #[command(
        after_help = "Examples:\n  braid serve --listen 127.0.0.1:7411\n  braid serve --listen 127.0.0.1:0 --live\n  braid serve --max-connections 64 --idle-timeout 30s --memory-budget 64MiB\n\nA failed session is logged on stderr with its peer's address and the reason."
    )]
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7411")]
        listen: String,
        /// Keep sessions open and stream new nodes both ways.
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        limits: ServerLimits,
        #[command(flatten)]
        timeouts: Timeouts,
        #[command(flatten)]
        iroh: crate::iroh::ServeIroh,
    },
    /// Sync with the peer at ADDR (both ways unless --push or --pull).
    #[command(group(ArgGroup::new("direction").args(["push", "pull"])))]
    #[command(
        after_help = "Examples:\n  braid sync 127.0.0.1:7411\n  braid sync --pull 10.0.0.2:7411\n  braid sync --live 127.0.0.1:7411"
    )]
    Sync {
        /// The peer's TCP address, or the ticket `braid serve --iroh` printed.
        addr: String,
        /// Only send what the peer lacks.
        #[arg(long)]
        push: bool,
        /// Only receive what this replica lacks.
        #[arg(long)]
        pull: bool,
        /// Stay connected and stream new nodes both ways until Ctrl-C.
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        timeouts: Timeouts,
        #[command(flatten)]
        iroh: crate::iroh::IrohArgs,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when first polled, so a signal that arrives right after the address is printed is not lost.
pub(crate) fn ctrl_c() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                // Without handlers, run until killed.
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl NetCommand {
    pub fn run(self, dir: &Path, out: &Out) -> Result<ExitCode> {
        let log = open_or_create(dir)?;
        // The key-value view, kept up to date as nodes arrive, so that `get` and `watch`
        // beside a running server see them without catching up.
        braidlog::Kv::open(&log)?;
        let rt = runtime()?;
        if let Some(code) = crate::iroh::run(&self, &rt, &log, out)? {
            return Ok(code);
        }
        match self {
            NetCommand::Serve {
                listen,
                live,
                limits,
                timeouts,
                ..
            } => rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let addr = listener.local_addr()?;
                crate::iroh::warn_plain_tcp(addr);
                let stop = ctrl_c();
                // Output is best effort for a server: it serves whether or not anyone reads it.
                out.print_committed(
                    &format!("listening on {addr}"),
                    json!({"listening": addr.to_string(), "peer_id": log.peer_id().to_string()}),
                    || addr.to_string(),
                );
                let (events, printer) = ServeLog::start(out.is_json());
                // Live sessions store nodes without ending: a running count as they do.
                let counter = {
                    let (log, events) = (log.clone(), events.clone());
                    tokio::spawn(async move {
                        let mut commits = log.subscribe();
                        while commits.changed().await.is_some() {
                            let nodes = log.len().unwrap_or(0);
                            events.send(
                                false,
                                json!({"event": "nodes", "nodes": nodes}),
                                format!("{} in the store", plural(nodes, "node")),
                            );
                        }
                    })
                };
                let mut session = SyncOptions::new(Mode::Both);
                session.live = live;
                timeouts.apply(&mut session);
                let options = ServeOptions {
                    session,
                    max_connections: limits.max_connections,
                    memory_budget: limits.memory_budget,
                    on_event: Some({
                        let (log, events) = (log.clone(), events.clone());
                        std::sync::Arc::new(move |e: ServeEvent<'_>| events.event(&log, e))
                    }),
                };
                let result = sync::serve(listener, log, options, stop).await;
                counter.abort();
                let _ = counter.await;
                drop(events);
                let _ = printer.join();
                let report = result?;
                out.print_committed(
                    "stopped",
                    json!({"sessions": report.sessions, "failed": report.failed,
                           "nodes_received": report.nodes_received, "nodes_sent": report.nodes_sent}),
                    || {
                        format!(
                            "stopped: {} ({} failed), received {}, sent {}",
                            plural(report.sessions, "session"),
                            report.failed,
                            plural(report.nodes_received, "node"),
                            report.nodes_sent
                        )
                    },
                );
                Ok(ExitCode::SUCCESS)
            }),
            NetCommand::Sync {
                addr,
                push,
                pull,
                live,
                timeouts,
                ..
            } => rt.block_on(async {
                let mode = match (push, pull) {
                    (true, _) => Mode::Push,
                    (_, true) => Mode::Pull,
                    _ => Mode::Both,
                };
                let (tx, rx) = mpsc::channel(64);
                let bar = progress_bar(rx, log.clone(), out.is_json());
                let mut options = SyncOptions::new(mode);
                options.live = live;
                options.progress = Some(tx);
                timeouts.apply(&mut options);
                if live {
                    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                    let stop = ctrl_c();
                    tokio::spawn(async move {
                        stop.await;
                        let _ = stop_tx.send(true);
                    });
                    options.shutdown = Some(stop_rx);
                }
                let result = sync::connect(addr.as_str(), &log, options)
                    .await
                    .with_context(|| format!("syncing with {addr}"));
                let _ = bar.await;
                let report = result?;
                // What it received is committed: a failure to print that must not fail it.
                out.print_committed("the sync is done", report_json(&report), || summary(&report));
                Ok(ExitCode::SUCCESS)
            }),
        }
    }
}
