//! Replication: two replicas exchange what the other lacks over any byte stream.
//!
//! Layers, bottom up:
//! - [`message`]: the typed messages and their limits;
//! - [`codec`]: the preamble (magic, version) and length-prefixed frames;
//! - [`session`]: the sans-IO state machine, generic over [`SyncStore`];
//! - [`store`]: [`SyncStore`], implemented by [`crate::Log`] and by the in-memory [`MemStore`];
//! - `driver` (feature `net`): [`sync`] over any tokio `AsyncRead + AsyncWrite`, with its
//!   [`SyncOptions`] (timeouts, [`MemoryBudget`]);
//! - `serve` and `tcp` (feature `net`): [`serve`] (connection limit, accept backoff, shared
//!   memory budget, shutdown) and [`connect`]. Plain TCP is unauthenticated and unencrypted:
//!   for trusted networks and tests;
//! - `iroh` and `gossip` (feature `iroh`): the same sessions over iroh (encrypted, dialled
//!   by key, access-checked), and live fan-out to many replicas by gossip.
//!
//! The protocol, its byte layout and its round-trip analysis are in `docs/PROTOCOL.md`. In
//! short: each side sends its heads and a few feed samples; each answers with which of those it
//! has and a keyed Bloom filter of its nodes outside the shared part; then each streams, in feed
//! (topological) order, its nodes not reachable from the shared points and not in the filter.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use braidlog::sync::{sync, Mode, SyncOptions};
//! use braidlog::Log;
//!
//! let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
//! let (a, b) = (Log::open(da.path())?, Log::open(db.path())?);
//! a.append(b"from a".to_vec())?;
//! b.append(b"from b".to_vec())?;
//!
//! let (sa, sb) = tokio::io::duplex(64 * 1024);
//! let (ra, rb) = tokio::join!(
//!     sync(&a, sa, SyncOptions::new(Mode::Both)),
//!     sync(&b, sb, SyncOptions::new(Mode::Both)),
//! );
//! assert_eq!((ra?.nodes_received, rb?.nodes_received), (1, 1));
//! assert_eq!(a.heads()?, b.heads()?);
//! # Ok(()) }
//! ```

pub mod codec;
mod error;
mod filter;
pub mod message;
mod plan;
mod refused;
pub mod session;
pub mod store;

#[cfg(feature = "net")]
pub mod budget;
#[cfg(feature = "net")]
mod driver;
#[cfg(feature = "net")]
mod options;
#[cfg(feature = "net")]
mod serve;
#[cfg(feature = "net")]
mod tcp;

#[cfg(feature = "iroh")]
pub mod gossip;
#[cfg(feature = "iroh")]
pub mod iroh;

#[cfg(feature = "net")]
pub use budget::MemoryBudget;
#[cfg(feature = "net")]
pub use driver::{sync, sync_reporting, SyncFailure};
pub use error::SyncError;
pub use message::{
    AbortReason, Message, MAGIC, MAX_ABORT_DETAIL, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
#[cfg(feature = "net")]
pub use options::{
    Progress, SyncOptions, SyncReport, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
};
#[cfg(feature = "net")]
pub use serve::{
    serve, OnEvent, ServeEvent, ServeOptions, ServeReport, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MEMORY_BUDGET,
};
pub use session::{Limits, Mode, Phase, Session, SessionConfig, SessionStats};
pub use store::{Cursor, MemStore, SyncStore};
#[cfg(feature = "net")]
pub use tcp::connect;
