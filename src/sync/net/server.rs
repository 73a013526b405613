//! The server: many peers on one listener, protecting itself.
//!
//! - At most [`ServeOptions::max_connections`] sessions at once. At the limit the server stops
//!   accepting: new connections wait in the kernel's listen backlog (each bounded by its own
//!   client's timeout) until a session ends, rather than being refused while a slot may free
//!   up a moment later. Descriptors are never spent beyond the limit.
//! - An accept error (out of descriptors, out of memory, a connection reset before it was
//!   accepted) never ends the server: it is reported and accepting resumes after a backoff
//!   that doubles from 10 ms to 1 s, while running sessions carry on (at once when the error
//!   concerns only the connection being accepted, such as one reset before it was accepted).
//! - One [`MemoryBudget`] shared by all sessions bounds the peer data they buffer together.
//! - Every session has the handshake and idle timeouts of [`SyncOptions`].
//! - On shutdown it stops accepting; live sessions close in order, others end after their
//!   store step in progress (keeping what they checked), idle ones at once.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::budget::MemoryBudget;
use super::driver::{sync_reporting, SyncFailure};
use super::options::{SyncOptions, SyncReport};
use crate::log::Log;
use crate::sync::error::SyncError;

use crate::sync::limits::{
    BACKOFF_MAX, BACKOFF_MIN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MEMORY_BUDGET,
};

/// Something a server did, for logs and tests.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeEvent<'a> {
    /// A connection was accepted; its session starts.
    Accepted {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// A session ended well.
    Finished {
        /// The peer's address.
        peer: SocketAddr,
        /// What it did.
        report: &'a SyncReport,
    },
    /// A session failed; what it had checked is kept.
    Failed {
        /// The peer's address.
        peer: SocketAddr,
        /// Why.
        error: &'a SyncError,
        /// What it did before (`nodes_received`: the nodes it committed, which are kept).
        report: &'a SyncReport,
    },
    /// Accepting failed; the server retries after `retry_in`.
    AcceptFailed {
        /// The error.
        error: &'a std::io::Error,
        /// The backoff before the next accept.
        retry_in: Duration,
    },
}

/// A callback that receives every [`ServeEvent`]. It runs on the server's task: keep it short.
pub type OnEvent = Arc<dyn Fn(ServeEvent<'_>) + Send + Sync>;

/// How to serve.
#[derive(Clone)]
pub struct ServeOptions {
    /// The options of every session (their `shutdown` is the server's own). If `memory` is
    /// `None`, the server makes one budget of [`ServeOptions::memory_budget`] bytes.
    pub session: SyncOptions,
    /// Sessions at once; at the limit new connections wait to be accepted. Default
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Bytes of peer data all sessions may buffer together beyond each connection's free
    /// [`super::budget::FREE_BYTES`]. Default [`DEFAULT_MEMORY_BUDGET`].
    pub memory_budget: usize,
    /// Receives every [`ServeEvent`].
    pub on_event: Option<OnEvent>,
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("session", &self.session)
            .field("max_connections", &self.max_connections)
            .field("memory_budget", &self.memory_budget)
            .field("on_event", &self.on_event.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions::from(SyncOptions::default())
    }
}

impl From<SyncOptions> for ServeOptions {
    fn from(session: SyncOptions) -> ServeOptions {
        ServeOptions {
            session,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            on_event: None,
        }
    }
}

/// What a server did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Sessions accepted.
    pub sessions: u64,
    /// Sessions that ended in an error.
    pub failed: u64,
    /// New nodes stored from all peers, failed sessions included (what they committed
    /// before failing is kept).
    pub nodes_received: u64,
    /// Nodes sent to all peers.
    pub nodes_sent: u64,
    /// Accept calls that failed (each retried).
    pub accept_errors: u64,
}

type Ended = (SocketAddr, Result<SyncReport, SyncFailure>);

struct Server {
    report: ServeReport,
    on_event: Option<OnEvent>,
    /// Each running session's peer and slot. The slot is freed only once its end is
    /// recorded, so events never show more sessions than the limit.
    peers: HashMap<tokio::task::Id, (SocketAddr, OwnedSemaphorePermit)>,
}

impl Server {
    fn event(&self, e: ServeEvent<'_>) {
        if let Some(f) = &self.on_event {
            f(e);
        }
    }

    fn ended(&mut self, done: Result<(tokio::task::Id, Ended), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let slot = self.peers.remove(&id);
        let (peer, result) = match done {
            Ok((_, ended)) => ended,
            Err(e) => {
                let peer = slot.as_ref().map(|s| s.0);
                let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                let why = if e.is_panic() {
                    "the session task panicked"
                } else {
                    "the session task was cancelled"
                };
                let error = SyncError::Io(std::io::Error::other(why));
                let report = SyncReport::default();
                (peer, Err(SyncFailure { error, report }))
            }
        };
        match &result {
            Ok(r) => {
                self.report.nodes_received += r.nodes_received;
                self.report.nodes_sent += r.nodes_sent;
                self.event(ServeEvent::Finished { peer, report: r });
            }
            Err(SyncFailure { error, report }) => {
                self.report.failed += 1;
                self.report.nodes_received += report.nodes_received;
                self.report.nodes_sent += report.nodes_sent;
                self.event(ServeEvent::Failed {
                    peer,
                    error,
                    report,
                });
            }
        }
        drop(slot);
    }
}

/// Serves sync sessions on an already bound `listener` (bind `127.0.0.1:0` in tests), each
/// peer in its own task, until `shutdown` completes; then stops as the module docs say and
/// reports. `options` is a [`ServeOptions`] or just the [`SyncOptions`] of each session.
///
/// It returns only after `shutdown`: no peer and no accept error ends it.
pub async fn serve(
    listener: TcpListener,
    log: Log,
    options: impl Into<ServeOptions>,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeReport, SyncError> {
    let options = options.into();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut session = options.session.clone();
    session.shutdown = Some(stop_rx);
    // One budget for every session of this server.
    session
        .memory
        .get_or_insert_with(|| MemoryBudget::new(options.memory_budget));
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut server = Server {
        report: ServeReport::default(),
        on_event: options.on_event.clone(),
        peers: HashMap::new(),
    };
    let mut tasks: JoinSet<Ended> = JoinSet::new();
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let mut backoff = BACKOFF_MIN;
    let mut retry_at: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = tasks.join_next_with_id() => server.ended(done),
            p = slots.clone().acquire_owned(), if slot.is_none() => match p {
                Ok(p) => slot = Some(p),
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            accepted = listener.accept(), if slot.is_some() && retry_at.is_none() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        server.report.accept_errors += 1;
                        // One connection's failure says nothing about the next: retry now.
                        // Anything else (out of descriptors or memory) needs time to clear.
                        let retry_in = if one_connection(&error) { Duration::ZERO } else { backoff };
                        server.event(ServeEvent::AcceptFailed { error: &error, retry_in });
                        if !retry_in.is_zero() {
                            retry_at = Some(tokio::time::Instant::now() + retry_in);
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                        continue;
                    }
                };
                backoff = BACKOFF_MIN;
                // Fails only if the peer is already gone; its session then says so.
                let _ = stream.set_nodelay(true);
                server.report.sessions += 1;
                server.event(ServeEvent::Accepted { peer });
                let (log, opts) = (log.clone(), session.clone());
                let task = tasks.spawn(async move { (peer, sync_reporting(&log, stream, opts).await) });
                if let Some(held) = slot.take() {
                    server.peers.insert(task.id(), (peer, held));
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next_with_id().await {
        server.ended(done);
    }
    Ok(server.report)
}

/// Whether an accept error concerns only the connection being accepted.
fn one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
