//! Tickets: everything a peer needs to dial a replica over iroh, as one copy-pasteable string.
//!
//! A ticket is the text `braid` followed by the unpadded lowercase base32 (RFC 4648) of:
//!
//! ```text
//! +---------+----------------------------------------------------------------+
//! | version | postcard { id: [u8; 32], addrs: Vec<SocketAddr>, relay: Option<String> } |
//! | 1 byte  |                                                                |
//! +---------+----------------------------------------------------------------+
//! ```
//!
//! `id` is the replica's endpoint id (its Ed25519 public key), `addrs` its direct addresses,
//! `relay` the URL of its home relay when one is configured. Base32 keeps the string to
//! letters and digits, so it survives shells, chat clients and double-click selection.
//!
//! Parsing is strict and bounded: at most [`MAX_TICKET_LEN`] characters, at most
//! [`MAX_TICKET_ADDRS`] addresses, a known version, no trailing bytes, a valid key, and at
//! least one way to reach the replica. Each failure is its own [`TicketError`] variant.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Serialize};

use crate::identity::PublicKey;

/// The text every ticket starts with.
pub const TICKET_PREFIX: &str = "braid";
/// The ticket format version written, and the only one read.
pub const TICKET_VERSION: u8 = 1;
/// Most characters a ticket may have (checked before decoding anything).
pub const MAX_TICKET_LEN: usize = 1024;
/// Most direct addresses a ticket may carry.
pub const MAX_TICKET_ADDRS: usize = 16;

/// How to reach a replica over iroh: its endpoint id, direct addresses and optional relay.
///
/// ```
/// use braidlog::sync::iroh::Ticket;
/// use braidlog::Identity;
///
/// let id = Identity::generate().public_key();
/// let t = Ticket::new(id, vec!["127.0.0.1:4433".parse().unwrap()], None);
/// let text = t.to_string();
/// assert!(text.starts_with("braid"));
/// assert_eq!(text.parse::<Ticket>().unwrap(), t);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    id: PublicKey,
    addrs: Vec<SocketAddr>,
    relay: Option<iroh::RelayUrl>,
}

/// Why a string is not a [`Ticket`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Longer than [`MAX_TICKET_LEN`] characters.
    #[error("a ticket has at most {max} characters, this one {len}")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_TICKET_LEN`].
        max: usize,
    },
    /// It does not start with [`TICKET_PREFIX`].
    #[error("not a braidlog ticket: it must start with {TICKET_PREFIX:?}")]
    Prefix,
    /// The text after the prefix is not unpadded base32.
    #[error("ticket is not valid base32: {reason}")]
    Base32 {
        /// What the decoder said.
        reason: String,
    },
    /// A version this build does not read.
    #[error("ticket version {got} is not supported (this build reads {TICKET_VERSION})")]
    Version {
        /// The version byte.
        got: u8,
    },
    /// The bytes do not decode to a ticket, or have bytes left over.
    #[error("malformed ticket: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// More than [`MAX_TICKET_ADDRS`] addresses.
    #[error("a ticket carries at most {max} addresses, this one {got}")]
    TooManyAddrs {
        /// How many it has.
        got: usize,
        /// [`MAX_TICKET_ADDRS`].
        max: usize,
    },
    /// The endpoint id is not a valid Ed25519 public key.
    #[error("ticket endpoint id {id} is not a valid public key")]
    BadKey {
        /// The id.
        id: PublicKey,
    },
    /// The relay URL does not parse.
    #[error("ticket relay url {url:?} is invalid: {reason}")]
    RelayUrl {
        /// The URL as written.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Neither a direct address nor a relay: nothing to dial.
    #[error("ticket for {id} has neither a direct address nor a relay")]
    NoAddress {
        /// The endpoint id.
        id: PublicKey,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    id: [u8; 32],
    addrs: Vec<SocketAddr>,
    relay: Option<String>,
}

impl Ticket {
    /// A ticket for endpoint `id`, reachable at `addrs` (at most [`MAX_TICKET_ADDRS`] are
    /// kept) or through `relay`.
    pub fn new(id: PublicKey, mut addrs: Vec<SocketAddr>, relay: Option<iroh::RelayUrl>) -> Ticket {
        addrs.sort();
        addrs.dedup();
        addrs.truncate(MAX_TICKET_ADDRS);
        Ticket { id, addrs, relay }
    }

    /// The replica's endpoint id: its Ed25519 public key.
    pub fn id(&self) -> PublicKey {
        self.id
    }

    /// Its direct addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Its home relay, if any.
    pub fn relay(&self) -> Option<&iroh::RelayUrl> {
        self.relay.as_ref()
    }

    /// The address iroh dials.
    pub fn endpoint_addr(&self) -> iroh::EndpointAddr {
        let id = iroh::PublicKey::from_bytes(self.id.as_bytes())
            .expect("checked when the ticket was made or parsed");
        let ips = self.addrs.iter().copied().map(iroh::TransportAddr::Ip);
        let relay = self.relay.iter().cloned().map(iroh::TransportAddr::Relay);
        iroh::EndpointAddr::from_parts(id, ips.chain(relay))
    }

    /// The ticket of an iroh address (custom transports are left out).
    pub fn from_endpoint_addr(addr: &iroh::EndpointAddr) -> Ticket {
        let ips = addr.ip_addrs().copied().collect();
        let relay = addr.relay_urls().next().cloned();
        Ticket::new(PublicKey(*addr.id.as_bytes()), ips, relay)
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = Wire {
            id: self.id.0,
            addrs: self.addrs.clone(),
            relay: self.relay.as_ref().map(|u| u.to_string()),
        };
        let mut bytes = vec![TICKET_VERSION];
        bytes.extend(postcard::to_stdvec(&wire).map_err(|_| fmt::Error)?);
        let mut text = BASE32_NOPAD.encode(&bytes);
        text.make_ascii_lowercase();
        write!(f, "{TICKET_PREFIX}{text}")
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Ticket, TicketError> {
        let s = s.trim();
        if s.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong {
                len: s.len(),
                max: MAX_TICKET_LEN,
            });
        }
        let body = s.strip_prefix(TICKET_PREFIX).ok_or(TicketError::Prefix)?;
        let bytes = BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| TicketError::Base32 {
                reason: e.to_string(),
            })?;
        let (&version, rest) = bytes.split_first().ok_or(TicketError::Malformed {
            reason: "empty".into(),
        })?;
        if version != TICKET_VERSION {
            return Err(TicketError::Version { got: version });
        }
        let (wire, left): (Wire, _) =
            postcard::take_from_bytes(rest).map_err(|e| TicketError::Malformed {
                reason: e.to_string(),
            })?;
        if !left.is_empty() {
            return Err(TicketError::Malformed {
                reason: format!("{} trailing bytes", left.len()),
            });
        }
        if wire.addrs.len() > MAX_TICKET_ADDRS {
            return Err(TicketError::TooManyAddrs {
                got: wire.addrs.len(),
                max: MAX_TICKET_ADDRS,
            });
        }
        let id = PublicKey(wire.id);
        if iroh::PublicKey::from_bytes(&wire.id).is_err() {
            return Err(TicketError::BadKey { id });
        }
        let relay = match wire.relay {
            None => None,
            Some(url) => {
                Some(
                    url.parse::<iroh::RelayUrl>()
                        .map_err(|e| TicketError::RelayUrl {
                            reason: e.to_string(),
                            url,
                        })?,
                )
            }
        };
        if wire.addrs.is_empty() && relay.is_none() {
            return Err(TicketError::NoAddress { id });
        }
        Ok(Ticket::new(id, wire.addrs, relay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn sample() -> Ticket {
        let id = Identity::generate().public_key();
        let addrs = vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()];
        Ticket::new(
            id,
            addrs,
            Some("https://relay.example.org./".parse().unwrap()),
        )
    }

    fn encode(version: u8, wire: &Wire) -> String {
        let mut bytes = vec![version];
        bytes.extend(postcard::to_stdvec(wire).unwrap());
        format!("{TICKET_PREFIX}{}", BASE32_NOPAD.encode(&bytes))
    }

    #[test]
    fn round_trips_in_either_case_and_with_whitespace() {
        let t = sample();
        let s = t.to_string();
        assert!(s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(s.parse::<Ticket>(), Ok(t.clone()));
        let upper = format!("{TICKET_PREFIX}{}", s[TICKET_PREFIX.len()..].to_uppercase());
        assert_eq!(format!(" {upper}\n").parse::<Ticket>(), Ok(t.clone()));
        assert_eq!(Ticket::from_endpoint_addr(&t.endpoint_addr()), t);
    }

    #[test]
    fn every_malformation_has_its_own_error() {
        let good = sample().to_string();
        let key = Identity::generate().public_key().0;
        let wire = |addrs: usize, relay: Option<&str>| Wire {
            id: key,
            addrs: (0..addrs)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], i as u16)))
                .collect(),
            relay: relay.map(Into::into),
        };
        let e = |s: &str| s.parse::<Ticket>().unwrap_err();
        assert!(matches!(
            e(&"a".repeat(5000)),
            TicketError::TooLong { len: 5000, .. }
        ));
        assert_eq!(e(&good[1..]), TicketError::Prefix);
        assert!(matches!(e("braid!!"), TicketError::Base32 { .. }));
        assert!(matches!(e("braid"), TicketError::Malformed { .. }));
        assert_eq!(
            e(&encode(2, &wire(1, None))),
            TicketError::Version { got: 2 }
        );
        assert!(matches!(
            e(&format!("{}aa", &good[..good.len() - 1])),
            TicketError::Base32 { .. } | TicketError::Malformed { .. }
        ));
        let mut trailing = vec![TICKET_VERSION];
        trailing.extend(postcard::to_stdvec(&wire(1, None)).unwrap());
        trailing.push(0);
        let trailing = format!("{TICKET_PREFIX}{}", BASE32_NOPAD.encode(&trailing));
        assert!(matches!(e(&trailing), TicketError::Malformed { .. }));
        assert_eq!(
            e(&encode(1, &wire(MAX_TICKET_ADDRS + 1, None))),
            TicketError::TooManyAddrs {
                got: MAX_TICKET_ADDRS + 1,
                max: MAX_TICKET_ADDRS
            }
        );
        assert!(matches!(
            e(&encode(1, &wire(1, Some("not a url")))),
            TicketError::RelayUrl { .. }
        ));
        assert_eq!(
            e(&encode(1, &wire(0, None))),
            TicketError::NoAddress { id: PublicKey(key) }
        );
        // At the bound: the most addresses still parse.
        assert!(encode(1, &wire(MAX_TICKET_ADDRS, None))
            .parse::<Ticket>()
            .is_ok());
    }

    #[test]
    fn a_key_off_the_curve_is_refused() {
        // About half of all 32-byte strings are not a compressed Edwards point: find one.
        let bad = (0..=255u8)
            .map(|b| [b; 32])
            .find(|k| iroh::PublicKey::from_bytes(k).is_err())
            .expect("some byte pattern is off the curve");
        let w = Wire {
            id: bad,
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            relay: None,
        };
        assert_eq!(
            encode(1, &w).parse::<Ticket>(),
            Err(TicketError::BadKey { id: PublicKey(bad) })
        );
    }
}
