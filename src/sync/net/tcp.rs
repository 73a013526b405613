//! The TCP client: [`connect`]. The server is in `serve.rs`.

use tokio::net::{TcpStream, ToSocketAddrs};

use super::driver::sync;
use super::options::{SyncOptions, SyncReport};
use crate::log::Log;
use crate::log::LogError;
use crate::sync::error::SyncError;

/// Connects to `addr` and syncs `log` with the server there. Connecting gets its own
/// [`SyncOptions::handshake_timeout`], so an address that never answers fails in time too.
pub async fn connect(
    addr: impl ToSocketAddrs,
    log: &Log,
    options: SyncOptions,
) -> Result<SyncReport, SyncError> {
    let connecting = TcpStream::connect(addr);
    let stream =
        match options.handshake_timeout {
            Some(after) => tokio::time::timeout(after, connecting)
                .await
                .map_err(|_| SyncError::<LogError>::Timeout {
                    state: "connecting",
                    after,
                })??,
            None => connecting.await?,
        };
    stream.set_nodelay(true)?;
    sync(log, stream, options).await
}
