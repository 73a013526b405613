//! Replication over iroh (feature `iroh`): QUIC connections dialled by public key, encrypted
//! and authenticated, with hole punching and optional relays.
//!
//! The session is the same as over TCP (the tokio driver runs over one bidirectional QUIC
//! stream); what iroh adds is who is at the other end:
//! - a replica's endpoint key is its Ed25519 identity, the key it signs nodes with, so the
//!   peer that a session authenticates is the author its history names;
//! - a [`Ticket`] (endpoint id, direct addresses, optional relay URL) is all a peer needs to
//!   dial it;
//! - the server checks each peer's key against its [`Access`] list before anything else, and
//!   a refused peer learns nothing of the history ([`IrohError::Refused`] on its side).
//!
//! Connections use the ALPN [`ALPN`]; gossip connections (see [`crate::sync::gossip`]) use
//! iroh-gossip's own and pass the same access check. Relays are off unless configured
//! ([`IrohConfig::relay`]): everything works offline, on loopback and on a LAN.
//!
//! ```no_run
//! # async fn demo(a: braidlog::Log, b: braidlog::Log) -> Result<(), Box<dyn std::error::Error>> {
//! use braidlog::sync::iroh::{Access, IrohConfig, IrohNode, IrohServeOptions};
//! use braidlog::sync::{Mode, SyncOptions};
//!
//! let server = IrohNode::bind(&a, IrohConfig::default()).await?;
//! let client = IrohNode::bind(&b, IrohConfig::default()).await?;
//! let ticket = server.ticket(); // print it; the peer parses it with `str::parse`
//! let access = Access::Keys([client.id()].into());
//! let options = IrohServeOptions { access, ..Default::default() };
//! let srv = server.clone();
//! tokio::spawn(async move { srv.serve(options, std::future::pending()).await });
//! client.connect(&ticket, SyncOptions::new(Mode::Both)).await?;
//! # Ok(()) }
//! ```

mod node;
mod serve;
mod ticket;

pub use node::{IrohConfig, IrohNode, CLOSE_REFUSED};
pub use serve::{Access, IrohEvent, IrohServeOptions, IrohServeReport, OnIrohEvent};
pub use ticket::{
    Ticket, TicketError, MAX_TICKET_ADDRS, MAX_TICKET_LEN, TICKET_PREFIX, TICKET_VERSION,
};

/// A relay server's URL (`https://relay.example.org./`), as iroh parses it.
pub use ::iroh::RelayUrl;

use crate::identity::PublicKey;
use crate::sync::net::driver::SyncFailure;

/// The ALPN of braidlog's sync protocol over iroh. The protocol version inside is negotiated
/// by the session's own preamble; the ALPN changes only if the framing over QUIC does.
pub const ALPN: &[u8] = b"braidlog/sync/1";

/// Why an iroh operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IrohError {
    /// The endpoint could not be bound.
    #[error("cannot bind the iroh endpoint: {0}")]
    Bind(String),
    /// The peer could not be reached, or the connection failed before the session began.
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// The peer's key.
        peer: PublicKey,
        /// Why.
        reason: String,
    },
    /// The peer's access list does not hold this replica's key: it closed the connection
    /// before sending anything.
    #[error("{by} refused this replica's key (not on its access list)")]
    Refused {
        /// The refusing peer's key.
        by: PublicKey,
    },
    /// The session failed (what it stored before failing is kept and counted).
    #[error(transparent)]
    Sync(#[from] SyncFailure),
    /// The gossip layer failed.
    #[error("gossip: {0}")]
    Gossip(String),
    /// The log failed (reading its identity or policy).
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    /// The identity could not be loaded.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}
