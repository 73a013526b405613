//! TCP helpers: a server for many peers at once, and a client.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::driver::{sync, SyncOptions, SyncReport};
use super::error::SyncError;
use crate::log::Log;

/// What a server did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Sessions accepted.
    pub sessions: u64,
    /// Sessions that ended in an error.
    pub failed: u64,
    /// New nodes stored from all peers.
    pub nodes_received: u64,
    /// Nodes sent to all peers.
    pub nodes_sent: u64,
}

/// Connects to `addr` and syncs `log` with the server there.
pub async fn connect(
    addr: impl ToSocketAddrs,
    log: &Log,
    options: SyncOptions,
) -> Result<SyncReport, SyncError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    sync(log, stream, options).await
}

/// Serves sync sessions on an already bound `listener` (bind `127.0.0.1:0` in tests), each
/// peer in its own task, until `shutdown` completes. Then it stops accepting, closes live
/// sessions in order, waits for every session to end and reports.
pub async fn serve(
    listener: TcpListener,
    log: Log,
    options: SyncOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeReport, SyncError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut report = ServeReport::default();
    let record = |report: &mut ServeReport, r: Result<Result<SyncReport, SyncError>, _>| match r {
        Ok(Ok(s)) => {
            report.nodes_received += s.nodes_received;
            report.nodes_sent += s.nodes_sent;
        }
        _ => report.failed += 1,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                stream.set_nodelay(true)?;
                report.sessions += 1;
                let log = log.clone();
                let mut opts = options.clone();
                opts.shutdown = Some(stop_rx.clone());
                tasks.spawn(async move { sync(&log, stream, opts).await });
            }
            Some(done) = tasks.join_next() => record(&mut report, done),
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        record(&mut report, done);
    }
    Ok(report)
}
