//! `braid serve --iroh` and `braid sync TICKET`: replication over iroh (encrypted, peers
//! dialled and admitted by key), and live fan-out to many replicas by gossip.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use braidlog::sync::gossip::{Fanout, GossipOptions, Topic};
use braidlog::sync::iroh::{
    Access, IrohConfig, IrohError, IrohEvent, IrohNode, IrohServeOptions, RelayUrl, Ticket,
    TICKET_PREFIX,
};
use braidlog::sync::{Mode, SyncOptions};
use braidlog::{Log, PublicKey};
use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;

use crate::limits::{ServerLimits, Timeouts};
use crate::net::{ctrl_c, progress_bar, report_json, summary, NetCommand};
use crate::output::Out;

/// The iroh flags of `braid serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeIroh {
    /// Serve over iroh instead of plain TCP: encrypted, and only keys on the access list may
    /// connect. Prints a ticket first (give it to `braid sync TICKET`); --listen is ignored.
    #[arg(long)]
    pub iroh: bool,
    #[command(flatten)]
    pub args: IrohArgs,
}

/// Flags shared by `braid serve --iroh` and `braid sync TICKET`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "iroh")]
pub struct IrohArgs {
    /// A key (64 hex characters, from `braid id`) that may connect besides the authorship
    /// allow-list (`braid trust`). Repeatable.
    #[arg(long = "allow", value_name = "KEY")]
    pub allow: Vec<PublicKey>,
    /// Admit any key (the connection is still encrypted).
    #[arg(long, conflicts_with = "allow")]
    pub open: bool,
    /// The UDP address of the iroh endpoint (default: every interface, any port).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// A relay server for peers behind NATs (a URL such as `https://relay.example.org./`). Off by
    /// default: direct addresses only (loopback, LAN).
    #[arg(long, value_name = "URL")]
    pub relay: Option<RelayUrl>,
    /// Live fan-out: join the log's gossip topic, announce new heads, fetch announced ones;
    /// runs until Ctrl-C.
    #[arg(long)]
    pub gossip: bool,
    /// The gossip topic's name (default: the endpoint id of the replica served, or of the
    /// ticket's replica).
    #[arg(long, value_name = "NAME", requires = "gossip")]
    pub topic: Option<String>,
}

impl IrohArgs {
    fn config(&self) -> IrohConfig {
        IrohConfig {
            bind: self.bind,
            relay: self.relay.clone(),
            gossip: self.gossip,
            ..Default::default()
        }
    }

    fn access(&self) -> Access {
        if self.open {
            Access::Anyone
        } else {
            Access::Authors {
                readers: self.allow.iter().copied().collect::<BTreeSet<_>>(),
            }
        }
    }

    fn topic(&self, default: PublicKey) -> Topic {
        match &self.topic {
            Some(name) => Topic::named(name),
            None => Topic::of(default),
        }
    }
}

/// Runs `cmd` if it is an iroh one (`serve --iroh`, or `sync` of a ticket).
pub fn run(
    cmd: &NetCommand,
    rt: &tokio::runtime::Runtime,
    log: &Log,
    out: &Out,
) -> Result<Option<ExitCode>> {
    match cmd {
        NetCommand::Serve {
            live,
            limits,
            timeouts,
            iroh,
            ..
        } if iroh.iroh => serve(
            rt,
            log.clone(),
            iroh.args.clone(),
            *live,
            limits,
            timeouts,
            out,
        )
        .map(Some),
        NetCommand::Sync {
            addr,
            push,
            pull,
            live,
            timeouts,
            iroh,
        } => {
            let Some(ticket) = ticket(addr)? else {
                return Ok(None);
            };
            let mode = match (push, pull) {
                (true, _) => Mode::Push,
                (_, true) => Mode::Pull,
                _ => Mode::Both,
            };
            let mut options = SyncOptions::new(mode);
            options.live = *live;
            timeouts.apply(&mut options);
            sync(rt, log.clone(), ticket, options, iroh.clone(), out).map(Some)
        }
        _ => Ok(None),
    }
}

/// The ticket in `addr`, if it is one (`braid sync` takes a TCP address or a ticket).
pub fn ticket(addr: &str) -> Result<Option<Ticket>> {
    if !addr.trim().starts_with(TICKET_PREFIX) {
        return Ok(None);
    }
    let t = addr.parse::<Ticket>().context("reading the ticket")?;
    Ok(Some(t))
}

/// One line on stderr; a closed stderr must not end a server (so no `eprintln!`).
fn stderr_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Says plainly what a plain TCP server beyond loopback exposes.
pub fn warn_plain_tcp(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        stderr_line(&format!(
            "braid serve: warning: plain TCP on {addr} is unauthenticated and unencrypted: \
             anyone who reaches it reads the whole history and may push nodes. \
             Use `braid serve --iroh` beyond loopback or a trusted network."
        ));
    }
}

/// Logs refusals and failed sessions on stderr, one line each (JSON with `--json`).
fn log_event(json: bool) -> impl Fn(IrohEvent<'_>) + Send + Sync {
    move |e| {
        let (value, text) = match e {
            IrohEvent::Refused { peer } => (
                json!({"event": "refused", "peer": peer.to_string()}),
                format!("braid serve: refused {peer}: not on the access list"),
            ),
            IrohEvent::Failed { peer, error, .. } => (
                json!({"event": "session_failed", "peer": peer.to_string(), "error": error.to_string()}),
                format!("braid serve: session with {peer} failed: {error}"),
            ),
            _ => return,
        };
        if json {
            stderr_line(&value.to_string());
        } else {
            stderr_line(&text);
        }
    }
}

fn serve_options(
    args: &IrohArgs,
    session: SyncOptions,
    limits: Option<&ServerLimits>,
    out: &Out,
) -> IrohServeOptions {
    let mut o = IrohServeOptions {
        session,
        access: args.access(),
        on_event: Some(Arc::new(log_event(out.is_json()))),
        ..Default::default()
    };
    if let Some(l) = limits {
        o.max_connections = l.max_connections;
        o.memory_budget = l.memory_budget;
    }
    o
}

/// Warns when the access list admits nobody: a server nobody may reach is a likely mistake.
fn warn_if_closed(log: &Log, access: &Access) -> Result<()> {
    if let Access::Authors { readers } = access {
        if readers.is_empty() && log.policy()?.trusted.is_empty() {
            crate::exit::warn(
                "no key may connect yet: allow readers with --allow KEY, authors with \
                 `braid trust add KEY`, or any key with --open",
            );
        }
    }
    Ok(())
}

async fn join(node: &IrohNode, args: &IrohArgs, topic: Topic, boot: &[Ticket]) -> Result<Fanout> {
    let options = GossipOptions {
        access: args.access(),
        ..Default::default()
    };
    Ok(node.join_gossip(topic, boot, options).await?)
}

fn print_flush(out: &Out, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<()> {
    out.print(value, text)?;
    use std::io::Write;
    std::io::stdout().flush()?;
    Ok(())
}

/// `braid serve --iroh`.
pub fn serve(
    rt: &tokio::runtime::Runtime,
    log: Log,
    args: IrohArgs,
    live: bool,
    limits: &ServerLimits,
    timeouts: &Timeouts,
    out: &Out,
) -> Result<ExitCode> {
    rt.block_on(async {
        // Handlers first: a Ctrl-C right after the ticket is printed stops in order.
        let stop = ctrl_c();
        let node = IrohNode::bind(&log, args.config()).await?;
        let ticket = node.ticket();
        print_flush(
            out,
            json!({"ticket": ticket.to_string(), "endpoint_id": node.id().to_string()}),
            || ticket.to_string(),
        )?;
        warn_if_closed(&log, &args.access())?;
        let fanout = match args.gossip {
            true => Some(join(&node, &args, args.topic(node.id()), &[]).await?),
            false => None,
        };
        let mut session = SyncOptions::new(Mode::Both);
        session.live = live;
        timeouts.apply(&mut session);
        let options = serve_options(&args, session, Some(limits), out);
        let report = node.serve(options, stop).await?;
        if let Some(f) = fanout {
            f.shutdown().await;
        }
        node.close().await;
        out.print_committed(
            "stopped",
            json!({"sessions": report.sessions, "failed": report.failed, "refused": report.refused,
                   "nodes_received": report.nodes_received, "nodes_sent": report.nodes_sent}),
            || {
                format!(
                    "stopped: {} sessions ({} failed, {} refused), received {} nodes, sent {}",
                    report.sessions,
                    report.failed,
                    report.refused,
                    report.nodes_received,
                    report.nodes_sent
                )
            },
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `braid sync TICKET`: one session, or with `--gossip` a first session and then live
/// fan-out until Ctrl-C.
pub fn sync(
    rt: &tokio::runtime::Runtime,
    log: Log,
    ticket: Ticket,
    mut options: SyncOptions,
    args: IrohArgs,
    out: &Out,
) -> Result<ExitCode> {
    rt.block_on(async {
        let node = IrohNode::bind(&log, args.config()).await?;
        let me = node.id();
        let (tx, rx) = mpsc::channel(64);
        let bar = progress_bar(rx, log.clone(), out.is_json());
        options.progress = Some(tx);
        if options.live || args.gossip {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                ctrl_c().await;
                let _ = stop_tx.send(true);
            });
            options.shutdown = Some(stop_rx);
        }
        // What sessions served later run with (without the progress sender, whose drop ends
        // the bar).
        let mut session = options.clone();
        session.progress = None;
        if args.gossip {
            // The first session catches up; gossip carries the rest.
            options.live = false;
        }
        let result = node.connect(&ticket, options).await;
        let _ = bar.await;
        let report = result.map_err(|e| explain(e, me))?;
        print_flush(out, report_json(&report), || summary(&report))?;
        if args.gossip {
            let fanout = join(&node, &args, args.topic(ticket.id()), &[ticket]).await?;
            let mut serve = session;
            serve.live = false;
            let options = serve_options(&args, serve, None, out);
            let report = node.serve(options, ctrl_c()).await?;
            let s = fanout.stats();
            fanout.shutdown().await;
            out.print_committed(
                "the sync is done",
                json!({"fetches": s.fetches, "nodes_fetched": s.nodes_fetched, "announced": s.announced,
                       "served": report.sessions, "refused": report.refused}),
                || {
                    format!(
                        "stopped: {} fetches ({} nodes), {} announcements, served {} sessions ({} refused)",
                        s.fetches, s.nodes_fetched, s.announced, report.sessions, report.refused
                    )
                },
            );
        }
        node.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// A refusal says which key to allow, and how.
fn explain(e: IrohError, me: PublicKey) -> anyhow::Error {
    match e {
        IrohError::Refused { by } => anyhow::anyhow!(
            "{by} refused this replica's key {me}: its owner can allow it with \
             `braid trust add {me}` (as an author) or `braid serve --iroh --allow {me}` (as a reader)"
        ),
        e => anyhow::Error::new(e).context("syncing over iroh"),
    }
}
