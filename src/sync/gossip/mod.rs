//! Live fan-out by gossip (feature `iroh`): replicas of one log join an iroh-gossip topic and
//! announce their heads; a replica that lacks announced heads fetches them over a direct
//! iroh session with the announcer.
//!
//! Gossip carries only announcements ([`Announce`]: endpoint id, addresses, heads), never
//! nodes: nodes always travel in an authenticated, policy-checked sync session, so gossip adds
//! no way to inject data. iroh-gossip (HyParView membership, Plumtree broadcast) keeps each
//! replica connected to a handful of neighbours however many replicas there are.
//!
//! When a replica announces:
//! - when its heads change (a local write, or nodes from any session) and the new heads are
//!   not ones it has just seen announced (a replica that fetched exactly the announced heads
//!   stays quiet: everyone heard them already), at most once per
//!   [`GossipOptions::min_interval`], and not while its own fetches run;
//! - to its direct neighbours when a neighbour joins (so a late joiner learns the heads) and
//!   every [`GossipOptions::reannounce`] (so an announcement lost to a bound or a lagging
//!   receiver delays convergence, never prevents it).
//!
//! A fetch is a [`crate::sync::Mode::Both`] session: the announcer gets what the fetcher had
//! and it lacked at the same time, and announces its merged heads in turn.
//!
//! Everything a gossip peer can send is bounded ([`GossipLimits`]): the size of an
//! announcement, the rate a neighbour may deliver them, the announcers waiting for a fetch
//! and the fetches at once. What exceeds a bound is dropped and counted in [`GossipStats`].
//!
//! The topic is derived from a name the replicas share ([`Topic::named`]); by convention the
//! endpoint id of the replica everyone first joined through ([`Topic::of`]), which each of
//! them holds in its ticket. Gossip connections pass the server's access check like sync
//! connections, and announcements from keys the access list does not allow are dropped.

mod announce;
mod fanout;

pub use announce::{
    Announce, AnnounceError, ANNOUNCE_VERSION, MAX_ANNOUNCE_ADDRS, MAX_ANNOUNCE_BYTES,
    MAX_ANNOUNCE_HEADS,
};
pub use fanout::{Fanout, GossipStats};

use std::time::Duration;

use crate::identity::PublicKey;
use crate::sync::iroh::Access;
use crate::sync::net::options::SyncOptions;

pub use crate::sync::limits::GOSSIP_MAX_MESSAGE;

/// A gossip topic: 32 bytes derived from a name the replicas of one log share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic(pub [u8; 32]);

impl Topic {
    /// The topic of `name`: `blake3::derive_key("braidlog gossip topic v1", name)`. The
    /// name itself never travels.
    pub fn named(name: &str) -> Topic {
        Topic(blake3::derive_key(
            "braidlog gossip topic v1",
            name.as_bytes(),
        ))
    }

    /// The topic named by a replica's endpoint id (its hex): the convention for "the log I
    /// joined through this replica's ticket".
    pub fn of(id: PublicKey) -> Topic {
        Topic::named(&id.to_string())
    }
}

/// The bounds on what gossip peers can make a replica hold or do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipLimits {
    /// Announcements a neighbour may deliver at once ...
    pub burst: u32,
    /// ... and per second after that.
    pub per_sec: u32,
    /// Announcers waiting for a fetch (each keeps only its latest announcement).
    pub max_pending: usize,
    /// Fetch sessions at once.
    pub max_fetches: usize,
}

impl Default for GossipLimits {
    fn default() -> GossipLimits {
        GossipLimits {
            burst: 64,
            per_sec: 32,
            max_pending: 64,
            max_fetches: 4,
        }
    }
}

/// How a replica takes part in gossip.
#[derive(Debug, Clone)]
pub struct GossipOptions {
    /// Whose announcements are acted on (should match the server's [`Access`]).
    pub access: Access,
    /// The bounds.
    pub limits: GossipLimits,
    /// The options of every fetch session (mode and live are set by the fan-out).
    pub session: SyncOptions,
    /// Least time between two announcements of changed heads.
    pub min_interval: Duration,
    /// How often to announce the heads to the neighbours unasked.
    pub reannounce: Duration,
}

impl Default for GossipOptions {
    fn default() -> GossipOptions {
        GossipOptions {
            access: Access::default(),
            limits: GossipLimits::default(),
            session: SyncOptions::default(),
            min_interval: Duration::from_millis(20),
            reannounce: Duration::from_secs(30),
        }
    }
}
