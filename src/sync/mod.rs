//! Replication: two replicas exchange what the other lacks over any byte stream.
//!
//! Layers, bottom up (each folder imports only the ones above it in this list):
//! - `limits`: every bound and timeout, in one table ([`Limits`] and the constants);
//! - [`wire`] (public, for people who write their own peers): the typed messages, the
//!   preamble and length-prefixed frames, node deltas; no I/O;
//! - `store`: [`SyncStore`], implemented by [`crate::Log`] and by the in-memory [`MemStore`];
//! - `session`: the sans-IO state machine, [`Session`], generic over [`SyncStore`];
//! - `net` (feature `net`): a framed connection, the driver ([`sync`] over any tokio
//!   `AsyncRead + AsyncWrite`, with its [`SyncOptions`]), one server loop generic over the
//!   transport ([`serve`] for TCP: connection limit, accept backoff, shared
//!   [`MemoryBudget`], shutdown) and [`connect`]. Plain TCP is unauthenticated and
//!   unencrypted: for trusted networks and tests;
//! - `iroh` and `gossip` (feature `iroh`): the same sessions over iroh (encrypted, dialled
//!   by key, access-checked), and live fan-out to many replicas by gossip, which takes the
//!   iroh endpoint it runs on.
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

mod error;
mod limits;
mod refused;
mod session;
mod store;
pub mod wire;

#[cfg(feature = "net")]
mod net;

#[cfg(feature = "iroh")]
pub mod gossip;
#[cfg(feature = "iroh")]
pub mod iroh;

pub use error::SyncError;
pub use error::WireError;
pub use limits::{
    Limits, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MEMORY_BUDGET, FREE_BYTES, MIN_MEMORY_BUDGET,
};
#[cfg(feature = "net")]
pub use net::budget::MemoryBudget;
#[cfg(feature = "net")]
pub use net::driver::{sync, sync_reporting, SyncFailure};
#[cfg(feature = "net")]
pub use net::options::{Progress, SyncOptions, SyncReport};
#[cfg(feature = "net")]
pub use net::server::{serve, OnEvent, ServeEvent, ServeOptions, ServeReport};
#[cfg(feature = "net")]
pub use net::tcp::connect;
pub use session::{Mode, Phase, Session, SessionConfig, SessionStats};
pub use store::{Cursor, MemStore, Refusal, StoreError, SyncStore};
pub use wire::AbortReason;
