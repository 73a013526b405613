//! Network commands: serve and sync, with progress on a terminal.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use braidlog::sync::{
    self, Mode, Phase, Progress, ServeEvent, ServeOptions, SyncOptions, SyncReport,
};
use clap::{ArgGroup, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;

use crate::dag::open_or_create;
use crate::limits::{ServerLimits, Timeouts};
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

/// A one-line summary of a sync, for people.
pub fn summary(r: &SyncReport) -> String {
    format!(
        "sent {} node{}, received {} new ({} duplicates); {} bytes out, {} bytes in; {} round trip{}; {:.1} ms",
        r.nodes_sent,
        if r.nodes_sent == 1 { "" } else { "s" },
        r.nodes_received,
        r.duplicates,
        r.bytes_sent,
        r.bytes_received,
        r.round_trips,
        if r.round_trips == 1 { "" } else { "s" },
        r.duration.as_secs_f64() * 1000.0
    )
}

pub fn report_json(r: &SyncReport) -> serde_json::Value {
    json!({
        "peer": r.peer.map(|p| p.to_string()),
        "nodes_sent": r.nodes_sent,
        "nodes_received": r.nodes_received,
        "duplicates": r.duplicates,
        "bytes_sent": r.bytes_sent,
        "bytes_received": r.bytes_received,
        "round_trips": r.round_trips,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
    })
}

/// Draws progress events on stderr (indicatif hides the bar when stderr is not a terminal).
/// In a live session, prints one line on stdout when catch-up is over, so scripts know.
pub(crate) fn progress_bar(
    mut events: mpsc::Receiver<Progress>,
    json: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut announced = false;
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        while let Some(p) = events.recv().await {
            if p.phase == Phase::Live && !announced {
                announced = true;
                let line = if json {
                    json!({"event": "live", "nodes_received": p.nodes_received, "nodes_sent": p.nodes_sent}).to_string()
                } else {
                    format!(
                        "caught up ({} received, {} sent); live until Ctrl-C",
                        p.nodes_received, p.nodes_sent
                    )
                };
                bar.suspend(|| {
                    use std::io::Write;
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                });
            }
            let total = p
                .total_hint
                .map(|t| format!(" of at most {t}"))
                .unwrap_or_default();
            bar.set_message(format!(
                "{:?}: received {}{total}, sent {}, {} bytes",
                p.phase, p.nodes_received, p.nodes_sent, p.bytes
            ));
        }
        bar.finish_and_clear();
    })
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

/// Logs failed sessions and accept errors on stderr, one line each (JSON with `--json`).
fn log_event(json: bool) -> impl Fn(ServeEvent<'_>) + Send + Sync {
    move |e| {
        let (value, text) = match e {
            ServeEvent::Failed { peer, error, .. } => (
                json!({"event": "session_failed", "peer": peer.to_string(), "error": error.to_string()}),
                format!("braid serve: session with {peer} failed: {error}"),
            ),
            ServeEvent::AcceptFailed { error, retry_in } => (
                json!({"event": "accept_failed", "error": error.to_string(), "retry_ms": retry_in.as_millis() as u64}),
                format!("braid serve: accept failed: {error}; retrying in {retry_in:?}"),
            ),
            _ => return,
        };
        if json {
            eprintln!("{value}");
        } else {
            eprintln!("{text}");
        }
    }
}

impl NetCommand {
    pub fn run(self, dir: &Path, out: &Out) -> Result<ExitCode> {
        let log = open_or_create(dir)?;
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
                out.print(json!({"listening": addr.to_string(), "peer_id": log.peer_id().to_string()}), || {
                    addr.to_string()
                });
                use std::io::Write;
                std::io::stdout().flush()?;
                let mut session = SyncOptions::new(Mode::Both);
                session.live = live;
                timeouts.apply(&mut session);
                let options = ServeOptions {
                    session,
                    max_connections: limits.max_connections,
                    memory_budget: limits.memory_budget,
                    on_event: Some(std::sync::Arc::new(log_event(out.is_json()))),
                };
                let report = sync::serve(listener, log, options, stop).await?;
                out.print(
                    json!({"sessions": report.sessions, "failed": report.failed,
                           "nodes_received": report.nodes_received, "nodes_sent": report.nodes_sent}),
                    || {
                        format!(
                            "stopped: {} sessions ({} failed), received {} nodes, sent {}",
                            report.sessions, report.failed, report.nodes_received, report.nodes_sent
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
                let bar = progress_bar(rx, out.is_json());
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
                out.print(report_json(&report), || summary(&report));
                Ok(ExitCode::SUCCESS)
            }),
        }
    }
}
