//! [`IrohNode`]: a replica's iroh endpoint, keyed by its identity, and the client side of a
//! sync ([`IrohNode::connect`]).

use std::net::SocketAddr;

use iroh::endpoint::{presets, Connection, ConnectionError, RecvStream, SendStream, VarInt};
use iroh::{Endpoint, RelayMode};
use tokio::io::Join;

use super::ticket::Ticket;
use super::{IrohError, ALPN};
use crate::identity::{Identity, PublicKey};
use crate::log::Log;
use crate::sync::limits::{IROH_DRAIN, IROH_LINGER};
use crate::sync::net::driver::sync_reporting;
use crate::sync::net::options::{SyncOptions, SyncReport};

/// Close code of a connection whose session ended well.
pub(crate) const CLOSE_DONE: u32 = 0;
/// Close code of a connection refused by the access list, before anything was sent.
pub const CLOSE_REFUSED: u32 = 1;
/// Close code of a connection with a protocol this replica does not serve.
pub(crate) const CLOSE_UNKNOWN_ALPN: u32 = 2;
/// How to set up a replica's iroh endpoint.
#[derive(Debug, Clone, Default)]
pub struct IrohConfig {
    /// The endpoint key. Default: the log's signing identity (so the transport authenticates
    /// the key the history is signed with), or, when signing is off, the replica's default
    /// identity file.
    pub identity: Option<Identity>,
    /// The UDP address to listen on. Default: every interface, any port (IPv4 and IPv6).
    /// Tests bind `127.0.0.1:0` so they stay on loopback.
    pub bind: Option<SocketAddr>,
    /// A relay server for peers that cannot reach each other directly (behind NATs). Default:
    /// none, so nothing leaves the local network unless configured; both sides should name
    /// the same relay.
    pub relay: Option<iroh::RelayUrl>,
    /// Also run iroh-gossip on this endpoint, for live fan-out (see [`crate::sync::gossip`]).
    pub gossip: bool,
}

/// A replica's iroh endpoint: dials peers by key and serves them (see
/// [`IrohNode::serve`]). Cheap to clone; closing one clone closes them all.
#[derive(Debug, Clone)]
pub struct IrohNode {
    pub(crate) endpoint: Endpoint,
    pub(crate) log: Log,
    pub(crate) relay: Option<iroh::RelayUrl>,
    pub(crate) gossip: Option<iroh_gossip::net::Gossip>,
    /// Addresses learnt from tickets, so peers can be dialled by id alone (gossip does).
    lookup: iroh::address_lookup::memory::MemoryLookup,
}

impl IrohNode {
    /// Binds an endpoint for `log`, keyed per [`IrohConfig::identity`].
    pub async fn bind(log: &Log, config: IrohConfig) -> Result<IrohNode, IrohError> {
        let identity = match config.identity {
            Some(id) => id,
            None => match log.identity()? {
                Some(id) => id,
                None => Identity::load_or_create(log.path())?,
            },
        };
        let secret = iroh::SecretKey::from_bytes(&identity.secret_bytes());
        let relay_mode = match &config.relay {
            Some(url) => RelayMode::custom([url.clone()]),
            None => RelayMode::Disabled,
        };
        let mut alpns = vec![ALPN.to_vec()];
        if config.gossip {
            alpns.push(iroh_gossip::ALPN.to_vec());
        }
        let mut builder = Endpoint::builder(presets::Minimal)
            .secret_key(secret)
            .relay_mode(relay_mode)
            .alpns(alpns);
        if let Some(addr) = config.bind {
            builder = builder
                .clear_ip_transports()
                .bind_addr(addr)
                .map_err(|e| IrohError::Bind(e.to_string()))?;
        }
        let endpoint = builder
            .bind()
            .await
            .map_err(|e| IrohError::Bind(e.to_string()))?;
        let lookup = iroh::address_lookup::memory::MemoryLookup::new();
        if let Ok(services) = endpoint.address_lookup() {
            services.add(lookup.clone());
        }
        let gossip = config.gossip.then(|| {
            iroh_gossip::net::Gossip::builder()
                .max_message_size(crate::sync::limits::GOSSIP_MAX_MESSAGE)
                .spawn(endpoint.clone())
        });
        Ok(IrohNode {
            endpoint,
            log: log.clone(),
            relay: config.relay,
            gossip,
            lookup,
        })
    }

    /// Remembers where the replica of `ticket` is, so it can be dialled by id alone (as
    /// gossip does with its bootstrap peers).
    pub fn add_peer(&self, ticket: &Ticket) {
        self.lookup.add_endpoint_info(ticket.endpoint_addr());
    }

    /// This replica's endpoint id: the public key of its identity.
    pub fn id(&self) -> PublicKey {
        PublicKey(*self.endpoint.id().as_bytes())
    }

    /// The ticket peers dial: this endpoint's id, its direct addresses and its relay.
    pub fn ticket(&self) -> Ticket {
        let mut t = Ticket::from_endpoint_addr(&self.endpoint.addr());
        if t.relay().is_none() {
            if let Some(relay) = &self.relay {
                t = Ticket::new(t.id(), t.addrs().to_vec(), Some(relay.clone()));
            }
        }
        t
    }

    /// The underlying iroh endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The gossip instance, when bound with [`IrohConfig::gossip`].
    pub fn gossip(&self) -> Option<&iroh_gossip::net::Gossip> {
        self.gossip.as_ref()
    }

    /// The log this node replicates.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Dials the replica of `ticket` and syncs with it per `options` (connecting is bounded
    /// by [`SyncOptions::handshake_timeout`]). A peer that refuses this replica's key fails
    /// it with [`IrohError::Refused`], before any node is exchanged.
    pub async fn connect(
        &self,
        ticket: &Ticket,
        options: SyncOptions,
    ) -> Result<SyncReport, IrohError> {
        self.connect_addr(ticket.endpoint_addr(), options).await
    }

    /// [`IrohNode::connect`] to an iroh address (an endpoint id alone works when an address
    /// lookup, such as gossip's, knows where it is).
    pub async fn connect_addr(
        &self,
        addr: impl Into<iroh::EndpointAddr>,
        options: SyncOptions,
    ) -> Result<SyncReport, IrohError> {
        let addr = addr.into();
        let peer = PublicKey(*addr.id.as_bytes());
        let connecting = async {
            let conn = self
                .endpoint
                .connect(addr, ALPN)
                .await
                .map_err(|e| IrohError::Connect {
                    peer,
                    reason: e.to_string(),
                })?;
            let (send, recv) = conn.open_bi().await.map_err(|e| closed(peer, &e))?;
            Ok::<_, IrohError>((conn, send, recv))
        };
        let (conn, send, recv) = match options.handshake_timeout {
            Some(after) => tokio::time::timeout(after, connecting)
                .await
                .map_err(|_| IrohError::Connect {
                    peer,
                    reason: format!("no connection within {after:?}"),
                })??,
            None => connecting.await?,
        };
        let mut stream = tokio::io::join(recv, send);
        let result = sync_reporting(&self.log, &mut stream, options).await;
        // Read why the peer closed before closing our side, which replaces the reason.
        let reason = conn.close_reason();
        finish(&conn, stream, result.is_ok()).await;
        result.map_err(|f| match reason {
            Some(reason) if refused(&reason) => IrohError::Refused { by: peer },
            _ => IrohError::Sync(f),
        })
    }

    /// Closes the endpoint (and gossip): open connections end at once.
    pub async fn close(&self) {
        if let Some(g) = &self.gossip {
            let _ = g.shutdown().await;
        }
        self.endpoint.close().await;
    }
}

/// Ends a connection after its session: reads the peer's end of stream and waits until the
/// peer has read ours (both bounded by [`IROH_LINGER`]), then closes it. Closing at once would drop
/// bytes still in flight; and QUIC reports a stream done only once the peer has read to its
/// end, so each side reads the other's to the end, or both would wait out the bound.
pub(crate) async fn finish(conn: &Connection, stream: Join<RecvStream, SendStream>, ok: bool) {
    let (mut recv, send) = stream.into_inner();
    if ok {
        let _ = tokio::time::timeout(IROH_LINGER, async {
            let mut sink = [0u8; 4096];
            let mut left = IROH_DRAIN;
            while left > 0 {
                match recv.read(&mut sink).await {
                    Ok(Some(n)) => left = left.saturating_sub(n),
                    _ => break,
                }
            }
            let _ = send.stopped().await;
        })
        .await;
    }
    conn.close(VarInt::from_u32(CLOSE_DONE), b"done");
}

/// Whether a connection was closed by the peer's access list.
fn refused(reason: &ConnectionError) -> bool {
    matches!(reason, ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(CLOSE_REFUSED))
}

fn closed(peer: PublicKey, e: &ConnectionError) -> IrohError {
    if refused(e) {
        IrohError::Refused { by: peer }
    } else {
        IrohError::Connect {
            peer,
            reason: e.to_string(),
        }
    }
}
