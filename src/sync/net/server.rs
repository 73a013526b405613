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

/// A transport a server accepts connections from: TCP here, iroh in `sync::iroh`.
pub(crate) trait Listener {
    /// A connection accepted but not yet admitted (the per-transport admission hook, such as
    /// iroh's key check, runs in its session's task).
    type Incoming: Send + 'static;
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = Accepted<Self::Incoming>> + Send;
}

/// What [`Listener::accept`] gave.
pub(crate) enum Accepted<I> {
    /// A connection.
    Conn(I),
    /// Accepting failed; the server backs off (see [`run`]).
    Failed(std::io::Error),
    /// The transport is closed: the server stops (TCP listeners never close).
    #[cfg_attr(not(feature = "iroh"), allow(dead_code))]
    Closed,
}

impl Listener for TcpListener {
    type Incoming = (tokio::net::TcpStream, SocketAddr);
    async fn accept(&mut self) -> Accepted<Self::Incoming> {
        match TcpListener::accept(self).await {
            Ok(a) => Accepted::Conn(a),
            Err(e) => Accepted::Failed(e),
        }
    }
}

/// The one accept loop, generic over the transport. Its overload policy, the same for every
/// transport: at most `max_connections` connections at once, and at the limit it stops
/// accepting, so new connections wait in the transport's queue (the kernel's listen backlog,
/// QUIC's incoming queue) until a slot frees, each bounded by its own client's timeout,
/// rather than being refused while a slot may free up a moment later. An accept error never
/// ends it: `accept_failed` hears of it with the backoff before the next accept (none when
/// the error concerns only the connection being accepted), doubling from [`BACKOFF_MIN`] to
/// [`BACKOFF_MAX`]. Each accepted connection runs the future `start` gives in its own task,
/// holding its slot until `ended` has recorded its end (so events never show more sessions
/// than the limit); `ended` gets back the tag `start` gave with it (the peer, say).
/// On `shutdown` it stops accepting, turns `stop` to `true` (the sessions' own shutdown
/// signal) and waits for every task.
pub(crate) async fn run<L, T, O, Fut>(
    listener: &mut L,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    stop: watch::Sender<bool>,
    mut start: impl FnMut(L::Incoming) -> (T, Fut),
    mut ended: impl FnMut(Result<O, tokio::task::JoinError>, Option<T>),
    mut accept_failed: impl FnMut(&std::io::Error, Duration),
) where
    L: Listener,
    O: Send + 'static,
    Fut: Future<Output = O> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut held: HashMap<tokio::task::Id, (T, OwnedSemaphorePermit)> = HashMap::new();
    let mut tasks: JoinSet<O> = JoinSet::new();
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let mut backoff = BACKOFF_MIN;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut end = |done: Result<(tokio::task::Id, O), tokio::task::JoinError>,
                   held: &mut HashMap<_, _>| {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let (tag, slot) = held.remove(&id).unzip();
        ended(done.map(|(_, o)| o), tag);
        drop(slot);
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = tasks.join_next_with_id() => end(done, &mut held),
            p = slots.clone().acquire_owned(), if slot.is_none() => match p {
                Ok(p) => slot = Some(p),
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            accepted = listener.accept(), if slot.is_some() && retry_at.is_none() => {
                let incoming = match accepted {
                    Accepted::Conn(c) => c,
                    Accepted::Closed => break,
                    Accepted::Failed(error) => {
                        // One connection's failure says nothing about the next: retry now.
                        // Anything else (out of descriptors or memory) needs time to clear.
                        let retry_in = if one_connection(&error) { Duration::ZERO } else { backoff };
                        accept_failed(&error, retry_in);
                        if !retry_in.is_zero() {
                            retry_at = Some(tokio::time::Instant::now() + retry_in);
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                        continue;
                    }
                };
                backoff = BACKOFF_MIN;
                let (tag, fut) = start(incoming);
                let task = tasks.spawn(fut);
                if let Some(p) = slot.take() {
                    held.insert(task.id(), (tag, p));
                }
            }
        }
    }
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next_with_id().await {
        end(done, &mut held);
    }
}

/// Serves sync sessions on an already bound `listener` (bind `127.0.0.1:0` in tests), each
/// peer in its own task, until `shutdown` completes; then stops as the module docs say and
/// reports. `options` is a [`ServeOptions`] or just the [`SyncOptions`] of each session.
///
/// It returns only after `shutdown`: no peer and no accept error ends it.
pub async fn serve(
    mut listener: TcpListener,
    log: Log,
    options: impl Into<ServeOptions>,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeReport, SyncError> {
    let options = options.into();
    let (stop_tx, stop_rx) = watch::channel(false);
    let session = options.sessions(stop_rx);
    let on_event = options.on_event.clone();
    let event = |e: ServeEvent<'_>| {
        if let Some(f) = &on_event {
            f(e);
        }
    };
    let report = std::sync::Mutex::new(ServeReport::default());
    run(
        &mut listener,
        options.max_connections,
        shutdown,
        stop_tx,
        |(stream, peer): (tokio::net::TcpStream, SocketAddr)| {
            // Fails only if the peer is already gone; its session then says so.
            let _ = stream.set_nodelay(true);
            lock(&report).sessions += 1;
            event(ServeEvent::Accepted { peer });
            let (log, opts) = (log.clone(), session.clone());
            (peer, async move {
                (peer, sync_reporting(&log, stream, opts).await)
            })
        },
        |done: Result<Ended, tokio::task::JoinError>, peer: Option<SocketAddr>| {
            let (peer, result) = match done {
                Ok(ended) => ended,
                Err(e) => {
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
            let mut r = lock(&report);
            match &result {
                Ok(rep) => {
                    r.nodes_received += rep.nodes_received;
                    r.nodes_sent += rep.nodes_sent;
                    drop(r);
                    event(ServeEvent::Finished { peer, report: rep });
                }
                Err(SyncFailure { error, report }) => {
                    r.failed += 1;
                    r.nodes_received += report.nodes_received;
                    r.nodes_sent += report.nodes_sent;
                    drop(r);
                    event(ServeEvent::Failed {
                        peer,
                        error,
                        report,
                    });
                }
            }
        },
        |error, retry_in| {
            lock(&report).accept_errors += 1;
            event(ServeEvent::AcceptFailed { error, retry_in });
        },
    )
    .await;
    Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()))
}

impl ServeOptions {
    /// The options of each session: the server's shutdown signal, and one memory budget for
    /// all of them (the caller's, or one of [`ServeOptions::memory_budget`] bytes).
    pub(crate) fn sessions(&self, stop: watch::Receiver<bool>) -> SyncOptions {
        let mut session = self.session.clone();
        session.shutdown = Some(stop);
        session
            .memory
            .get_or_insert_with(|| MemoryBudget::new(self.memory_budget));
        session
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
