//! The iroh server: [`IrohNode::serve`] accepts connections, checks each peer's key against
//! the [`Access`] list before anything else, and runs a sync session (or hands a gossip
//! connection to iroh-gossip).
//!
//! It runs the one accept loop of every transport (`sync::net::server`), so it protects itself
//! as the TCP server does: at most [`IrohServeOptions::max_connections`] connections at once
//! (beyond that, new ones wait in QUIC's incoming queue until a slot frees), one memory
//! budget for all sessions, a handshake deadline per connection, one session (one
//! bidirectional stream) per connection, and an orderly stop on shutdown.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use iroh::endpoint::{Connection, VarInt};
use tokio::sync::watch;

use super::node::{finish, IrohNode, CLOSE_REFUSED, CLOSE_UNKNOWN_ALPN};
use super::{IrohError, ALPN};
use crate::identity::PublicKey;
use crate::log::Log;
use crate::sync::error::SyncError;
use crate::sync::limits::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MEMORY_BUDGET};
use crate::sync::net::budget::MemoryBudget;
use crate::sync::net::driver::{sync_reporting, SyncFailure};
use crate::sync::net::options::{SyncOptions, SyncReport};
use crate::sync::net::server::{run, Accepted, Listener};

/// Who may connect. Checked on every connection, with the peer's key from its TLS handshake,
/// before the server reads or sends a byte of the protocol: a refused peer learns nothing of
/// the history (not even its heads).
///
/// Access is a read list, separate from the authorship allow-list: a reader (a backup, a
/// mirror) may never write, and a key allowed to author nodes says nothing about who may read
/// them. [`Access::Authors`] covers the common case where the two coincide. What a connected
/// peer pushes is still held to the log's signature policy, node by node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Any key. The transport still encrypts and authenticates, but anyone who can reach
    /// the endpoint reads the whole history.
    Anyone,
    /// Only these keys.
    Keys(BTreeSet<PublicKey>),
    /// The log's authorship allow-list (read afresh for each connection, so `trust` and
    /// `distrust` apply to the next connection), and these extra readers.
    Authors {
        /// Keys allowed to read besides the allow-list.
        readers: BTreeSet<PublicKey>,
    },
}

impl Default for Access {
    /// The authorship allow-list: nobody else until the caller says so.
    fn default() -> Access {
        Access::Authors {
            readers: BTreeSet::new(),
        }
    }
}

impl Access {
    /// Whether `peer` may connect to a server of `log`.
    pub fn allows(&self, peer: &PublicKey, log: &Log) -> Result<bool, crate::log::LogError> {
        Ok(match self {
            Access::Anyone => true,
            Access::Keys(keys) => keys.contains(peer),
            Access::Authors { readers } => {
                readers.contains(peer) || log.policy()?.trusted.contains(peer)
            }
        })
    }
}

/// Something an iroh server did, for logs and tests.
#[derive(Debug)]
#[non_exhaustive]
pub enum IrohEvent<'a> {
    /// A peer's key is not on the access list: its connection was closed before anything
    /// was exchanged.
    Refused {
        /// The peer's key.
        peer: PublicKey,
    },
    /// A handshake failed or timed out.
    HandshakeFailed {
        /// Why.
        reason: String,
    },
    /// An allowed peer connected for a sync session.
    Accepted {
        /// The peer's key.
        peer: PublicKey,
    },
    /// An allowed peer connected for gossip.
    Gossip {
        /// The peer's key.
        peer: PublicKey,
    },
    /// A session ended well.
    Finished {
        /// The peer's key.
        peer: PublicKey,
        /// What it did.
        report: &'a SyncReport,
    },
    /// A session failed; what it had checked is kept.
    Failed {
        /// The peer's key.
        peer: PublicKey,
        /// Why.
        error: &'a SyncError,
        /// What it did before.
        report: &'a SyncReport,
    },
}

/// A callback that receives every [`IrohEvent`]. It runs on the server's tasks: keep it short.
pub type OnIrohEvent = Arc<dyn Fn(IrohEvent<'_>) + Send + Sync>;

/// How an iroh server runs.
#[derive(Clone)]
pub struct IrohServeOptions {
    /// The options of every session (their `shutdown` is the server's own).
    pub session: SyncOptions,
    /// Who may connect; default [`Access::default`] (the authorship allow-list).
    pub access: Access,
    /// Connections at once (sync and gossip together); default
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Bytes of peer data all sessions may buffer together; default
    /// [`DEFAULT_MEMORY_BUDGET`].
    pub memory_budget: usize,
    /// Receives every [`IrohEvent`].
    pub on_event: Option<OnIrohEvent>,
}

impl fmt::Debug for IrohServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrohServeOptions")
            .field("session", &self.session)
            .field("access", &self.access)
            .field("max_connections", &self.max_connections)
            .field("memory_budget", &self.memory_budget)
            .finish()
    }
}

impl Default for IrohServeOptions {
    fn default() -> IrohServeOptions {
        IrohServeOptions {
            session: SyncOptions::default(),
            access: Access::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            on_event: None,
        }
    }
}

/// What an iroh server did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IrohServeReport {
    /// Sync sessions run.
    pub sessions: u64,
    /// Sessions that ended in an error.
    pub failed: u64,
    /// Connections refused by the access list.
    pub refused: u64,
    /// Gossip connections handed to iroh-gossip.
    pub gossip: u64,
    /// New nodes stored from all peers.
    pub nodes_received: u64,
    /// Nodes sent to all peers.
    pub nodes_sent: u64,
}

enum Outcome {
    Refused,
    Gossip,
    Nothing,
    Session(Box<Result<SyncReport, SyncFailure>>),
}

/// The endpoint as a [`Listener`]: connections not yet admitted.
struct Incoming<'a>(&'a iroh::Endpoint);

impl Listener for Incoming<'_> {
    type Incoming = iroh::endpoint::Incoming;
    async fn accept(&mut self) -> Accepted<Self::Incoming> {
        match self.0.accept().await {
            Some(i) => Accepted::Conn(i),
            None => Accepted::Closed,
        }
    }
}

impl IrohNode {
    /// Serves peers until `shutdown` completes (or the endpoint is closed); then stops
    /// accepting, lets live sessions close in order, and reports. It runs the one accept loop
    /// of every transport (see [`crate::sync::serve`]): at the connection limit new
    /// connections wait in QUIC's incoming queue until a slot frees (each bounded by its
    /// client's handshake timeout); the access check is this transport's admission hook.
    pub async fn serve(
        &self,
        options: IrohServeOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<IrohServeReport, IrohError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut session = options.session.clone();
        session.shutdown = Some(stop_rx);
        session
            .memory
            .get_or_insert_with(|| MemoryBudget::new(options.memory_budget));
        let ctx = Arc::new(Ctx {
            node: self.clone(),
            session,
            access: options.access.clone(),
            on_event: options.on_event.clone(),
        });
        let report = std::sync::Mutex::new(IrohServeReport::default());
        run(
            &mut Incoming(&self.endpoint),
            options.max_connections,
            shutdown,
            stop_tx,
            |incoming| {
                let ctx = ctx.clone();
                ((), async move { ctx.handle(incoming).await })
            },
            |done, _| tally(&mut report.lock().unwrap_or_else(|e| e.into_inner()), done),
            // The endpoint reports no accept errors: handshakes fail in their own tasks.
            |_, _| {},
        )
        .await;
        Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

fn tally(report: &mut IrohServeReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Refused) => report.refused += 1,
        Ok(Outcome::Gossip) => report.gossip += 1,
        Ok(Outcome::Nothing) => {}
        Ok(Outcome::Session(r)) => {
            report.sessions += 1;
            let r = match *r {
                Ok(r) => r,
                Err(f) => {
                    report.failed += 1;
                    f.report
                }
            };
            report.nodes_received += r.nodes_received;
            report.nodes_sent += r.nodes_sent;
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => report.failed += 1,
    }
}

struct Ctx {
    node: IrohNode,
    session: SyncOptions,
    access: Access,
    on_event: Option<OnIrohEvent>,
}

impl Ctx {
    fn event(&self, e: IrohEvent<'_>) {
        if let Some(f) = &self.on_event {
            f(e);
        }
    }

    async fn handle(&self, incoming: iroh::endpoint::Incoming) -> Outcome {
        let handshake = async {
            let accepting = incoming.accept().map_err(|e| e.to_string())?;
            accepting.await.map_err(|e| e.to_string())
        };
        let conn = match self.session.handshake_timeout {
            Some(after) => match tokio::time::timeout(after, handshake).await {
                Ok(r) => r,
                Err(_) => Err(format!("no handshake within {after:?}")),
            },
            None => handshake.await,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(reason) => {
                self.event(IrohEvent::HandshakeFailed { reason });
                return Outcome::Nothing;
            }
        };
        let peer = PublicKey(*conn.remote_id().as_bytes());
        // The access check comes first, before the connection's protocol is served at all.
        let log = self.node.log.clone();
        let access = self.access.clone();
        let allowed =
            tokio::task::spawn_blocking(move || access.allows(&peer, &log).unwrap_or(false))
                .await
                .unwrap_or(false);
        if !allowed {
            conn.close(
                VarInt::from_u32(CLOSE_REFUSED),
                b"this key is not on the replica's access list",
            );
            self.event(IrohEvent::Refused { peer });
            return Outcome::Refused;
        }
        if conn.alpn() == ALPN {
            self.event(IrohEvent::Accepted { peer });
            return Outcome::Session(Box::new(self.session(peer, conn).await));
        }
        match &self.node.gossip {
            Some(g) if conn.alpn() == iroh_gossip::ALPN => {
                self.event(IrohEvent::Gossip { peer });
                if g.handle_connection(conn).await.is_ok() {
                    Outcome::Gossip
                } else {
                    Outcome::Nothing
                }
            }
            _ => {
                conn.close(VarInt::from_u32(CLOSE_UNKNOWN_ALPN), b"unknown protocol");
                Outcome::Nothing
            }
        }
    }

    async fn session(&self, peer: PublicKey, conn: Connection) -> Result<SyncReport, SyncFailure> {
        let opts = self.session.clone();
        let fail = |error: SyncError| SyncFailure {
            error,
            report: SyncReport::default(),
        };
        let accept = conn.accept_bi();
        let stream = match opts.handshake_timeout {
            Some(after) => tokio::time::timeout(after, accept).await.map_err(|_| {
                fail(SyncError::Timeout {
                    state: "waiting for the session stream",
                    after,
                })
            })?,
            None => accept.await,
        };
        let (send, recv) = stream.map_err(|e| fail(std::io::Error::other(e).into()))?;
        let mut stream = tokio::io::join(recv, send);
        let result = sync_reporting(&self.node.log, &mut stream, opts).await;
        finish(&conn, stream, result.is_ok()).await;
        match &result {
            Ok(report) => self.event(IrohEvent::Finished { peer, report }),
            Err(f) => self.event(IrohEvent::Failed {
                peer,
                error: &f.error,
                report: &f.report,
            }),
        }
        result
    }
}
