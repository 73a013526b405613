//! # braidlog
//!
//! Replicated, auditable history without a master. Every replica accepts writes at any time;
//! replicas converge by exchanging what the other lacks.
//!
//! History is a content-addressed merkle DAG: a [`Node`] holds a payload and links to earlier
//! nodes, and its id is the blake3 [`Hash`](struct@Hash) of its canonical encoding, so any two replicas agree
//! on ids and any tampering shows. A [`Log`] stores one replica's DAG in LMDB: nodes, heads
//! (nodes nothing links to yet), and a local changes feed in arrival order, which is always
//! topological. Every write is one transaction.
//!
//! Every replica has an Ed25519 [`Identity`] and signs its writes with it by default: a node
//! names its author and the time the author claims, and its id covers both. A [`Policy`]
//! per log (any, signed, or an allow-list of authors) is enforced on every node stored,
//! local or received, and [`Log::verify`] checks every signature.
//!
//! ```
//! # fn main() -> Result<(), braidlog::Error> {
//! use braidlog::Log;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path())?;
//!
//! let root = log.append(b"genesis".to_vec())?;          // links to the current heads
//! let left = log.add([root.hash()], b"left".to_vec())?;  // explicit links
//! let right = log.add([root.hash()], b"right".to_vec())?;
//! assert_eq!(log.heads()?.len(), 2);                     // a fork: two heads
//!
//! let merge = log.append(b"merge".to_vec())?;            // links both heads
//! assert_eq!(merge.links().len(), 2);
//! assert_eq!(log.heads()?, vec![merge.hash()]);
//!
//! // The feed is arrival order, and every node comes after its links.
//! let feed: Vec<_> = log.changes(0).map(|c| c.unwrap().node.hash()).collect();
//! assert_eq!(feed, vec![root.hash(), left.hash(), right.hash(), merge.hash()]);
//! assert!(log.verify()?.is_ok());
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`hash`]: `Hash`, the blake3 digest naming every node.
//! - [`node`]: `Node`, its canonical encodings (unsigned and signed) and its limits.
//! - [`identity`]: Ed25519 identities and author keys.
//! - [`policy`]: which nodes a log accepts (any, signed, trusted authors).
//! - `store` (private): the storage core, the only module that knows LMDB: opening, map
//!   growth, every table's byte layout, transactions that cannot commit after a failed write.
//! - [`store_file`]: checks of the data file before LMDB maps it; full-disk errors.
//! - [`log`]: `Log`, the replica API: add, insert, get, heads, feed.
//! - [`lookup`]: a node by a prefix of its hash; the key-value view's namespaces.
//! - `write` (private): the write path (node, index, heads, views in one transaction) and
//!   [`Writer`].
//! - [`changes`]: the feed iterator, subscriptions, and where each node came from
//!   ([`Origin`]).
//! - [`view`]: indexes maintained in the log's write transactions, through a [`ViewTxn`].
//! - [`verify`]: the fsck.
//! - [`kv`]: the key-value view with explicit conflicts (`Kv`), conditional writes, the merge
//!   toolkit (merge base, history since) and merge operators (`docs/MERGING.md`).
//! - [`peer`]: replica identity.
//! - [`salvage`]: copying the genuine nodes out of a damaged store.
//! - [`sync`]: replication over any byte stream: messages, codec, the sans-IO session, the
//!   tokio driver and TCP helpers.
//! - [`sim`]: the simulator: N replicas under fuzzer- or seed-driven schedules (writes,
//!   sessions cut at any byte, reorderings, partitions) with convergence checks an
//!   application extends with its own merge logic and invariants; braidlog's fuzz checks.
//! - [`error`]: the error types.

pub mod changes;
pub mod error;
pub mod hash;
pub mod identity;
pub mod kv;
pub mod log;
pub mod lookup;
pub mod node;
pub mod peer;
pub mod policy;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
pub mod salvage;
pub mod sim;
mod store;
pub mod store_file;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
mod store_pages;
pub mod sync;
pub mod verify;
pub mod view;
mod write;

pub use changes::{Changes, FeedEntry, Origin, RawEntry, Subscription};
pub use error::{Error, Result};
pub use hash::Hash;
pub use identity::{Identity, PublicKey};
pub use kv::{Kv, KvError};
pub use log::{Durability, Inserted, Log, LogOptions};
pub use lookup::LookupError;
pub use node::{Authorship, Node, NodeError, MAX_LINKS, MAX_NODE_BYTES, MAX_PAYLOAD_BYTES};
pub use peer::PeerId;
pub use policy::{Policy, PolicyError, PolicyMode};
pub use store::{ReadTxn, StorageError, STORE_FORMAT_VERSION};
pub use sync::{Mode, SyncError};
#[cfg(feature = "net")]
pub use sync::{SyncOptions, SyncReport};
pub use verify::{VerifyReport, Violation};
pub use view::{Change, Table, View, ViewTxn};
pub use write::Writer;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
